package proxyundertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	testPrefix = "/api/kubernetes"
	testToken  = "test-token"
	testFront  = "test-front-token"
	execPath   = "/api/v1/namespaces/ns/pods/web/exec"
)

// env is a fake backend, the proxy in front of it and an HTTP server for
// the proxy. Everything is released in t.Cleanup, proxy sessions first.
type env struct {
	backend *fakeBackend
	proxy   *Proxy
	front   *httptest.Server
}

func newEnv(t *testing.T, mutate ...func(*Config)) *env {
	t.Helper()
	logw := &testLogWriter{t: t}
	t.Cleanup(logw.stop) // registered first: runs last
	backend := newFakeBackend(t)
	u, err := url.Parse(backend.srv.URL)
	require.NoError(t, err)
	cfg := Config{
		Backend:    u,
		TLSConfig:  backend.srv.Client().Transport.(*http.Transport).TLSClientConfig,
		Token:      testToken,
		FrontToken: testFront,
		PathPrefix: testPrefix,
		Logger:     slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(cfg)
	require.NoError(t, err)
	front := httptest.NewServer(p)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		assert.NoError(t, p.Shutdown(ctx))
	})
	t.Cleanup(front.Close)
	return &env{backend: backend, proxy: p, front: front}
}

// testLogWriter routes the proxy's logs to t.Log until the test is over.
type testLogWriter struct {
	mu      sync.Mutex
	t       *testing.T
	stopped bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
}

func (e *env) url(path, query string) string {
	return "ws" + strings.TrimPrefix(e.front.URL, "http") + testPrefix + path + "?" + query
}

// withCredential is h with the front credential, unless h has an
// Authorization or a Cookie of its own.
func withCredential(h http.Header) http.Header {
	h = h.Clone()
	if h == nil {
		h = http.Header{}
	}
	if h.Get("Authorization") == "" && h.Get("Cookie") == "" {
		h.Set("Authorization", "Bearer "+testFront)
	}
	return h
}

func execQuery(tty bool) string {
	q := "command=sh&command=-i&stdin=true&stdout=true&stderr=true&tty=false"
	if tty {
		q = "command=sh&command=-i&stdin=true&stdout=true&stderr=true&tty=true"
	}
	return q
}

// dial connects a client offering offered, with header, to path. The
// client sends the front credential, unless header has an Authorization
// or a Cookie of its own.
func (e *env) dial(t *testing.T, path, query string, offered []string, header http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	header = withCredential(header)
	d := websocket.Dialer{Subprotocols: offered, HandshakeTimeout: waitTimeout}
	c, resp, err := d.Dial(e.url(path, query), header)
	if c != nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, resp, err
}

// open starts a session under proto (none offered for ProtocolNone) and
// returns the client and the backend's view of the session.
func (e *env) open(t *testing.T, proto execproto.Protocol, tty bool) (*websocket.Conn, *backendConn) {
	t.Helper()
	var offered []string
	if proto != execproto.ProtocolNone {
		offered = []string{string(proto)}
	}
	c, _, err := e.dial(t, execPath, execQuery(tty), offered, nil)
	require.NoError(t, err)
	require.Equal(t, string(proto), c.Subprotocol())
	return c, e.backend.accept(t)
}

// readUntilClose reads the client until the connection ends and returns
// the close frame it got.
func readUntilClose(t *testing.T, c *websocket.Conn) *websocket.CloseError {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitTimeout)))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			return closeError(t, err)
		}
	}
}

// farewell is what the backend must have received at the end of a session
// in which the client sent nothing: the exit, then close 1000.
func farewellLog(p execproto.Protocol, tty bool) []string {
	return []string{messageString(ExitMessage(p, tty)), "close 1000 \"\""}
}

func waitNoSessions(t *testing.T, p *Proxy) {
	t.Helper()
	require.Eventually(t, func() bool { return p.Sessions() == 0 }, waitTimeout, 5*time.Millisecond,
		"sessions still open: %d", p.Sessions())
}

// A frontend end, however it happens.
type frontendEnd struct {
	name      string
	keepalive bool // needs a tiny PingInterval/PongTimeout
	do        func(t *testing.T, c *websocket.Conn)
}

func closeFrame(code int) func(t *testing.T, c *websocket.Conn) {
	return func(t *testing.T, c *websocket.Conn) {
		require.NoError(t, c.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(code, "client leaving"), time.Now().Add(waitTimeout)))
		ce := readUntilClose(t, c)
		assert.Equal(t, code, ce.Code, "the proxy answers the close frame echoing its code")
	}
}

