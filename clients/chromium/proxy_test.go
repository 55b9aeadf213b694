package chromium_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/clients/chromium"
	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

// frontToken is the reference proxy's front credential in these tests; the
// browser sends it as the cookie proxyundertest.DefaultFrontCookie.
const frontToken = "front-secret-for-chromium"

// keepalive is the reference proxy's ping period and pong timeout here:
// an offline browser is found within twice it.
const keepalive = time.Second

// refProxy is the reference proxy in front of a fake API server.
type refProxy struct {
	fake  *fakeapiserver.Server
	front *url.URL
}

func newRefProxy(t *testing.T) refProxy { return newRefProxyTLS(t, false) }

// newRefProxyTLS is newRefProxy, serving its front over https if tls.
func newRefProxyTLS(t *testing.T, tls bool) refProxy {
	t.Helper()
	fake := newFake(t)
	p, err := proxyundertest.New(proxyundertest.Config{
		Backend: fake.URL(), TLSConfig: fake.ClientTLSConfig(), Token: fake.Token(),
		FrontToken:   frontToken,
		PingInterval: keepalive, PongTimeout: keepalive,
		Logger: testLogger(t).With("component", "proxy"),
	})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(p)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	front, err := url.Parse(srv.URL)
	require.NoError(t, err)
	return refProxy{fake: fake, front: front}
}

// request is a session's request through the proxy, with the cookie.
func (rp refProxy) request(tty bool, end scenarios.End) clients.Request {
	return request(rp.front, rp.fake.Token(), tty, end,
		map[string]string{"Cookie": proxyundertest.DefaultFrontCookie + "=" + frontToken})
}

// dial opens a session and proves both directions work (scenarios.Ready).
func dial(t *testing.T, ctx context.Context, d *chromium.Dialer, req clients.Request) (*chromium.Session, *fakeapiserver.Session) {
	t.Helper()
	start := time.Now()
	s, err := d.DialSession(ctx, req)
	require.NoError(t, err)
	t.Cleanup(s.Release)
	t.Logf("session open: %v (own browser: %v)", time.Since(start).Round(time.Millisecond), chromium.OwnBrowser(req.Case))
	assert.Equal(t, execproto.ProtocolBase64, s.Protocol())
	enter := "\r" // a tty's Enter; a pipe needs the newline itself
	if !req.Case.TTY {
		enter = "\n"
	}
	require.NoError(t, s.Type("echo $((40+2))"+enter))
	require.NoError(t, s.Expect(ctx, "42"))
	return s, nil
}

