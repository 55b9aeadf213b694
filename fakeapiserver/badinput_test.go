package fakeapiserver_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
)

// logBuffer collects a server's log lines (text) and lets a test wait for one.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced at every write
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.changed)
	l.changed = make(chan struct{})
	return l.buf.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// logger logs at level and above into l.
func (l *logBuffer) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: level}))
}

// wait waits until a line holding every one of substrs was logged, and returns it.
func (l *logBuffer) wait(ctx context.Context, t *testing.T, substrs ...string) string {
	t.Helper()
	for {
		l.mu.Lock()
		for _, line := range strings.Split(l.buf.String(), "\n") {
			found := true
			for _, s := range substrs {
				found = found && strings.Contains(line, s)
			}
			if found {
				l.mu.Unlock()
				return line
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("no log line with %q; the log:\n%s", substrs, l.String())
			return ""
		}
	}
}

// TestBadInputIsCountedLoggedAndIgnored: each kind of bad message is
// ignored, as the real API server ignores it (the session goes on, the
// data after it arrives), counted in the session's BadInput (and in its
// control API view) and logged at debug level.
func TestBadInputIsCountedLoggedAndIgnored(t *testing.T) {
	logs := newLogBuffer()
	srv := startServer(t, fakeapiserver.Config{Insecure: true, Logger: logs.logger(slog.LevelDebug)})
	cases := []struct {
		name  string
		proto execproto.Protocol
		typ   int
		raw   []byte
		want  fakeapiserver.BadInput
		json  string
		log   string
	}{
		{name: "malformed base64", proto: execproto.ProtocolBase64, typ: websocket.TextMessage, raw: []byte("0!!!not base64"),
			want: fakeapiserver.BadInput{Base64: 1}, json: `{"base64":1}`, log: "bad base64"},
		{name: "an unknown channel", proto: execproto.ProtocolV4, typ: websocket.BinaryMessage, raw: []byte{9, 'x'},
			want: fakeapiserver.BadInput{UnknownChannel: 1}, json: `{"unknown_channel":1}`, log: "unknown channel"},
		{name: "the CLOSE signal's 255 off v5 is an unknown channel", proto: execproto.ProtocolV4, typ: websocket.BinaryMessage, raw: []byte{255, 0},
			want: fakeapiserver.BadInput{UnknownChannel: 1}, json: `{"unknown_channel":1}`, log: "unknown channel"},
		{name: "an unknown channel on base64", proto: execproto.ProtocolBase64, typ: websocket.TextMessage, raw: []byte("9eA=="),
			want: fakeapiserver.BadInput{UnknownChannel: 1}, json: `{"unknown_channel":1}`, log: "unknown channel"},
		{name: "invalid UTF-8 in a text frame reaches stdin all the same", proto: execproto.ProtocolV4, typ: websocket.TextMessage, raw: []byte("\x00bad\xff\xfeutf8\n"),
			want: fakeapiserver.BadInput{InvalidUTF8: 1}, json: `{"invalid_utf8":1}`, log: "not valid UTF-8"},
		{name: "invalid UTF-8 on base64 is bad base64 too", proto: execproto.ProtocolBase64, typ: websocket.TextMessage, raw: []byte("0\xff\xfe"),
			want: fakeapiserver.BadInput{InvalidUTF8: 1, Base64: 1}, json: `{"invalid_utf8":1,"base64":1}`, log: "not valid UTF-8"},
		{name: "data on a channel only the server writes", proto: execproto.ProtocolV4, typ: websocket.BinaryMessage, raw: []byte("\x01echo 1"),
			want: fakeapiserver.BadInput{ServerChannel: 1}, json: `{"server_channel":1}`, log: "only the server writes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, srv, tc.proto, false, "cat")
			sess := session(t, srv, c)
			require.NoError(t, c.SendRaw(tc.typ, tc.raw))
			require.NoError(t, c.Type("still here\n"))
			// cat echoes in order: once this is back, the bad message was read.
			require.NoError(t, c.Expect(deadline(t, 5*time.Second), "still here"))
			if tc.want.InvalidUTF8 > 0 && tc.want.Base64 == 0 {
				assert.Contains(t, c.Output(), "bad\xff\xfeutf8", "the data went to stdin, as the real server passes it")
			}
			select {
			case <-sess.Done():
				t.Fatal("the bad message closed the session")
			default:
			}
			assert.Equal(t, tc.want, sess.BadInput())
			info, err := sess.Info(deadline(t, 5*time.Second))
			require.NoError(t, err)
			b, err := json.Marshal(info)
			require.NoError(t, err)
			var view struct {
				BadInput json.RawMessage `json:"bad_input"`
			}
			require.NoError(t, json.Unmarshal(b, &view))
			assert.JSONEq(t, tc.json, string(view.BadInput))
			line := logs.wait(deadline(t, 5*time.Second), t, "bad input ignored", "session="+sess.ID, tc.log)
			assert.Contains(t, line, "level=DEBUG")
		})
	}
	t.Run("a clean session has no bad_input", func(t *testing.T) {
		c := dial(t, srv, execproto.ProtocolV4, false, "cat")
		sess := session(t, srv, c)
		require.NoError(t, c.Type("fine\n"))
		require.NoError(t, c.Expect(deadline(t, 5*time.Second), "fine"))
		info, err := sess.Info(deadline(t, 5*time.Second))
		require.NoError(t, err)
		b, err := json.Marshal(info)
		require.NoError(t, err)
		assert.NotContains(t, string(b), "bad_input")
	})
}