var frontendEnds = []frontendEnd{
	{name: "close-1000", do: closeFrame(websocket.CloseNormalClosure)},
	{name: "close-1001", do: closeFrame(websocket.CloseGoingAway)},
	{name: "tcp-abort", do: func(t *testing.T, c *websocket.Conn) {
		require.NoError(t, c.NetConn().Close())
	}},
	{name: "tcp-reset", do: func(t *testing.T, c *websocket.Conn) {
		require.NoError(t, c.NetConn().(*net.TCPConn).SetLinger(0))
		require.NoError(t, c.NetConn().Close())
	}},
	// The client never reads, so it never answers a ping: a half-open
	// frontend as far as the proxy can tell.
	{name: "keepalive-timeout", keepalive: true, do: func(*testing.T, *websocket.Conn) {}},
}

func tinyKeepalive(c *Config) {
	c.PingInterval = 20 * time.Millisecond
	c.PongTimeout = 40 * time.Millisecond
}

func ttyName(tty bool) string {
	if tty {
		return "tty"
	}
	return "no-tty"
}

func TestFrontendEndSendsExitThenCloseHandshake(t *testing.T) {
	for _, end := range frontendEnds {
		for _, proto := range execproto.AllProtocols {
			for _, tty := range []bool{true, false} {
				t.Run(end.name+"/"+proto.String()+"/"+ttyName(tty), func(t *testing.T) {
					t.Parallel()
					var mutate []func(*Config)
					if end.keepalive {
						mutate = append(mutate, tinyKeepalive)
					}
					e := newEnv(t, mutate...)
					c, b := e.open(t, proto, tty)
					end.do(t, c)
					assert.Equal(t, farewellLog(proto, tty), b.waitDone(t))
					waitNoSessions(t, e.proxy)
				})
			}
		}
	}
}

func TestExitSequences(t *testing.T) {
	assert.Equal(t, "\x03\rexit\r", string(ExitSequence(true)))
	assert.Equal(t, "exit\n", string(ExitSequence(false)))
	typ, b := ExitMessage(execproto.ProtocolV5, true)
	assert.Equal(t, websocket.BinaryMessage, typ)
	assert.Equal(t, "\x00\x03\rexit\r", string(b))
	typ, b = ExitMessage(execproto.ProtocolBase64, false)
	assert.Equal(t, websocket.TextMessage, typ)
	assert.Equal(t, "0ZXhpdAo=", string(b))
}

func TestTTYQueryParameterIsReadAsTheAPIServerDoes(t *testing.T) {
	for q, want := range map[string]bool{
		"tty=true": true, "tty=1": true, "tty=TRUE": true, "tty=": true,
		"tty=false": false, "tty=0": false, "tty=False": false, "": false, "stdin=true": false,
		"tty=0&tty=1": false,
	} {
		v, err := url.ParseQuery(q)
		require.NoError(t, err)
		assert.Equal(t, want, isTTY(v), q)
	}
}

func TestVariants(t *testing.T) {
	for _, proto := range execproto.AllProtocols {
		for _, tty := range []bool{true, false} {
			t.Run("no-exit/"+proto.String()+"/"+ttyName(tty), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, func(c *Config) { c.Variant = NoExit })
				c, b := e.open(t, proto, tty)
				require.NoError(t, c.NetConn().Close())
				// Neither the exit nor a close frame: the TCP connection just drops.
				assert.Equal(t, []string{"eof"}, b.waitDone(t))
				waitNoSessions(t, e.proxy)
			})
			t.Run("base64-exit/"+proto.String()+"/"+ttyName(tty), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, func(c *Config) { c.Variant = AlwaysBase64Exit })
				c, b := e.open(t, proto, tty)
				require.NoError(t, c.NetConn().Close())
				want := []string{messageString(ExitMessage(execproto.ProtocolBase64, tty)), "close 1000 \"\""}
				assert.Equal(t, want, b.waitDone(t))
				assert.True(t, strings.HasPrefix(want[0], `message text "0`), want[0])
				waitNoSessions(t, e.proxy)
			})
		}
	}
}

func TestNewRejectsUnknownVariant(t *testing.T) {
	_, err := New(Config{Backend: &url.URL{Scheme: "https", Host: "h"}, Variant: "nope"})
	require.Error(t, err)
}

