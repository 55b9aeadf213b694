package fakeapiserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
)

// startServer starts a server for one test and closes it (killing every
// process it started) when the test ends.
func startServer(t testing.TB, cfg fakeapiserver.Config) *fakeapiserver.Server {
	t.Helper()
	srv, err := fakeapiserver.New(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() { assert.NoError(t, srv.Close()) })
	return srv
}

// execURL is the exec endpoint of srv for command, with every stream and tty as given.
func execURL(srv *fakeapiserver.Server, tty bool, command ...string) string {
	u := srv.URL()
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path = "/api/v1/namespaces/default/pods/fakepod/exec"
	q := url.Values{"command": command}
	q.Set("stdin", "true")
	q.Set("stdout", "true")
	q.Set("stderr", "true")
	q.Set("tty", fmt.Sprint(tty))
	u.RawQuery = q.Encode()
	return u.String()
}

func auth(srv *fakeapiserver.Server) http.Header {
	return http.Header{"Authorization": {"Bearer " + srv.Token()}}
}

// dial opens a session offering p (none for ProtocolNone).
func dial(t testing.TB, srv *fakeapiserver.Server, p execproto.Protocol, tty bool, command ...string) *execclient.Conn {
	t.Helper()
	opts := execclient.Options{Header: auth(srv), TLSConfig: srv.ClientTLSConfig()}
	if p != execproto.ProtocolNone {
		opts.Protocols = []execproto.Protocol{p}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := execclient.Dial(ctx, execURL(srv, tty, command...), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Reset() })
	return c
}

// session finds the server's session of c.
func session(t testing.TB, srv *fakeapiserver.Server, c *execclient.Conn) *fakeapiserver.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sess, err := srv.WaitSession(ctx, c.Response().Header.Get(fakeapiserver.SessionHeader))
	require.NoError(t, err)
	return sess
}

func deadline(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// enter is Enter for the mode: \r on a terminal, \n on pipes.
func enter(tty bool) string {
	if tty {
		return "\r"
	}
	return "\n"
}

func TestNegotiation(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	cases := []struct {
		name    string
		offer   []string
		header  http.Header
		command []string
		want    execproto.Protocol
		status  int
	}{
		{name: "a client that offers nothing gets binary v1 and no protocol header", want: execproto.ProtocolNone},
		{name: "channel.k8s.io alone is accepted", offer: []string{"channel.k8s.io"}, want: execproto.ProtocolV1},
		{name: "base64.channel.k8s.io alone is accepted", offer: []string{"base64.channel.k8s.io"}, want: execproto.ProtocolBase64},
		{name: "v4.channel.k8s.io alone is accepted", offer: []string{"v4.channel.k8s.io"}, want: execproto.ProtocolV4},
		{name: "v4.base64.channel.k8s.io alone is accepted", offer: []string{"v4.base64.channel.k8s.io"}, want: execproto.ProtocolV4Base64},
		{name: "v5.channel.k8s.io alone is accepted", offer: []string{"v5.channel.k8s.io"}, want: execproto.ProtocolV5},
		{name: "kubectl's offer of v5 then v4 gets v5", offer: []string{"v5.channel.k8s.io", "v4.channel.k8s.io"}, want: execproto.ProtocolV5},
		{name: "v5 anywhere in the offer wins, as the API server's stream translator answers it", offer: []string{"v4.channel.k8s.io", "v5.channel.k8s.io"}, want: execproto.ProtocolV5},
		{name: "without v5 the client's order wins", offer: []string{"channel.k8s.io", "base64.channel.k8s.io"}, want: execproto.ProtocolV1},
		{name: "a bearer-token subprotocol beside a valid Authorization header is skipped", offer: []string{execproto.BearerProtocol("someone-else"), "base64.channel.k8s.io"}, want: execproto.ProtocolBase64},
		{name: "unknown protocols before a known one are skipped", offer: []string{"chat", "base64.channel.k8s.io"}, want: execproto.ProtocolBase64},
		{name: "only unknown protocols are refused with 403", offer: []string{"chat", "superchat"}, status: 403},
		{name: "SPDY-only v3 over WebSocket is refused with 403", offer: []string{"v3.channel.k8s.io"}, status: 403},
		{name: "a wrong token is refused with 401", header: http.Header{"Authorization": {"Bearer nope"}}, status: 401},
		{name: "no token is refused with 401", header: http.Header{}, status: 401},
		{name: "a command outside the allowlist is refused with 403", command: []string{"rm", "-rf", "/"}, status: 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := auth(srv)
			if tc.header != nil {
				h = tc.header
			}
			cmd := tc.command
			if cmd == nil {
				cmd = []string{"cat"}
			}
			c, err := execclient.Dial(deadline(t, 5*time.Second), execURL(srv, false, cmd...), execclient.Options{
				RawProtocols: tc.offer, Header: h, TLSConfig: srv.ClientTLSConfig(),
			})
			if tc.status != 0 {
				var he *execclient.HandshakeError
				require.ErrorAs(t, err, &he)
				assert.Equal(t, tc.status, he.StatusCode, he.Body)
				return
			}
			require.NoError(t, err)
			defer c.Reset()
			assert.Equal(t, tc.want, c.Protocol())
			assert.Equal(t, string(tc.want), c.Response().Header.Get("Sec-WebSocket-Protocol"))
		})
	}
}

