package proxyundertest_test

import (
	"context"
	"fmt"
	"net/http"
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

func target(v proxyundertest.Variant) exectest.Target {
	return exectest.HandlerTarget(func(b exectest.Backend) (http.Handler, error) {
		return proxyundertest.New(proxyundertest.Config{
			Backend: b.URL, TLSConfig: b.TLSConfig, Token: b.Token, Variant: v,
			PingInterval: proxyundertest.SuitePingInterval, PongTimeout: proxyundertest.SuitePongTimeout,
		})
	})
}

// underRace skips the load cases when the race detector is on: with it, 200
// shells through one process measure the detector, not the proxy. make
// conformance runs them without it.
func underRace() []exectest.Option {
	if !raceEnabled {
		return nil
	}
	return []exectest.Option{exectest.Skip(`/load/`)}
}

// TestConformance: the reference proxy passes every MUST and SHOULD case.
func TestConformance(t *testing.T) {
	exectest.TestProxy(t, target(proxyundertest.Correct), append(underRace(), exectest.Keepalive(proxyundertest.SuiteKeepalive))...)
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

// TestBrokenVariantsAreCaught: each broken variant fails exactly the cells
// its bug predicts, for the reason its bug predicts, and no other.
func TestBrokenVariantsAreCaught(t *testing.T) {
	byName := map[string]*scenarios.Scenario{}
	for _, c := range exectest.Cases() {
		byName[c.Scenario.Name] = c.Scenario
	}
	binary := func(p string) bool {
		pr, err := execproto.ParseProtocol(p)
		return err == nil && !pr.Base64()
	}
	cases := []struct {
		variant proxyundertest.Variant
		// fails predicts whether a result fails, and why ("" = passes).
		why func(r harness.Result) string
	}{
		{proxyundertest.NoExit, func(r harness.Result) string {
			if !clientSide(byName[r.Scenario]) || r.Level == scenarios.INFO {
				return ""
			}
			if r.TTY {
				return "still alive" // no exit: the tty shell is orphaned
			}
			return "no close frame" // the pipe shell gets EOF, but TCP was dropped without a close frame
		}},
		{proxyundertest.AlwaysBase64Exit, func(r harness.Result) string {
			if !clientSide(byName[r.Scenario]) || r.Level == scenarios.INFO || !r.TTY || !binary(r.Protocol) {
				return ""
			}
			return "still alive" // the base64 exit never reaches a shell on a binary protocol
		}},
	}
	if raceEnabled {
		t.Skip("the variant matrices run without the race detector (make test runs them so): they exercise the suite, and the proxy's code is race-tested by TestConformance")
	}
	for _, tc := range cases {
		t.Run(tc.variant.String(), func(t *testing.T) {
			t.Parallel()
			// Most failing cases just wait out the grace period: run many at once.
			opts := []exectest.Option{exectest.Keepalive(proxyundertest.SuiteKeepalive), exectest.Parallel(16)}
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
