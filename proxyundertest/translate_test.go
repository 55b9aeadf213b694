package proxyundertest_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/exectest"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/proxyundertest"
)

func translator(d *dialect.Dialect, spdy bool) exectest.Target {
	return exectest.HandlerTarget(func(b exectest.Backend) (http.Handler, error) {
		ca, err := os.ReadFile(b.CAFile)
		if err != nil {
			return nil, err
		}
		return proxyundertest.NewTranslator(proxyundertest.TranslatorConfig{
			Config: proxyundertest.Config{
				FrontToken: frontToken,
				Backend:    b.URL, TLSConfig: b.TLSConfig, Token: b.Token,
				PingInterval: proxyundertest.SuitePingInterval, PongTimeout: proxyundertest.SuitePongTimeout,
				Logger: slog.New(slog.NewTextHandler(b.Output, &slog.HandlerOptions{Level: slog.LevelWarn})),
			},
			BackendCA: ca, Dialect: d, ForceSPDY: spdy, ExitWait: proxyundertest.SuiteExitWait,
		})
	})
}

func builtin(t *testing.T, name string) *dialect.Dialect {
	t.Helper()
	d, err := dialect.Builtin(name)
	require.NoError(t, err)
	return d
}

// TestTranslatorConformance: the translating reference proxy passes every
// MUST and SHOULD case of its dialect's matrix, over client-go's fallback
// executor (WebSocket v5) and its SPDY executor alone.
func TestTranslatorConformance(t *testing.T) {
	d := builtin(t, "json-operation")
	for _, spdy := range []bool{false, true} {
		t.Run(map[bool]string{false: "fallback-executor", true: "spdy-executor"}[spdy], func(t *testing.T) {
			t.Parallel()
			opts := withFront(exectest.Dialect(d), exectest.Keepalive(proxyundertest.SuiteKeepalive), exectest.Parallel(32))
			if raceEnabled {
				opts = append(opts, exectest.Skip(`/load/`))
			}
			exectest.TestProxy(t, translator(d, spdy), opts...)
		})
	}
}

// The other built-in dialects, through the same proxy: the client's
// encoding of each meets the front's (SockJS through sockjs-go, the
// library Kubernetes Dashboard serves it with).
func TestTranslatorDialects(t *testing.T) {
	for _, name := range []string{"json-op", "json-op-sockjs", "raw", "raw-binary"} {
		d := builtin(t, name)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			exectest.TestProxy(t, translator(d, false), withFront(exectest.Dialect(d),
				exectest.Run(`/(disconnect/client-tcp-fin|disconnect/client-close/1000|shell/user-types-exit|shell/half-typed-line|busy/foreground-sleep)$`))...)
		})
	}
}

// Every built-in dialect has cells it cannot run, each with a reason.
func TestTranslatorNotApplicable(t *testing.T) {
	for _, name := range dialect.Builtins()[1:] {
		na := exectest.NotApplicable(exectest.Dialect(builtin(t, name)))
		assert.NotEmpty(t, na, name)
		for _, n := range na {
			assert.NotEmpty(t, n.Why, n.Name)
		}
	}
	assert.Empty(t, exectest.NotApplicable())
}

// translatorFront serves a translator in front of a fake API server and
// returns its URL, the fake and the translator's log.
func translatorFront(t *testing.T, d *dialect.Dialect) (*url.URL, *fakeapiserver.Server, *harness.TailBuffer) {
	t.Helper()
	fake, err := fakeapiserver.New(fakeapiserver.Config{})
	require.NoError(t, err)
	require.NoError(t, fake.Start())
	t.Cleanup(func() { _ = fake.Close() })
	ca, err := os.ReadFile(fake.CAFile())
	require.NoError(t, err)
	logs := &harness.TailBuffer{}
	tr, err := proxyundertest.NewTranslator(proxyundertest.TranslatorConfig{
		Config: proxyundertest.Config{FrontToken: frontToken, Backend: fake.URL(), Token: fake.Token(),
			Logger: slog.New(slog.NewTextHandler(logs, nil))},
		BackendCA: ca, Dialect: d,
	})
	require.NoError(t, err)
	srv := httptest.NewServer(tr)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tr.Shutdown(ctx)
		srv.Close()
	})
	u, _ := url.Parse(srv.URL)
	return u, fake, logs
}

// Bad input at the translator's front: a clear refusal or close code, a
// log line, and no shell left.
func TestTranslatorBadInput(t *testing.T) {
	d := builtin(t, "json-operation")
	front, fake, logs := translatorFront(t, d)
	p := dialect.Params{Namespace: "default", Pod: "shell", Container: "c", Command: []string{"sh", "-i"}, TTY: true}
	cookie := http.Header{"Cookie": {proxyundertest.DefaultFrontCookie + "=" + frontToken}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("no credential", func(t *testing.T) {
		_, err := execclient.DialDialect(ctx, front, d, p, execclient.Options{})
		var he *execclient.HandshakeError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, http.StatusUnauthorized, he.StatusCode)
	})
	t.Run("foreign origin", func(t *testing.T) {
		h := cookie.Clone()
		h.Set("Origin", "https://evil.example")
		_, err := execclient.DialDialect(ctx, front, d, p, execclient.Options{Header: h})
		var he *execclient.HandshakeError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, http.StatusForbidden, he.StatusCode)
	})
	t.Run("not the dialect's path", func(t *testing.T) {
		other := builtin(t, "json-op")
		_, err := execclient.DialDialect(ctx, front, other, p, execclient.Options{Header: cookie})
		var he *execclient.HandshakeError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, http.StatusNotFound, he.StatusCode)
	})
	for name, msg := range map[string]string{
		"not JSON":        "ls\r",
		"unknown message": `{"operation":"upload","data":"x"}`,
		"data not a text": `{"operation":"stdin","data":42}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := p
			p.Container = strings.ReplaceAll(name, " ", "-")
			c, err := execclient.DialDialect(ctx, front, d, p, execclient.Options{Header: cookie})
			require.NoError(t, err)
			require.NoError(t, c.Type("echo $((40+2))\r"))
			require.NoError(t, c.Expect(ctx, "42"))
			require.NoError(t, c.SendRaw(websocket.TextMessage, []byte(msg)))
			select {
			case <-c.Done():
			case <-ctx.Done():
				t.Fatal("the proxy did not end the session")
			}
			assert.Equal(t, websocket.CloseUnsupportedData, c.End().ServerCloseCode)
			sess, err := fake.WaitFor(ctx, func(s *fakeapiserver.Session) bool { return s.Container == p.Container })
			require.NoError(t, err)
			gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, live, err := sess.WaitGone(gctx)
			assert.NoError(t, err, "left alive: %v", live)
			assert.Contains(t, logs.String(), "front message refused")
		})
	}
}