// TestTokenSubprotocol: a WebSocket client without an Authorization header
// authenticates with its token as a subprotocol, as kube-apiserver's
// WebSocket protocol authenticator reads it (k8s.io/apiserver
// pkg/authentication/request/websocket/protocol.go, after the
// Authorization header's authenticator: k8s.io/kubernetes
// pkg/kubeapiserver/authenticator/config.go).
func TestTokenSubprotocol(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{Insecure: true})
	good := execproto.BearerProtocol(srv.Token())
	cases := []struct {
		name   string
		lines  []string // Sec-WebSocket-Protocol header lines
		header bool     // send the token in the Authorization header as well
		want   execproto.Protocol
		status int
	}{
		{name: "the token is taken out of the offer, which is then negotiated", lines: []string{good + ", base64.channel.k8s.io"}, want: execproto.ProtocolBase64},
		{name: "its position does not matter", lines: []string{"base64.channel.k8s.io, " + good + ", channel.k8s.io"}, want: execproto.ProtocolBase64},
		{name: "v5 beside it wins", lines: []string{good + ", v4.channel.k8s.io, v5.channel.k8s.io"}, want: execproto.ProtocolV5},
		{name: "it is read from every header line, which are then joined into one", lines: []string{good, "chat", "v4.channel.k8s.io"}, want: execproto.ProtocolV4},
		{name: "authenticated by the header, only the first line counts", lines: []string{"chat", "v4.channel.k8s.io"}, header: true, status: 403},
		{name: "authenticated by the header, a token subprotocol stays and is skipped", lines: []string{good, "v4.channel.k8s.io"}, header: true, status: 403},
		{name: "a token alone is refused: nothing would be left to answer", lines: []string{good}, status: 401},
		{name: "a wrong token is refused", lines: []string{execproto.BearerProtocol("nope") + ", v5.channel.k8s.io"}, status: 401},
		{name: "two tokens are refused", lines: []string{good + ", " + good + ", v5.channel.k8s.io"}, status: 401},
		{name: "padded base64 is refused (the authenticator decodes it unpadded)", lines: []string{good + "==, v5.channel.k8s.io"}, status: 401},
		{name: "no token at all is refused", lines: []string{"v5.channel.k8s.io"}, status: 401},
	}
	u := srv.URL()
	u.Scheme = "ws"
	u.Path = "/api/v1/namespaces/default/pods/fakepod/exec"
	u.RawQuery = url.Values{"command": {"cat"}, "stdin": {"true"}, "stdout": {"true"}}.Encode()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
			h := http.Header{"Sec-Websocket-Protocol": tc.lines}
			if tc.header {
				h.Set("Authorization", "Bearer "+srv.Token())
			}
			ws, resp, err := d.Dial(u.String(), h)
			if tc.status != 0 {
				require.ErrorIs(t, err, websocket.ErrBadHandshake)
				assert.Equal(t, tc.status, resp.StatusCode)
				body, _ := io.ReadAll(resp.Body)
				assert.NotContains(t, string(body), strings.TrimPrefix(good, execproto.BearerProtocolPrefix), "the refusal does not repeat the token")
				return
			}
			require.NoError(t, err)
			defer ws.Close()
			assert.Equal(t, string(tc.want), ws.Subprotocol())
			sess, err := srv.WaitSession(deadline(t, 5*time.Second), resp.Header.Get(fakeapiserver.SessionHeader))
			require.NoError(t, err)
			assert.NotContains(t, strings.Join(sess.Offered, ","), execproto.BearerProtocolPrefix, "the session's offer is without the token")
		})
	}
}