func TestSubprotocolNegotiation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		offered []string
		want    string
	}{
		{"the backend picks the first offered, in the client's order", []string{"v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"}, "v5.channel.k8s.io"},
		{"a browser's base64 offer", []string{"base64.channel.k8s.io", "v4.base64.channel.k8s.io"}, "base64.channel.k8s.io"},
		{"an unknown protocol first is skipped by the backend", []string{"bogus", "v4.channel.k8s.io", "channel.k8s.io"}, "v4.channel.k8s.io"},
		{"v5 anywhere in the offer is the backend's choice", []string{"bogus", "v4.channel.k8s.io", "v5.channel.k8s.io"}, "v5.channel.k8s.io"},
		{"none offered gets none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			c, _, err := e.dial(t, execPath, execQuery(true), tc.offered, nil)
			require.NoError(t, err)
			b := e.backend.accept(t)
			assert.Equal(t, len(tc.offered), len(b.offered))
			if len(tc.offered) > 0 {
				assert.Equal(t, tc.offered, b.offered, "offered list forwarded in order")
			}
			assert.Equal(t, tc.want, string(b.protocol))
			assert.Equal(t, tc.want, c.Subprotocol(), "the client gets the backend's choice")
		})
	}
}

func TestBackendRefusalIsPassedThrough(t *testing.T) {
	for _, tc := range []struct {
		name     string
		path     string
		offered  []string
		wantBody string
	}{
		{"no supported subprotocol", execPath, []string{"bogus"}, "requested protocol(s) are not supported"},
		{"forbidden by the API server", "/api/v1/namespaces/ns/pods/forbidden/exec", []string{"v5.channel.k8s.io"}, `pods "forbidden" is forbidden`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			c, resp, err := e.dial(t, tc.path, execQuery(true), tc.offered, nil)
			require.ErrorIs(t, err, websocket.ErrBadHandshake)
			require.Nil(t, c)
			require.NotNil(t, resp)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			body, _ := io.ReadAll(resp.Body)
			assert.Contains(t, string(body), tc.wantBody)
			assert.Equal(t, 0, e.proxy.Sessions())
		})
	}
}

func TestBackendDownIs502(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		c.Backend = &url.URL{Scheme: "https", Host: l.Addr().String()}
		require.NoError(t, l.Close()) // nothing listens there any more
	})
	_, resp, err := e.dial(t, execPath, execQuery(true), []string{"v5.channel.k8s.io"}, nil)
	require.ErrorIs(t, err, websocket.ErrBadHandshake)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
}

// When the frontend upgrade fails after the backend was dialed, the exec
// process exists all the same: it gets the farewell.
func TestFailedFrontendUpgradeStillSaysFarewell(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.backend.hold = make(chan struct{})
	c, err := net.Dial("tcp", e.front.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	req := "GET " + testPrefix + execPath + "?" + execQuery(true) + " HTTP/1.1\r\n" +
		"Host: " + e.front.Listener.Addr().String() + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n" +
		"Authorization: Bearer " + testFront + "\r\n\r\n"
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	// The proxy is dialling the backend, which holds its answer: the
	// client resets meanwhile, so that the proxy's 101 to it fails (the
	// frontend upgrade fails after the backend session exists).
	select {
	case <-e.backend.arrived:
	case <-time.After(waitTimeout):
		t.Fatal("the backend upgrade request never arrived")
	}
	require.NoError(t, c.(*net.TCPConn).SetLinger(0))
	require.NoError(t, c.Close())
	close(e.backend.hold)
	b := e.backend.accept(t)
	assert.Equal(t, farewellLog(execproto.ProtocolV5, true), b.waitDone(t))
	assert.Equal(t, 0, e.proxy.Sessions())
}

func TestOrigin(t *testing.T) {
	const console = "https://console.example.com"
	for _, tc := range []struct {
		name   string
		origin func(e *env) string
		ok     bool
	}{
		{"absent (a non-browser client)", func(*env) string { return "" }, true},
		{"same host as the request", func(e *env) string { return e.front.URL }, true},
		{"an allowed origin", func(*env) string { return console }, true},
		{"another origin", func(*env) string { return "https://evil.example.com" }, false},
		{"same host name on another port", func(*env) string { return "http://127.0.0.1:1" }, false},
		// Unicode case folding would take U+017F (long s) for an s.
		{"a Unicode lookalike of an allowed origin", func(*env) string { return "https://con\u017fole.example.com" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *Config) { c.AllowedOrigins = []string{console} })
			h := http.Header{}
			if o := tc.origin(e); o != "" {
				h.Set("Origin", o)
			}
			c, resp, err := e.dial(t, execPath, execQuery(true), []string{"v5.channel.k8s.io"}, h)
			if tc.ok {
				require.NoError(t, err)
				e.backend.accept(t)
				_ = c
				return
			}
			require.ErrorIs(t, err, websocket.ErrBadHandshake)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			body, _ := io.ReadAll(resp.Body)
			assert.Contains(t, string(body), "not allowed")
			assert.Zero(t, e.backend.dials.Load(), "refused before dialing the backend")
		})
	}
}

