package clientgo_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients/clientgo"
	"github.com/execconform/execconform/exectest"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

func TestMain(m *testing.M) { leakguard.Main(m) }

const frontToken = "clientgo-test-front-token"

func target(v proxyundertest.Variant) exectest.Target {
	return exectest.HandlerTarget(func(b exectest.Backend) (http.Handler, error) {
		return proxyundertest.New(proxyundertest.Config{
			FrontToken: frontToken, Backend: b.URL, TLSConfig: b.TLSConfig, Token: b.Token, Variant: v,
			PingInterval: proxyundertest.SuitePingInterval, PongTimeout: proxyundertest.SuitePongTimeout,
		})
	})
}

func options(extra ...exectest.Option) []exectest.Option {
	return append([]exectest.Option{
		exectest.Client(clientgo.New()),
		exectest.ClientHeader("Authorization", "Bearer "+frontToken),
		exectest.Keepalive(proxyundertest.SuiteKeepalive),
	}, extra...)
}

// The reference proxy passes every cell client-go can express, its own
// endings (SIGKILL, SIGTERM, a cancelled context) included, over the
// fallback executor (WebSocket v5) and the SPDY executor.
func TestReferenceProxy(t *testing.T) {
	var extra []exectest.Option
	if raceEnabled {
		// Under the race detector each client process is this race-built
		// binary: a 1 MiB paste through it measures the detector, not the
		// proxy (the shell outlived the grace period while it still
		// drained). make conformance-clients runs it.
		extra = append(extra, exectest.Skip(`/busy/paste-in-flight$`))
	}
	exectest.TestProxy(t, target(proxyundertest.Correct), options(extra...)...)
}

// The matrix has the client's own endings and both transports, and says
// why it leaves out what client-go cannot do.
func TestMatrix(t *testing.T) {
	cases := exectest.Cases(options()...)
	names := map[string]bool{}
	for _, c := range cases {
		names[c.Name()] = true
	}
	for _, n := range []string{
		"client-go/v5.channel.k8s.io/tty/client-own/sigterm",
		"client-go/spdy/v4.channel.k8s.io/notty/client-own/context-cancel",
		"client-go/v5.channel.k8s.io/tty/stdin/half-closed-then-drop",
		"client-go/spdy/v4.channel.k8s.io/tty/stdin/half-closed-then-drop",
	} {
		assert.True(t, names[n], n)
	}
	na := exectest.NotApplicable(options()...)
	require.NotEmpty(t, na)
	for _, n := range na {
		assert.NotEmpty(t, n.Why, n.Name)
	}
}

// client-go's real stdin end (its stdin reader's EOF: the v5 CLOSE
// signal, the SPDY stdin FIN) then a drop, through a proxy that passes a
// tty's half-close on: the shell is left alive, which the emulator's
// matrix had missed before the scenario existed. On pipes the shell ends
// with its stdin, through either proxy.
func TestHalfCloseForwardedIsCaught(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep := exectest.Check(ctx, target(proxyundertest.TTYHalfCloseForwarded), options(exectest.Run(`/stdin/half-closed-then-drop$`))...)
	require.Len(t, rep.Results, 4)
	for _, r := range rep.Results {
		if r.TTY {
			assert.Equal(t, harness.Fail, r.Verdict, r.Name)
			assert.Contains(t, r.Failures[0], "still alive", r.Name)
		} else {
			assert.Equal(t, harness.Pass, r.Verdict, "%s: %v", r.Name, r.Failures)
		}
		assert.Equal(t, string(scenarios.ClientGo), r.RealClient)
	}
}