func TestPlainRequests(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: srv.ClientTLSConfig()}}
	get := func(path string, token string) (*http.Response, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL().String()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]any
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &body)
		return resp, body
	}
	resp, body := get("/api/v1/namespaces/default/pods/p/exec?command=sh&stdin=true", srv.Token())
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "Upgrade request required", body["message"])
	assert.Equal(t, "Status", body["kind"])
	resp, _ = get("/api/v1/namespaces/default/pods/p/exec", "")
	assert.Equal(t, 401, resp.StatusCode)
	resp, body = get("/api/v1/nodes", srv.Token())
	assert.Equal(t, 404, resp.StatusCode)
	assert.Equal(t, "NotFound", body["reason"])
}

func TestPlainHTTPOption(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{Insecure: true})
	assert.Equal(t, "http", srv.URL().Scheme)
	assert.Empty(t, srv.CAFile())
	c := dial(t, srv, execproto.ProtocolV5, true, "sh", "-i")
	require.NoError(t, c.Type("echo $((6*7))\r"))
	require.NoError(t, c.Expect(deadline(t, 5*time.Second), "42"))
}

func TestSessionPerProtocol(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	for _, p := range execproto.AllProtocols {
		for _, tty := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/tty=%v", p, tty), func(t *testing.T) {
				t.Parallel()
				c := dial(t, srv, p, tty, "sh", "-i")
				sess := session(t, srv, c)
				require.NoError(t, c.Type("echo $((6*7))"+enter(tty)))
				require.NoError(t, c.Expect(deadline(t, 5*time.Second), "42"))
				assert.True(t, c.Opened(), "the empty message on the lowest writable channel")
				require.NoError(t, c.Type("exit 3"+enter(tty)))
				st, ok, err := c.Status(deadline(t, 5*time.Second))
				require.NoError(t, err)
				require.True(t, ok, "a status on the error channel")
				if p.StatusJSON() {
					code, known := st.ExitCode()
					assert.True(t, known)
					assert.Equal(t, 3, code)
				} else {
					assert.Contains(t, st.Message, "exit code 3")
				}
				select {
				case <-c.Done():
				case <-deadline(t, 5*time.Second).Done():
					t.Fatal("the server did not close the connection after the process exited")
				}
				end := c.End()
				assert.Equal(t, 1000, end.ServerCloseCode)
				assert.True(t, end.ServerClosedFirst)
				_, live, err := sess.WaitGone(deadline(t, 5*time.Second))
				require.NoError(t, err, "live: %v", live)
				<-sess.Done()
				cr := sess.Recorder().Close()
				assert.Equal(t, "server", cr.FirstBy)
				assert.Equal(t, 1000, cr.ServerCode)
			})
		}
	}
}

func TestResizeReachesThePty(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	for _, p := range []execproto.Protocol{execproto.ProtocolBase64, execproto.ProtocolV5} {
		t.Run(p.String(), func(t *testing.T) {
			c := dial(t, srv, p, true, "sh", "-i")
			require.NoError(t, c.Resize(123, 45))
			require.NoError(t, c.Type("stty size\r"))
			require.NoError(t, c.Expect(deadline(t, 5*time.Second), "45 123"))
		})
	}
}

func TestSuccessStatus(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	c := dial(t, srv, execproto.ProtocolV4, false, "sh", "-c", "echo hi")
	require.NoError(t, c.Expect(deadline(t, 5*time.Second), "hi"))
	st, ok, err := c.Status(deadline(t, 5*time.Second))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, execproto.StatusSuccess, st.Status)
}

func TestV5CloseSignalEndsStdin(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	c := dial(t, srv, execproto.ProtocolV5, false, "cat")
	require.NoError(t, c.Type("hello\n"))
	require.NoError(t, c.Expect(deadline(t, 5*time.Second), "hello"))
	require.NoError(t, c.CloseStdin())
	st, ok, err := c.Status(deadline(t, 5*time.Second))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, execproto.StatusSuccess, st.Status, "cat ends on EOF")
	info, err := session(t, srv, c).Info(deadline(t, 5*time.Second))
	require.NoError(t, err)
	assert.True(t, info.StdinClosed)
}

func TestStartFailureOnErrorChannel(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{Allow: func([]string) error { return nil }})
	c := dial(t, srv, execproto.ProtocolV4, false, "/nonexistent/sh")
	st, ok, err := c.Status(deadline(t, 5*time.Second))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, execproto.StatusFailure, st.Status)
	assert.Contains(t, st.Message, "/nonexistent/sh")
}