func TestRelayBothWays(t *testing.T) {
	for _, proto := range execproto.AllProtocols {
		t.Run(proto.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			var offered []string
			if proto != execproto.ProtocolNone {
				offered = []string{string(proto)}
			}
			h := http.Header{"Authorization": {"Bearer client-token"}, "Cookie": {DefaultFrontCookie + "=" + testFront}}
			c, _, err := e.dial(t, execPath, execQuery(false), offered, h)
			require.NoError(t, err)
			b := e.backend.accept(t)
			assert.Equal(t, "Bearer "+testToken, b.auth, "the token replaces the client's")
			assert.Equal(t, "false", b.query.Get("tty"))
			assert.Equal(t, []string{"sh", "-i"}, b.query["command"], "query passed through")

			require.NoError(t, c.SetReadDeadline(time.Now().Add(waitTimeout)))
			typ, data, err := c.ReadMessage()
			require.NoError(t, err)
			wantTyp, want := execproto.Encode(proto, execproto.StreamStdout, nil)
			assert.Equal(t, messageString(wantTyp, want), messageString(typ, data), "the backend's greeting")

			inputs := [][]byte{[]byte("echo hello\n"), []byte("second"), bytes.Repeat([]byte("0123456789abcdef"), 20<<10)}
			for _, in := range inputs {
				require.NoError(t, c.WriteMessage(execproto.Encode(proto, execproto.StreamStdin, in)))
			}
			for i, in := range inputs {
				got := b.next(t)
				sentTyp, sent := execproto.Encode(proto, execproto.StreamStdin, in)
				assert.Equal(t, messageString(sentTyp, sent), got.String(), "client message %d reaches the backend whole", i)
				typ, data, err := c.ReadMessage()
				require.NoError(t, err)
				wantTyp, want := execproto.Encode(proto, execproto.StreamStdout, in)
				assert.Equal(t, wantTyp, typ, "message type kept")
				assert.True(t, bytes.Equal(want, data), "backend message %d reaches the client whole", i)
			}
		})
	}
}

func TestBackendCloseIsRelayed(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int
		text string
	}{
		{"normal", websocket.CloseNormalClosure, "process exited"},
		{"internal-error", websocket.CloseInternalServerErr, "internal error"},
		{"application-code", 4001, "custom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			c, b := e.open(t, execproto.ProtocolV5, true)
			b.closeWith(tc.code, tc.text)
			ce := readUntilClose(t, c) // gorilla's client answers the close frame
			assert.Equal(t, tc.code, ce.Code)
			assert.Equal(t, tc.text, ce.Text)
			// The proxy answered the backend's close frame; no exit after a backend end.
			assert.Equal(t, []string{fmt.Sprintf("close %d \"\"", tc.code)}, b.waitDone(t))
			waitNoSessions(t, e.proxy)
		})
	}
}

func TestBackendLostIsReportedAs1011(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, b := e.open(t, execproto.ProtocolV5, true)
	b.drop()
	ce := readUntilClose(t, c)
	assert.Equal(t, websocket.CloseInternalServerErr, ce.Code)
	assert.Equal(t, "backend connection lost", ce.Text)
	waitNoSessions(t, e.proxy)
}

func TestOversizedFrontendMessage(t *testing.T) {
	for _, proto := range []execproto.Protocol{execproto.ProtocolV5, execproto.ProtocolBase64} {
		t.Run(proto.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *Config) { c.MaxMessageSize = 1024 })
			c, b := e.open(t, proto, true)
			require.NoError(t, c.WriteMessage(execproto.Encode(proto, execproto.StreamStdin, bytes.Repeat([]byte("x"), 2048))))
			ce := readUntilClose(t, c)
			assert.Equal(t, websocket.CloseMessageTooBig, ce.Code)
			assert.Equal(t, farewellLog(proto, true), b.waitDone(t), "the oversized message is not forwarded")
			waitNoSessions(t, e.proxy)
		})
	}
}

// A backend busy writing output (a flood the client has stopped reading)
// still gets the exit, then the close frame, and the proxy drains the rest.
func TestExitReachesABusyBackend(t *testing.T) {
	for _, end := range frontendEnds {
		t.Run(end.name, func(t *testing.T) {
			t.Parallel()
			var mutate []func(*Config)
			if end.keepalive {
				mutate = append(mutate, tinyKeepalive)
			}
			e := newEnv(t, mutate...)
			c, b := e.open(t, execproto.ProtocolV5, true)
			typ, data := execproto.Encode(execproto.ProtocolV5, execproto.StreamStdin, []byte("flood\n"))
			require.NoError(t, c.WriteMessage(typ, data))
			if !end.keepalive {
				require.NoError(t, c.SetReadDeadline(time.Now().Add(waitTimeout)))
				for range 3 { // greeting, then output
					_, _, err := c.ReadMessage()
					require.NoError(t, err)
				}
			}
			end.do(t, c)
			want := append([]string{messageString(typ, data)}, farewellLog(execproto.ProtocolV5, true)...)
			assert.Equal(t, want, b.waitDone(t))
			waitNoSessions(t, e.proxy)
		})
	}
}

