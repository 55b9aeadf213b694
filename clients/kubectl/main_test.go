package kubectl_test

import (
	"context"
	gotls "crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/clients/kubectl"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

// TestMain fails the package if a test leaves a process behind (a
// kubectl or a shell: both carry the tags), and kills them if the binary
// is interrupted.
func TestMain(m *testing.M) { leakguard.Main(m) }

// waitTimeout bounds every wait for an event in these tests.
const waitTimeout = 20 * time.Second

var (
	buildOnce sync.Once
	dialer    *kubectl.Dialer
	buildErr  error
)

// newDialer builds kubectl once per test binary (minutes on a cold
// build cache, then cached for every later run) and skips only where
// there is no go command to build it with.
func newDialer(t *testing.T) *kubectl.Dialer {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		dialer, buildErr = kubectl.New(kubectl.Options{BuildTimeout: 9 * time.Minute})
		if buildErr == nil {
			fmt.Fprintf(os.Stderr, "kubectl: %s ready in %s\n", dialer.Binary(), time.Since(start).Round(time.Millisecond))
		}
	})
	if errors.Is(buildErr, kubectl.ErrNoGo) {
		t.Skipf("no go command on this machine to build kubectl %s with: %v", kubectl.Version, buildErr)
	}
	require.NoError(t, buildErr)
	return dialer
}

// testLog routes log lines to t.Log until the test is over.
type testLog struct {
	mu      sync.Mutex
	t       *testing.T
	stopped bool
}

func newTestLogger(t *testing.T) *slog.Logger {
	w := &testLog{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.stopped = true; w.mu.Unlock() }) // first registered: runs last
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func deadline(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startFake starts a fake API server for one test.
func startFake(t *testing.T, log *slog.Logger) *fakeapiserver.Server {
	t.Helper()
	srv, err := fakeapiserver.New(fakeapiserver.Config{Logger: log})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() { assert.NoError(t, srv.Close()) })
	return srv
}

const frontToken = "kubectl-front-token"

// startProxy starts the reference proxy, relaying reads, in front of
// backend, on HTTPS (kubectl sends no credentials over plain HTTP) or
// with tls false on HTTP; it returns its URL and the TLS configuration
// that trusts it.
func startProxy(t *testing.T, backend *fakeapiserver.Server, tls bool, log *slog.Logger) (*url.URL, *gotls.Config) {
	t.Helper()
	return startWrappedProxy(t, backend, tls, log, nil)
}

// startWrappedProxy is startProxy with the proxy's handler wrapped.
func startWrappedProxy(t *testing.T, backend *fakeapiserver.Server, tls bool, log *slog.Logger, wrap func(http.Handler) http.Handler) (*url.URL, *gotls.Config) {
	t.Helper()
	p, err := proxyundertest.New(proxyundertest.Config{
		Backend: backend.URL(), TLSConfig: backend.ClientTLSConfig(), Token: backend.Token(),
		FrontToken: frontToken, RelayReads: true, Logger: log,
	})
	require.NoError(t, err)
	var h http.Handler = p
	if wrap != nil {
		h = wrap(p)
	}
	var front *httptest.Server
	if tls {
		front = httptest.NewTLSServer(h)
	} else {
		front = httptest.NewServer(h)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		assert.NoError(t, p.Shutdown(ctx))
	})
	t.Cleanup(front.Close)
	u, err := url.Parse(front.URL)
	require.NoError(t, err)
	if !tls {
		return u, nil
	}
	return u, front.Client().Transport.(*http.Transport).TLSClientConfig
}

// testCase is a case of the kubectl client over transport, in tty mode or not.
func testCase(name string, transport execproto.Transport, tty bool) scenarios.Case {
	p := execproto.ProtocolV5
	if transport == execproto.TransportSPDY {
		p = execproto.SPDYProtocolV4
	}
	return scenarios.Case{Scenario: &scenarios.Scenario{Name: name}, Transport: transport, Protocol: p, TTY: tty, Client: scenarios.ClientKubectl}
}

var container = struct {
	sync.Mutex
	n int
}{}

// request is the exec request of c through front, each in a container of
// its own (how the tests tell sessions apart).
func request(c scenarios.Case, front *url.URL, tls *gotls.Config, header http.Header, log *slog.Logger) clients.Request {
	container.Lock()
	container.n++
	name := fakeapiserver.ContainerName(container.n % fakeapiserver.PodContainers)
	container.Unlock()
	return clients.Request{
		Case: c, Front: front, Header: header, TLS: tls,
		Namespace: "default", Pod: "kpod", Container: name, Command: scenarios.DefaultCommand,
		Logger: log,
	}
}

// dial opens a kubectl session and finds its backend session.
func dial(t *testing.T, d *kubectl.Dialer, srv *fakeapiserver.Server, req clients.Request) (clients.Session, *fakeapiserver.Session) {
	t.Helper()
	s, err := d.Dial(deadline(t, waitTimeout), req)
	require.NoError(t, err)
	t.Cleanup(s.Release)
	back, err := srv.WaitFor(deadline(t, waitTimeout), func(b *fakeapiserver.Session) bool { return b.Container == req.Container })
	require.NoError(t, err)
	return s, back
}

// enter is Enter in the mode: \r on a terminal, \n on a pipe.
func enter(tty bool) string {
	if tty {
		return "\r"
	}
	return "\n"
}

// modes are the transports and tty modes of the kubectl spec.
func modes(f func(t *testing.T, transport execproto.Transport, tty bool)) func(t *testing.T) {
	return func(t *testing.T) {
		for _, tr := range []execproto.Transport{execproto.TransportWebSocket, execproto.TransportSPDY} {
			for _, tty := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%s", tr, scenarios.ModeName(tty)), func(t *testing.T) { f(t, tr, tty) })
			}
		}
	}
}