// TestThroughReferenceProxy drives the reference proxy from a real
// browser: the page on the proxy's origin, the front credential as a
// cookie, the API token in the bearer subprotocol.
func TestThroughReferenceProxy(t *testing.T) {
	start := time.Now()
	d := newDialer(t, chromium.Options{})
	rp := newRefProxy(t)

	t.Run("type-exit", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req := rp.request(true, scenarios.End{Kind: scenarios.EndTypeExit})
		s, _ := dial(t, ctx, d, req)
		bs := backendSession(t, rp.fake, req)
		require.NoError(t, s.Type("exit\r"))
		gone(t, ctx, bs, 3*time.Second)
		select {
		case <-s.Done():
		case <-ctx.Done():
			t.Fatal("the page's socket is still open after exit")
		}
		end := s.End()
		assert.Equal(t, 1000, end.ServerCloseCode, "the proxy's close code: %s", end)
		assert.True(t, end.ServerClosedFirst, "the proxy closed first: %s", end)
		assert.NoError(t, end.Err)
		st, ok, err := s.Status(ctx)
		require.NoError(t, err)
		assert.False(t, ok, "a status on exit 0 (base64.channel.k8s.io sends one only on failure): %+v", st)
	})

	t.Run("exit-code", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req := rp.request(false, scenarios.End{Kind: scenarios.EndTypeExit})
		s, _ := dial(t, ctx, d, req)
		require.NoError(t, s.Type("exit 3\n"))
		st, ok, err := s.Status(ctx)
		require.NoError(t, err)
		require.True(t, ok, "no status for exit 3")
		code, ok := st.ExitCode()
		assert.True(t, ok && code == 3, "exit code from %q", st.Message)
	})

	t.Run("resize", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req := rp.request(true, scenarios.End{Kind: scenarios.EndTypeExit})
		s, _ := dial(t, ctx, d, req)
		require.NoError(t, s.Resize(123, 45))
		// The shell's pty has the size: the resize reached the backend.
		require.NoError(t, s.Type("stty size\r"))
		require.NoError(t, s.Expect(ctx, "45 123"))
		info, err := backendSession(t, rp.fake, req).Info(ctx)
		require.NoError(t, err)
		assert.Contains(t, info.Resizes, execproto.TerminalSize{Width: 123, Height: 45})
		require.NoError(t, s.Type("exit\r"))
	})

	// A large paste, as scenarios.Paste sends it: every byte reaches the
	// shell.
	t.Run("paste", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req := rp.request(false, scenarios.End{Kind: scenarios.EndTypeExit})
		s, _ := dial(t, ctx, d, req)
		const total = 1 << 20
		require.NoError(t, s.Type(fmt.Sprintf("head -c %d | wc -c\n", total)))
		start := time.Now()
		for _, msg := range scenarios.PasteData(scenarios.Paste(scenarios.PasteLine, total, 64<<10)) {
			require.NoError(t, s.Type(string(msg)))
		}
		sent := time.Since(start)
		require.NoError(t, s.Expect(ctx, fmt.Sprint(total)))
		t.Logf("paste of %d bytes: sent in %v, counted by the shell after %v", total, sent.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	})

	// An https front: the browser cannot be given the front's CA, so it
	// accepts any certificate (Security.setIgnoreCertificateErrors); the
	// cookie is Secure.
	t.Run("https-front", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		tp := newRefProxyTLS(t, true)
		req := tp.request(true, scenarios.End{Kind: scenarios.EndTypeExit})
		s, _ := dial(t, ctx, d, req)
		bs := backendSession(t, tp.fake, req)
		require.NoError(t, s.Type("exit\r"))
		gone(t, ctx, bs, 3*time.Second)
	})

	t.Run("no-cookie", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req := request(rp.front, rp.fake.Token(), true, scenarios.End{Kind: scenarios.EndTypeExit}, nil)
		_, err := d.DialSession(ctx, req)
		var he *execclient.HandshakeError
		require.True(t, errors.As(err, &he), "want a refused handshake, got %v", err)
		assert.Equal(t, 401, he.StatusCode)
	})

	t.Run("not-found", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req := rp.request(true, scenarios.End{Kind: scenarios.EndTypeExit})
		front := *rp.front
		front.Path = "/no/such/prefix"
		req.Front = &front
		_, err := d.DialSession(ctx, req)
		var he *execclient.HandshakeError
		require.True(t, errors.As(err, &he), "want a refused handshake, got %v", err)
		assert.Equal(t, 404, he.StatusCode)
		t.Logf("refused: %v", err)
	})

	// Each way a page dies: the reference proxy ends the shell within 3 s
	// (offline: within its keepalive, PingInterval+PongTimeout, plus 3 s).
	for _, e := range []struct {
		name   string
		end    scenarios.End
		do     func(ctx context.Context, s *chromium.Session) error
		within time.Duration
	}{
		{"tab-close", own(scenarios.OwnTabClose), endAs(scenarios.OwnTabClose), 3 * time.Second},
		{"navigate", own(scenarios.OwnNavigate), endAs(scenarios.OwnNavigate), 3 * time.Second},
		{"ws-close", own(scenarios.OwnWSClose), endAs(scenarios.OwnWSClose), 3 * time.Second},
		{"browser-kill", own(scenarios.OwnBrowserKill), endAs(scenarios.OwnBrowserKill), 3 * time.Second},
		{"browser-tree", own(scenarios.OwnBrowserTree), endAs(scenarios.OwnBrowserTree), 3 * time.Second},
		// Offline holds data both ways, but the browser answers pings
		// until the server's data is held (TestOfflineKeepsTheSocket): the
		// shell prints "tick" a second later, the pongs stop, and the
		// proxy's keepalive finds the dead frontend.
		{"offline", own(scenarios.OwnOffline), func(ctx context.Context, s *chromium.Session) error {
			if err := s.Type("sleep 1; echo tick\r"); err != nil {
				return err
			}
			if err := s.Expect(ctx, "echo tick"); err != nil { // the pty's echo: the line is in
				return err
			}
			return s.EndAs(ctx, scenarios.OwnOffline)
		}, time.Second + 2*keepalive + 3*time.Second},
		{"client-tcp-fin", scenarios.End{Kind: scenarios.EndClientAbort}, func(_ context.Context, s *chromium.Session) error { return s.AbortTCP() }, 3 * time.Second},
		{"client-close-4000", scenarios.End{Kind: scenarios.EndClientClose, Code: 4000}, closeWith(4000), 3 * time.Second},
	} {
		t.Run(e.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req := rp.request(true, e.end)
			s, _ := dial(t, ctx, d, req)
			bs := backendSession(t, rp.fake, req)
			require.NoError(t, e.do(ctx, s))
			gone(t, ctx, bs, e.within)
		})
	}
	// An idle offline tab answers the proxy's pings: nothing ends its
	// session (a real network outage would; DevTools' offline is not one).
	t.Run("offline-idle", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req := rp.request(true, own(scenarios.OwnOffline))
		s, _ := dial(t, ctx, d, req)
		bs := backendSession(t, rp.fake, req)
		require.NoError(t, s.EndAs(ctx, scenarios.OwnOffline))
		wctx, wcancel := context.WithTimeout(ctx, 3*keepalive)
		defer wcancel()
		_, live, err := bs.WaitGone(wctx)
		require.Error(t, err, "the proxy ended an idle offline tab's shell")
		assert.NotEmpty(t, live)
		select {
		case <-s.Done():
			t.Errorf("the page's socket ended: %s", s.End())
		default:
		}
	})
	t.Logf("the whole test: %v", time.Since(start).Round(time.Millisecond))
}

// gone waits, at most within, for the backend session's shell to be gone
// from the process table.
func gone(t *testing.T, ctx context.Context, bs *fakeapiserver.Session, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	took, live, err := bs.WaitGone(ctx)
	require.NoError(t, err, "the shell outlived the ending by %v: %v", within, live)
	t.Logf("shell gone %v after the ending", took.Round(time.Millisecond))
}