// The proxy is the client of the backend: after the close handshake it
// waits for the backend to close TCP instead of closing first.
func TestProxyWaitsForTheBackendToCloseTCP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.backend.lingerNanos.Store(int64(200 * time.Millisecond))
	c, b := e.open(t, execproto.ProtocolV4, true)
	require.NoError(t, c.NetConn().Close())
	assert.Equal(t, farewellLog(execproto.ProtocolV4, true), b.waitDone(t))
	waitNoSessions(t, e.proxy)
}

// A client that answers pings but sends nothing is alive: the keepalive
// must not end it.
func TestKeepaliveKeepsAnIdleClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tinyKeepalive)
	c, b := e.open(t, execproto.ProtocolV5, true)
	pings := make(chan struct{}, 100)
	c.SetPingHandler(func(data string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		// Like gorilla's default: a ping arriving after our close frame
		// cannot be answered, which is no error.
		_ = c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(waitTimeout))
		return nil
	})
	readDone := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				readDone <- err
				return
			}
		}
	}()
	// Ten pings are five keepalive windows (PingInterval+PongTimeout = 60ms).
	for i := 0; i < 10; i++ {
		select {
		case <-pings:
		case err := <-readDone:
			t.Fatalf("the proxy ended an idle but live client after %d pings: %v", i, err)
		case <-time.After(waitTimeout):
			t.Fatal("no keepalive ping")
		}
	}
	assert.Equal(t, 1, e.proxy.Sessions())
	assert.Empty(t, b.received(), "nothing sent to the backend")
	// Ends as usual; the reader goroutine answers the proxy's close frame.
	require.NoError(t, c.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(waitTimeout)))
	assert.Equal(t, farewellLog(execproto.ProtocolV5, true), b.waitDone(t))
	select {
	case err := <-readDone:
		assert.Equal(t, websocket.CloseNormalClosure, closeError(t, err).Code)
	case <-time.After(waitTimeout):
		t.Fatal("client not closed")
	}
}

func TestShutdownEndsOpenSessions(t *testing.T) {
	e := newEnv(t)
	type client struct {
		proto execproto.Protocol
		tty   bool
		b     *backendConn
		end   chan error
	}
	clients := []*client{{proto: execproto.ProtocolV5, tty: true}, {proto: execproto.ProtocolBase64, tty: false}}
	for _, cl := range clients {
		c, b := e.open(t, cl.proto, cl.tty)
		cl.b, cl.end = b, make(chan error, 1)
		go func() { // a browser reading its terminal
			_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					cl.end <- err
					return
				}
			}
		}()
	}
	// The client sees the 101 a moment before the proxy counts the session.
	// (Shutdown is right either way: a session not yet counted is ended as
	// soon as it registers.)
	require.Eventually(t, func() bool { return e.proxy.Sessions() == len(clients) }, waitTimeout, time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, e.proxy.Shutdown(ctx))
	assert.Equal(t, 0, e.proxy.Sessions())
	for _, cl := range clients {
		assert.Equal(t, farewellLog(cl.proto, cl.tty), cl.b.waitDone(t), cl.proto.String())
		select {
		case err := <-cl.end:
			assert.Equal(t, websocket.CloseGoingAway, closeError(t, err).Code)
		case <-time.After(waitTimeout):
			t.Fatal("client not closed")
		}
	}

	_, resp, err := e.dial(t, execPath, execQuery(true), []string{"v5.channel.k8s.io"}, nil)
	require.ErrorIs(t, err, websocket.ErrBadHandshake)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Zero(t, len(e.backend.opened), "no backend session after Shutdown")
}

