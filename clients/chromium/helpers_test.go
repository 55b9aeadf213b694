package chromium_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/clients/chromium"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/scenarios"
)

// needBrowser is the browser's path. Without one the test skips, except
// in CI, which installs Chromium: a test that skips there cannot fail.
func needBrowser(t *testing.T) string {
	t.Helper()
	p, err := chromium.FindBrowser()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v; CI must install one", err)
		}
		t.Skip(err)
	}
	return p
}

// newDialer starts a Dialer for the test; the cleanup closes it and checks
// that it left nothing.
func newDialer(t *testing.T, opts chromium.Options) *chromium.Dialer {
	t.Helper()
	opts.ExecPath = needBrowser(t)
	opts.Logger = testLogger(t)
	d, err := chromium.New(opts)
	require.NoError(t, err)
	t.Logf("browser start: %v", d.StartCost())
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

// testLogger routes log lines to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// newFake starts a fake API server over plain HTTP.
func newFake(t *testing.T) *fakeapiserver.Server {
	t.Helper()
	return startFake(t, testLogger(t).With("component", "fakeapiserver"))
}

// newFakeB is newFake for a benchmark (no logs).
func newFakeB(b *testing.B) *fakeapiserver.Server { return startFake(b, nil) }

func startFake(t testing.TB, log *slog.Logger) *fakeapiserver.Server {
	t.Helper()
	fake, err := fakeapiserver.New(fakeapiserver.Config{Insecure: true, KeepEndedFor: -1, Logger: log})
	require.NoError(t, err)
	require.NoError(t, fake.Start())
	t.Cleanup(func() { _ = fake.Close() })
	return fake
}

var containerSeq atomic.Int64

// request is a session's request to front, its container unique.
func request(front *url.URL, token string, tty bool, end scenarios.End, header map[string]string) clients.Request {
	sc := &scenarios.Scenario{Name: "chromium/" + string(end.Kind) + "/" + end.As, End: end}
	h := make(map[string][]string)
	for k, v := range header {
		h[k] = []string{v}
	}
	return clients.Request{
		Case:      scenarios.Case{Scenario: sc, Transport: execproto.TransportWebSocket, Protocol: execproto.ProtocolBase64, TTY: tty, Client: scenarios.ClientChromium},
		Front:     front,
		Header:    h,
		APIToken:  token,
		Namespace: "default", Pod: "web", Container: fmt.Sprintf("c%d", containerSeq.Add(1)),
		Command: []string{"sh", "-i"},
	}
}

// backendSession waits for the fake's session of req.
func backendSession(t *testing.T, fake *fakeapiserver.Server, req clients.Request) *fakeapiserver.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := fake.WaitFor(ctx, func(s *fakeapiserver.Session) bool { return s.Container == req.Container })
	require.NoError(t, err)
	return s
}