// TestRejectedRequestsAreLogged: every refused request gets an info line
// saying why; none shows the server's token, nor the wrong one a client
// sent.
func TestRejectedRequestsAreLogged(t *testing.T) {
	const token, wrong, wrongProto = "server-token-4d9c1e", "wrong-guess-8b2f7a", "wrong-proto-3e6d0c"
	logs := newLogBuffer()
	srv := startServer(t, fakeapiserver.Config{Insecure: true, Token: token, Logger: logs.logger(slog.LevelInfo)})
	get := func(header http.Header) int {
		req, err := http.NewRequest(http.MethodGet, srv.URL().String()+"/execconform/v1/sessions", nil)
		require.NoError(t, err)
		req.Header = header
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	ws := func(offer []string, header http.Header, command ...string) int {
		u := strings.Replace(execURL(srv, false, command...), "http://", "ws://", 1)
		d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: offer}
		conn, resp, err := d.Dial(u, header)
		if err == nil {
			conn.Close()
			return http.StatusSwitchingProtocols
		}
		require.ErrorIs(t, err, websocket.ErrBadHandshake)
		return resp.StatusCode
	}
	ctx := deadline(t, 5*time.Second)
	assert.Equal(t, 401, get(http.Header{}))
	logs.wait(ctx, t, "request rejected", "status=401", "path=/execconform/v1/sessions", `why="no token`)
	assert.Equal(t, 401, get(http.Header{"Authorization": {"Bearer " + wrong}}))
	logs.wait(ctx, t, "request rejected", "status=401", `why="wrong bearer token in the Authorization header"`)
	assert.Equal(t, 401, get(http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+wrong))}}))
	logs.wait(ctx, t, "request rejected", "status=401", `why="the Authorization header is not a bearer token"`)
	assert.Equal(t, 401, ws([]string{execproto.BearerProtocol(wrongProto), "v5.channel.k8s.io"}, nil, "cat"))
	logs.wait(ctx, t, "request rejected", "status=401", "path=/api/v1/namespaces/default/pods/fakepod/exec", `why="wrong token in the bearer-token subprotocol"`)
	good := http.Header{"Authorization": {"Bearer " + token}}
	assert.Equal(t, 403, ws([]string{"v5.channel.k8s.io"}, good, "rm", "-rf", "/"))
	logs.wait(ctx, t, "request rejected", "status=403", "allowlist")
	assert.Equal(t, 403, ws([]string{"chat"}, good, "cat"))
	logs.wait(ctx, t, "request rejected", "status=403", "negotiate")
	assert.Equal(t, 101, ws([]string{"v5.channel.k8s.io"}, good, "cat"), "the good request passes")

	all := logs.String()
	assert.Equal(t, 6, strings.Count(all, "request rejected"), all)
	for _, secret := range []string{token, wrong, wrongProto, base64.RawURLEncoding.EncodeToString([]byte(wrongProto)), base64.StdEncoding.EncodeToString([]byte("u:" + wrong))} {
		assert.NotContains(t, all, secret)
	}
}

// TestSlowHeadersAreCutAndLogged: a client that sends its headers too
// slowly (a slowloris), or nothing at all, is cut by ReadHeaderTimeout,
// which net/http does without a word: the server logs it, without the
// token the partial request carried.
func TestSlowHeadersAreCutAndLogged(t *testing.T) {
	logs := newLogBuffer()
	srv := startServer(t, fakeapiserver.Config{Insecure: true, ReadHeaderTimeout: 200 * time.Millisecond, Logger: logs.logger(slog.LevelInfo)})
	for _, tc := range []struct {
		name, sent, sentSome string
	}{
		{"partial headers", "GET /execconform/v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + srv.Token() + "\r\n", "sent_some=true"},
		{"nothing", "", "sent_some=false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", srv.URL().Host)
			require.NoError(t, err)
			defer c.Close()
			if tc.sent != "" {
				_, err = io.WriteString(c, tc.sent)
				require.NoError(t, err)
			}
			require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
			_, err = io.Copy(io.Discard, c)
			require.NoError(t, err, "the server closes the connection (EOF), before our 5s")
			line := logs.wait(deadline(t, 5*time.Second), t, "connection cut", "ReadHeaderTimeout", "remote="+c.LocalAddr().String())
			assert.Contains(t, line, tc.sentSome)
			assert.Contains(t, line, "level=INFO")
		})
	}
	assert.NotContains(t, logs.String(), srv.Token())
}