func TestShutdownIsBoundedByItsContext(t *testing.T) {
	// A backend that never answers the close frame: the wait is cut by ctx,
	// well before CloseTimeout.
	e := newEnv(t, func(c *Config) { c.CloseTimeout = time.Hour })
	_, b := e.open(t, execproto.ProtocolV5, true)
	b.wmu.Lock() // the fake cannot answer a close frame while this is held
	defer b.wmu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := e.proxy.Shutdown(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	waitNoSessions(t, e.proxy)
}

// TestOnlyExecIsServed: a request that is not an exec upgrade is refused,
// with the credential or without, and never reaches the backend; so is
// one outside the prefix.
func TestOnlyExecIsServed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{testPrefix + "/api/v1/namespaces?limit=1", http.StatusNotFound},
		{testPrefix + "/api/v1/namespaces/ns/pods/web", http.StatusNotFound},
		{testPrefix + "/api/v1/namespaces/ns/pods/web/attach", http.StatusNotFound},
		{testPrefix + "/api/v1/namespaces/ns/secrets/exec/exec", http.StatusNotFound},
		{testPrefix + execPath, http.StatusBadRequest}, // exec, but not an upgrade
		{"/api/v1/namespaces", http.StatusNotFound},
		{testPrefix + "x/api/v1/namespaces", http.StatusNotFound},
	} {
		req, err := http.NewRequest(http.MethodGet, e.front.URL+tc.path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testFront)
		resp, err := e.front.Client().Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, tc.status, resp.StatusCode, tc.path)
	}
	assert.Zero(t, e.backend.dials.Load(), "nothing reached the backend")
}

// TestOpenDoorRelaysAPI: the OpenDoor variant relays a plain request with
// its own token, to anyone (the reference proxy as it was).
func TestOpenDoorRelaysAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Variant = OpenDoor })
	resp, err := e.front.Client().Get(e.front.URL + testPrefix + "/api/v1/namespaces?limit=1")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var got plainEcho
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	assert.Equal(t, plainEcho{Path: "/api/v1/namespaces", Query: "limit=1", Auth: "Bearer " + testToken}, got)
}

// TestFrontCredential: an exec upgrade needs the front credential, as a
// bearer token or the cookie; without it, or with a wrong one, it gets 401
// before the backend is dialled, and the refusal is logged without it.
func TestFrontCredential(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header http.Header
		ok     bool
	}{
		{"bearer", http.Header{"Authorization": {"Bearer " + testFront}}, true},
		{"cookie", http.Header{"Cookie": {"other=1; " + DefaultFrontCookie + "=" + testFront}}, true},
		{"none", http.Header{"Cookie": {"other=1"}}, false},
		{"wrong bearer", http.Header{"Authorization": {"Bearer wrong-" + testFront}}, false},
		{"wrong cookie", http.Header{"Cookie": {DefaultFrontCookie + "=" + testFront + "x"}}, false},
		{"basic", http.Header{"Authorization": {"Basic " + testFront}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			var mu sync.Mutex
			e := newEnv(t, func(c *Config) {
				c.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
			})
			c, resp, err := e.dial(t, execPath, execQuery(true), []string{"v5.channel.k8s.io"}, tc.header)
			if tc.ok {
				require.NoError(t, err)
				e.backend.accept(t)
				_ = c
				return
			}
			require.ErrorIs(t, err, websocket.ErrBadHandshake)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
			assert.Zero(t, e.backend.dials.Load(), "refused before dialing the backend")
			mu.Lock()
			defer mu.Unlock()
			assert.Contains(t, logs.String(), "request refused")
			assert.NotContains(t, logs.String(), testFront)
		})
	}
}

// TestHost: a Host that is an IP literal, localhost or allowed is served;
// another name (a rebinding page's) gets 403 before the backend is dialled.
func TestHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:8080", true},
		{"[::1]:8080", true},
		{"localhost:8080", true},
		{"LocalHost", true},
		{"console.example.com", true},
		{"console.example.com:8443", true},
		{"evil.example:8080", false},
		{"localhost.evil.example:8080", false},
		{"127.0.0.1.evil.example", false},
		{"console.example.com.evil.example", false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *Config) { c.AllowedHosts = []string{"console.example.com"} })
			c, resp, err := e.dial(t, execPath, execQuery(true), []string{"v5.channel.k8s.io"}, http.Header{"Host": {tc.host}})
			if tc.ok {
				require.NoError(t, err)
				e.backend.accept(t)
				_ = c
				return
			}
			require.ErrorIs(t, err, websocket.ErrBadHandshake)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Zero(t, e.backend.dials.Load(), "refused before dialing the backend")
		})
	}
}