func TestControlAPI(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	c := dial(t, srv, execproto.ProtocolV5, true, "sh", "-i")
	require.NoError(t, c.Type("echo $((6*7))\r"))
	require.NoError(t, c.Expect(deadline(t, 5*time.Second), "42"))
	sess := session(t, srv, c)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: srv.ClientTLSConfig()}}

	req, _ := http.NewRequest(http.MethodGet, srv.URL().String()+"/execconform/v1/sessions", nil)
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 401, resp.StatusCode, "the control API needs the token")

	req.Header = auth(srv)
	resp, err = client.Do(req)
	require.NoError(t, err)
	var list []fakeapiserver.SessionInfo
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	resp.Body.Close()
	require.Len(t, list, 1)
	got := list[0]
	assert.Equal(t, sess.ID, got.ID)
	assert.Equal(t, "v5.channel.k8s.io", got.Protocol)
	assert.Equal(t, []string{"sh", "-i"}, got.Command)
	assert.Equal(t, sess.PID(), got.PID)
	require.NotEmpty(t, got.Live, "the shell is alive in the process table")
	assert.Equal(t, sess.PID(), got.Live[0].PID)
	assert.NotEmpty(t, got.Record.Frames)

	req, _ = http.NewRequest(http.MethodGet, srv.URL().String()+"/execconform/v1/sessions/"+sess.ID, nil)
	req.Header = auth(srv)
	resp, err = client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

func TestMalformedInput(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{MaxMessageSize: 4096})
	t.Run("bad base64 is recorded and skipped", func(t *testing.T) {
		c := dial(t, srv, execproto.ProtocolBase64, true, "sh", "-i")
		sess := session(t, srv, c)
		require.NoError(t, c.SendRaw(websocket.TextMessage, []byte("0!!!not base64")))
		require.NoError(t, c.Type("echo $((6*7))\r"))
		require.NoError(t, c.Expect(deadline(t, 5*time.Second), "42"))
		assert.Contains(t, strings.Join(sess.Recorder().Snapshot().ProtocolErrors, "\n"), "bad base64")
	})
	t.Run("base64 framing on a binary protocol never reaches the shell", func(t *testing.T) {
		c := dial(t, srv, execproto.ProtocolV4, true, "sh", "-i")
		sess := session(t, srv, c)
		_, b64 := execproto.Encode(execproto.ProtocolBase64, 0, []byte("echo $((6*7))\r"))
		require.NoError(t, c.SendRaw(websocket.TextMessage, b64))
		require.NoError(t, c.Type("echo $((7*7))\r"))
		require.NoError(t, c.Expect(deadline(t, 5*time.Second), "49"))
		assert.NotContains(t, c.Output(), "42")
		assert.Contains(t, strings.Join(sess.Recorder().Snapshot().ProtocolErrors, "\n"), "unknown channel")
	})
	t.Run("a malformed v5 CLOSE ends the connection", func(t *testing.T) {
		c := dial(t, srv, execproto.ProtocolV5, false, "cat")
		require.NoError(t, c.SendRaw(websocket.BinaryMessage, []byte{255, 0, 0}))
		select {
		case <-c.Done():
		case <-deadline(t, 5*time.Second).Done():
			t.Fatal("the connection stayed open")
		}
	})
	t.Run("an oversized message is closed with 1009", func(t *testing.T) {
		c := dial(t, srv, execproto.ProtocolV5, false, "cat")
		require.NoError(t, c.Send(0, make([]byte, 8192)))
		select {
		case <-c.Done():
		case <-deadline(t, 5*time.Second).Done():
			t.Fatal("the connection stayed open")
		}
		assert.Equal(t, websocket.CloseMessageTooBig, c.End().ServerCloseCode)
	})
	t.Run("data on a server-only channel is recorded and ignored", func(t *testing.T) {
		c := dial(t, srv, execproto.ProtocolV4, true, "sh", "-i")
		sess := session(t, srv, c)
		require.NoError(t, c.Send(execproto.StreamStdout, []byte("echo $((6*7))\r")))
		require.NoError(t, c.Type("echo $((7*7))\r"))
		require.NoError(t, c.Expect(deadline(t, 5*time.Second), "49"))
		assert.Contains(t, strings.Join(sess.Recorder().Snapshot().ProtocolErrors, "\n"), "only the server writes")
	})
}
