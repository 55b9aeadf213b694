package proxyundertest_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/exectest"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

// frontToken is the reference proxy's front credential in these tests;
// the client sends it as the proxy's cookie (withFront).
const frontToken = "conformance-front-token"

func withFront(opts ...exectest.Option) []exectest.Option {
	return append(opts, exectest.ClientHeader("Cookie", proxyundertest.DefaultFrontCookie+"="+frontToken))
}

func target(v proxyundertest.Variant) exectest.Target {
	return exectest.HandlerTarget(func(b exectest.Backend) (http.Handler, error) {
		return proxyundertest.New(proxyundertest.Config{
			FrontToken: frontToken,
			Backend:    b.URL, TLSConfig: b.TLSConfig, Token: b.Token, Variant: v,
			PingInterval: proxyundertest.SuitePingInterval, PongTimeout: proxyundertest.SuitePongTimeout,
			// Its warnings and errors are kept with a failed case (a panic).
			Logger: slog.New(slog.NewTextHandler(b.Output, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
	})
}

// frontDoorRun selects the front-door rows.
const frontDoorRun = `/front-door/`

// knockedBy predicts that a front-door case fails when its knock is one
// of ks (the proxy let it in), and passes otherwise.
func knockedBy(ks ...scenarios.Knock) func(r harness.Result) string {
	return func(r harness.Result) string {
		for _, k := range ks {
			if r.Scenario == "front-door/"+string(k) {
				if k == scenarios.KnockAPIRequest {
					return "with the API server's answer"
				}
				return "the proxy opened an exec session (HTTP 101)"
			}
		}
		return ""
	}
}

// underRace skips the load cases when the race detector is on: with it, 200
// shells through one process measure the detector, not the proxy. make
// conformance runs them without it.
func underRace() []exectest.Option {
	if !raceEnabled {
		return nil
	}
	// Under the race detector the SPDY relay runs its endings, shells,
	// status and negotiation; its faults and busy rows run without it.
	return []exectest.Option{exectest.Skip(`/load/|^spdy/[^/]+/[^/]+/(lb|net|busy|proxy)/`)}
}

// TestConformance: the reference proxy passes every MUST and SHOULD case.
func TestConformance(t *testing.T) {
	exectest.TestProxy(t, target(proxyundertest.Correct), withFront(append(underRace(), exectest.Keepalive(proxyundertest.SuiteKeepalive))...)...)
}

// clientSide reports whether a scenario ends on the client's side (or by a
// proxy stop), where the proxy's farewell to the backend decides the outcome.
func clientSide(s *scenarios.Scenario) bool {
	switch s.End.Kind {
	case scenarios.EndClientClose, scenarios.EndClientAbort, scenarios.EndClientReset, scenarios.EndTargetStop:
		return true
	case scenarios.EndFault:
		for _, f := range s.Faults {
			if f.Leg != scenarios.ClientLeg {
				return false
			}
		}
		return true
	}
	return false
}

// spdyRun is what the SPDY variants run: the SPDY endings, the status,
// a shutdown, a cut link, the half-close and a negotiation, and a v5
// WebSocket case as a control.
const spdyRun = `^spdy/[^/]+/(tty|notty)/(disconnect/client-(close/1000|tcp-fin|tcp-rst)|shell/user-types-exit|backend/process-killed|proxy/shutdown-20-sessions|net/client-leg/link-down|stdin/half-closed-then-drop|negotiation/spdy-offer/client-go)$|^v5\.channel\.k8s\.io/tty/disconnect/client-tcp-fin$`

// negotiationRun is what the negotiation variants run: every negotiation
// row, and one-name offers of every protocol as a control.
const negotiationRun = `/negotiation/|/disconnect/client-tcp-fin$`

// TestBrokenVariantsAreCaught: each broken variant fails exactly the cells
// its bug predicts, for the reason its bug predicts, and no other.
func TestBrokenVariantsAreCaught(t *testing.T) {
	byName := map[string]*scenarios.Scenario{}
	for _, c := range exectest.Cases() {
		byName[c.Scenario.Name] = c.Scenario
	}
	// binary: stdin is not base64 text (every SPDY version is binary).
	binary := func(r harness.Result) bool {
		pr, err := execproto.ParseProtocol(r.Protocol)
		return r.SPDY() || err == nil && !pr.Base64()
	}
	// offerOf is the offer of r's case, as the client sends it.
	offerOf := func(r harness.Result) []string {
		c := scenarios.Case{Scenario: byName[r.Scenario], Protocol: execproto.Protocol(r.Protocol)}
		if r.SPDY() {
			// The versions one by one, as a proxy reads them (a header
			// line may hold several).
			c.Transport = execproto.TransportSPDY
			var names []string
			for _, line := range c.Offer() {
				for _, n := range strings.Split(line, ",") {
					names = append(names, strings.TrimSpace(n))
				}
			}
			return names
		} else {
			p, err := execproto.ParseProtocol(r.Protocol)
			require.NoError(t, err)
			c.Protocol = p
		}
		return c.Offer()
	}
	// forwarded predicts a negotiation variant's failure from the offer it
	// forwards: refused when the API server supports nothing of it, the
	// wrong answer when it picks another protocol for it.
	forwarded := func(r harness.Result, offer []string) string {
		negotiate := execproto.Negotiate
		if r.SPDY() {
			negotiate = execproto.NegotiateSPDY
		}
		p, err := negotiate(offer)
		switch {
		case err != nil:
			return "the proxy refused the upgrade: HTTP 403"
		case p.String() != r.Protocol:
			return "the proxy answered subprotocol"
		}
		return ""
	}
	cases := []struct {
		variant proxyundertest.Variant
		run     string // the cases it runs (default all)
		// fails predicts whether a result fails, and why ("" = passes).
		why func(r harness.Result) string
	}{
		{proxyundertest.NoExit, "", func(r harness.Result) string {
			if !clientSide(byName[r.Scenario]) || r.Level == scenarios.INFO || byName[r.Scenario].Want.AnyLive {
				return "" // AnyLive: nothing typed could end it anyway; the backend is let go
			}
			if r.TTY {
				return "still alive" // no exit: the tty shell is orphaned
			}
			if r.SPDY() || r.Scenario == "stdin/half-closed-then-drop" {
				// The pipe shell gets EOF, and SPDY has no close handshake
				// to miss; after a stdin half-close the shell has ended
				// before the drop, and the backend closed first.
				return ""
			}
			return "no close frame" // the pipe shell gets EOF, but TCP was dropped without a close frame
		}},
		{proxyundertest.AlwaysBase64Exit, "", func(r harness.Result) string {
			if !clientSide(byName[r.Scenario]) || r.Level == scenarios.INFO || !r.TTY || !binary(r) || byName[r.Scenario].Want.AnyLive {
				return ""
			}
			return "still alive" // the base64 exit never reaches a shell on a binary protocol
		}},
		// The negotiation variants differ from the reference only for an
		// offer of several names: they run the negotiation rows, and cases
		// of one name (which they must pass) as a control.
		{proxyundertest.FirstProtocolOnly, negotiationRun, func(r harness.Result) string {
			o := offerOf(r)
			if len(o) <= 1 {
				return ""
			}
			return forwarded(r, o[:1])
		}},
		{proxyundertest.SortedOffers, negotiationRun, func(r harness.Result) string {
			return forwarded(r, slices.Sorted(slices.Values(offerOf(r))))
		}},
		{proxyundertest.EchoClientProtocol, negotiationRun, func(r harness.Result) string {
			if o := offerOf(r); len(o) > 0 && o[0] != r.Protocol {
				return "the proxy answered subprotocol" // the client's first offer, not the backend's choice
			}
			return ""
		}},
		// The front-door variants run the front-door rows: each is let in
		// by the knocks its bug opens, and by no other.
		{proxyundertest.NoFrontAuth, frontDoorRun, knockedBy(scenarios.KnockNoCredentials, scenarios.KnockWrongCredentials)},
		{proxyundertest.FrontAuthPresenceOnly, frontDoorRun, knockedBy(scenarios.KnockWrongCredentials)},
		{proxyundertest.NoOriginCheck, frontDoorRun, knockedBy(scenarios.KnockCrossSite, scenarios.KnockNullOrigin, scenarios.KnockLookalikeOrigin)},
		{proxyundertest.OriginPrefixMatch, frontDoorRun, knockedBy(scenarios.KnockLookalikeOrigin)},
		{proxyundertest.NoHostCheck, frontDoorRun, knockedBy(scenarios.KnockForeignHost)},
		{proxyundertest.OpenDoor, frontDoorRun, knockedBy(scenarios.KnockNoCredentials, scenarios.KnockWrongCredentials,
			scenarios.KnockRebinding, scenarios.KnockForeignHost, scenarios.KnockAPIRequest)},
		// The SPDY variants run the SPDY cases and, as a control, the
		// WebSocket ones of the same rows' first protocol.
		{proxyundertest.SPDYTunnel, spdyRun, func(r harness.Result) string {
			// A tunnel cannot write the exit: every client-side end of
			// a tty session leaves the shell.
			if !r.SPDY() || !clientSide(byName[r.Scenario]) || r.Level == scenarios.INFO || !r.TTY {
				return ""
			}
			return "still alive"
		}},
		{proxyundertest.WebSocketOnly, spdyRun, func(r harness.Result) string {
			if !r.SPDY() || r.Level == scenarios.INFO {
				return ""
			}
			return "the proxy refused the upgrade: HTTP 400"
		}},
		{proxyundertest.TTYHalfCloseForwarded, `/stdin/|/disconnect/client-tcp-fin$`, func(r harness.Result) string {
			if r.Scenario == "stdin/half-closed-then-drop" && r.TTY {
				return "still alive"
			}
			return ""
		}},
	}
	if raceEnabled {
		t.Skip("the variant matrices run without the race detector (make test runs them so): they exercise the suite, and the proxy's code is race-tested by TestConformance")
	}
	for _, tc := range cases {
		t.Run(tc.variant.String(), func(t *testing.T) {
			t.Parallel()
			// Most failing cases just wait out the grace period: run many at once.
			opts := withFront(exectest.Keepalive(proxyundertest.SuiteKeepalive), exectest.Parallel(16))
			if tc.run != "" {
				opts = append(opts, exectest.Run(tc.run))
			} else {
				// The whole matrix but the SPDY network faults and load,
				// which the SPDY variants' rows and make mutants cover.
				opts = append(opts, exectest.Skip(`^spdy/[^/]+/[^/]+/(lb|net|load)/`))
			}
			rep := exectest.Check(context.Background(), target(tc.variant), opts...)
			require.NotEmpty(t, rep.Results)
			var wrong []string
			failed := 0
			for _, r := range rep.Results {
				want := tc.why(r)
				got := strings.Join(r.Failures, "; ")
				switch {
				case want == "" && r.Failed():
					wrong = append(wrong, fmt.Sprintf("%s: failed but should pass: %s", r.Name, got))
				case want != "" && !r.Failed():
					wrong = append(wrong, fmt.Sprintf("%s: passed but the bug should fail it", r.Name))
				case want != "" && !strings.Contains(got, want):
					wrong = append(wrong, fmt.Sprintf("%s: failed for the wrong reason: %s (want %q)", r.Name, got, want))
				}
				if r.Failed() {
					failed++
				}
			}
			sort.Strings(wrong)
			assert.Empty(t, wrong)
			assert.Positive(t, failed)
			t.Logf("%s: %d of %d cases failed, as predicted", tc.variant, failed, len(rep.Results))
		})
	}
}