// TestNewNeedsFrontAuth: a proxy without a front credential is refused,
// unless it says something else authenticates.
func TestNewNeedsFrontAuth(t *testing.T) {
	u, _ := url.Parse("https://127.0.0.1:1")
	_, err := New(Config{Backend: u})
	require.ErrorContains(t, err, "FrontToken is required")
	_, err = New(Config{Backend: u, FrontToken: "a b"})
	require.Error(t, err)
	_, err = New(Config{Backend: u, FrontToken: "t", InsecureNoFrontAuth: true})
	require.Error(t, err)
	_, err = New(Config{Backend: u, InsecureNoFrontAuth: true})
	require.NoError(t, err)
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestNoGoroutineLeak(t *testing.T) {
	e := newEnv(t)
	baseline := runtime.NumGoroutine()
	fdBaseline := openFDs(t)

	ends := []func(t *testing.T, c *websocket.Conn, b *backendConn){
		func(t *testing.T, c *websocket.Conn, _ *backendConn) { closeFrame(websocket.CloseNormalClosure)(t, c) },
		func(t *testing.T, c *websocket.Conn, _ *backendConn) { require.NoError(t, c.NetConn().Close()) },
		func(t *testing.T, c *websocket.Conn, _ *backendConn) {
			require.NoError(t, c.NetConn().(*net.TCPConn).SetLinger(0))
			require.NoError(t, c.NetConn().Close())
		},
		func(t *testing.T, c *websocket.Conn, b *backendConn) { b.closeWith(1000, ""); readUntilClose(t, c) },
		func(t *testing.T, c *websocket.Conn, b *backendConn) { b.drop(); readUntilClose(t, c) },
	}
	for _, end := range ends {
		c, b := e.open(t, execproto.ProtocolV5, true)
		end(t, c, b)
		b.waitDone(t)
		_ = c.Close()
	}
	waitNoSessions(t, e.proxy)
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond) // polling a count; no event to wait on
	}
	for openFDs(t) > fdBaseline {
		if time.Now().After(deadline) {
			t.Fatalf("file descriptors: %d open, baseline %d", openFDs(t), fdBaseline)
		}
		time.Sleep(10 * time.Millisecond) // polling a count; no event to wait on
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// TestBackendWithABasePath: a backend URL with a path of its own (a
// cluster behind a multi-cluster gateway) gets the exec under it; the
// exec path is judged on what the client asked for. It was judged on the
// joined backend path, so every exec got 404 (found by FuzzBackendURL).
func TestBackendWithABasePath(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		u := *c.Backend
		u.Path = "/clusters/c1"
		c.Backend = &u
	})
	_, _, err := e.dial(t, execPath, execQuery(true), []string{"v5.channel.k8s.io"}, nil)
	require.NoError(t, err)
	b := e.backend.accept(t)
	assert.Equal(t, "/clusters/c1"+execPath, b.path)
	assert.Equal(t, []string{"true"}, b.query["tty"])
}

// TestDotSegmentsAreRefused: a path with dot segments (raw, or %2e) is
// refused before anything reaches the backend, which would resolve it
// outside the prefix and its base path, with the proxy's token.
func TestDotSegmentsAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		u := *c.Backend
		u.Path = "/clusters/c1"
		c.Backend = &u
	})
	for _, p := range []string{
		testPrefix + "/../../c2" + execPath,
		testPrefix + "/%2e%2e/%2E%2e/c2" + execPath,
		testPrefix + "/api/v1/namespaces/ns/pods/web/./exec",
		testPrefix + "/api/v1/namespaces/ns/pods/%2e/exec",
	} {
		c, err := net.Dial("tcp", e.front.Listener.Addr().String())
		require.NoError(t, err)
		_, err = fmt.Fprintf(c, "GET %s?command=sh HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", p, testFront)
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		_ = c.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", p, body)
		assert.Contains(t, string(body), "dot segments", p)
	}
	assert.Zero(t, e.backend.dials.Load(), "nothing reached the backend")
}

// TestAsteriskTargetIsRefused: the request target * never reaches the
// backend (it was appended to the base path without its /). net/http
// answers OPTIONS * itself; any other method with * comes through.
func TestAsteriskTargetIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.PathPrefix = "" })
	c, err := net.Dial("tcp", e.front.Listener.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "GET * HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", testFront)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Zero(t, e.backend.dials.Load())
}

// TestHashInTheQueryReachesTheBackend: a '#' in the request's query is
// data (the proxy reads tty=true after it); the backend must read the
// same query, not lose everything from '#' on when the dialer parses the
// URL again.
func TestHashInTheQueryReachesTheBackend(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in, err := url.ParseRequestURI(testPrefix + execPath + "?command=sh&x=#&tty=true")
	require.NoError(t, err)
	require.True(t, isTTY(in.Query()), "the proxy reads tty=true")
	out, ok := e.proxy.backendURL(in)
	require.True(t, ok)
	again, err := url.Parse(out.String())
	require.NoError(t, err)
	assert.Equal(t, []string{"true"}, again.Query()["tty"], "the backend reads what the proxy read: %s", out)
	assert.Equal(t, []string{"#"}, again.Query()["x"])
}

// TestRelayReads: with RelayReads the proxy relays GET and HEAD of
// discovery and of one pod, with its own token instead of the client's
// front credential (the cookie stays behind too), and the query; other
// paths, other methods, a foreign Origin and a request without the front
// credential are refused before anything reaches the backend.
func TestRelayReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.RelayReads = true })
	do := func(method, path string, header http.Header) (*http.Response, plainEcho) {
		t.Helper()
		req, err := http.NewRequest(method, e.front.URL+testPrefix+path, nil)
		require.NoError(t, err)
		req.Header = header
		resp, err := e.front.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var got plainEcho
		if method == http.MethodGet && resp.StatusCode == http.StatusOK {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
		}
		return resp, got
	}
	front := http.Header{"Authorization": {"Bearer " + testFront}}
	for _, path := range []string{"/api", "/apis", "/api/v1", "/version", "/api/v1/namespaces/ns/pods/web"} {
		resp, got := do(http.MethodGet, path+"?timeout=32s", front)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Equal(t, plainEcho{Path: path, Query: "timeout=32s", Auth: "Bearer " + testToken}, got, path)
		resp, _ = do(http.MethodHead, path, front)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "HEAD "+path)
	}
	// The cookie credential is accepted, and not relayed.
	resp, got := do(http.MethodGet, "/api", http.Header{"Cookie": {DefaultFrontCookie + "=" + testFront}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, plainEcho{Path: "/api", Auth: "Bearer " + testToken}, got)
	relayed := e.backend.plains.Load()

	for _, tc := range []struct {
		method, path string
		header       http.Header
		status       int
	}{
		{http.MethodGet, "/api/v1/namespaces/ns/pods/web", nil, http.StatusUnauthorized},
		{http.MethodGet, "/api/v1/namespaces/ns/pods/web", http.Header{"Authorization": {"Bearer wrong"}}, http.StatusUnauthorized},
		{http.MethodGet, "/api", http.Header{"Authorization": {"Bearer " + testFront}, "Origin": {"https://evil.example"}}, http.StatusForbidden},
		{http.MethodPost, "/api/v1/namespaces/ns/pods/web", front, http.StatusMethodNotAllowed},
		{http.MethodDelete, "/api/v1/namespaces/ns/pods/web", front, http.StatusMethodNotAllowed},
		{http.MethodGet, "/api/v1/namespaces", front, http.StatusNotFound},
		{http.MethodGet, "/api/v1/namespaces/ns/pods", front, http.StatusNotFound},
		{http.MethodGet, "/api/v1/namespaces/ns/secrets/web", front, http.StatusNotFound},
		{http.MethodGet, "/api/v1/namespaces/ns/pods/web/log", front, http.StatusNotFound},
		{http.MethodGet, "/api/v1/namespaces/ns/pods/web/attach", front, http.StatusNotFound},
		{http.MethodGet, "/apis/apps/v1", front, http.StatusNotFound},
		{http.MethodGet, "/api/", front, http.StatusNotFound},
		{http.MethodGet, "/api/v1/namespaces/ns/pods/a%2Fb", front, http.StatusNotFound},
		{http.MethodGet, "/api/v1/namespaces/ns/pods/a%2F..%2Fb", front, http.StatusBadRequest},
	} {
		resp, _ := do(tc.method, tc.path, tc.header)
		assert.Equal(t, tc.status, resp.StatusCode, "%s %s", tc.method, tc.path)
	}
	assert.Equal(t, relayed, e.backend.plains.Load(), "no refused read reached the backend")
	assert.Zero(t, e.backend.dials.Load())
}

// TestReadsAreNotRelayedByDefault: without RelayReads the pod and
// discovery are refused (404) with or without the front credential, and
// nothing reaches the backend.
func TestReadsAreNotRelayedByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, path := range []string{"/api", "/apis", "/api/v1", "/version", "/api/v1/namespaces/ns/pods/web"} {
		for _, h := range []http.Header{{}, {"Authorization": {"Bearer " + testFront}}} {
			req, err := http.NewRequest(http.MethodGet, e.front.URL+testPrefix+path, nil)
			require.NoError(t, err)
			req.Header = h
			resp, err := e.front.Client().Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			want := http.StatusNotFound
			if h.Get("Authorization") == "" {
				want = http.StatusUnauthorized
			}
			assert.Equal(t, want, resp.StatusCode, "%s %v", path, h)
		}
	}
	assert.Zero(t, e.backend.plains.Load())
}
