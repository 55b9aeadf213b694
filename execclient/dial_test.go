package execclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
)

// TestTypeEncoding checks, for every protocol, the offer header, the
// negotiated protocol, and the exact bytes the server receives.
func TestTypeEncoding(t *testing.T) {
	transports(t, func(t *testing.T, tlsOn bool) {
		for _, p := range execproto.AllProtocols {
			t.Run(p.String(), func(t *testing.T) {
				ctx := testCtx(t)
				srv := newServer(t, serverOpts{tls: tlsOn})
				o := Options{Header: http.Header{"Authorization": {"Bearer tok"}, "Origin": {"https://console"}}}
				if p != execproto.ProtocolNone {
					o.Protocols = []execproto.Protocol{p}
				}
				c := srv.dial(t, ctx, o)
				sc := srv.accept(t, ctx)

				offered, present := sc.req.Header["Sec-Websocket-Protocol"]
				if p == execproto.ProtocolNone {
					assert.False(t, present, "no offer means no header, got %q", offered)
				} else {
					assert.Equal(t, []string{string(p)}, offered)
				}
				assert.Equal(t, "Bearer tok", sc.req.Header.Get("Authorization"))
				assert.Equal(t, "https://console", sc.req.Header.Get("Origin"))
				assert.Equal(t, p, c.Protocol())
				assert.Equal(t, 101, c.Response().StatusCode)

				require.NoError(t, c.Type("ls\r"))
				m := recv(t, ctx, sc.msgs)
				if p.Base64() {
					assert.Equal(t, websocket.TextMessage, m.mt)
					assert.Equal(t, "0bHMN", string(m.payload)) // '0', base64("ls\r")
				} else {
					assert.Equal(t, websocket.BinaryMessage, m.mt)
					assert.Equal(t, []byte{0, 'l', 's', '\r'}, m.payload)
				}
				require.NoError(t, c.Expect(ctx, "ls\r"))
				assert.True(t, c.Opened())

				require.NoError(t, c.Resize(80, 24))
				m = recv(t, ctx, sc.msgs)
				f, err := execproto.Decode(sc.proto, m.mt, m.payload)
				require.NoError(t, err)
				assert.Equal(t, execproto.StreamResize, f.Stream)
				var size map[string]int
				require.NoError(t, json.Unmarshal(f.Data, &size))
				assert.Equal(t, map[string]int{"Width": 80, "Height": 24}, size)

				err = c.CloseStdin()
				if p == execproto.ProtocolV5 {
					require.NoError(t, err)
					m = recv(t, ctx, sc.msgs)
					assert.Equal(t, []byte{255, 0}, m.payload)
					assert.Equal(t, websocket.BinaryMessage, m.mt)
				} else {
					assert.ErrorIs(t, err, ErrNotV5)
				}

				fr := c.Frames()
				require.NotEmpty(t, fr)
				assert.Equal(t, execproto.StreamStdout, fr[0].Stream)
				assert.Empty(t, fr[0].Data)
				assert.Equal(t, "ls\r", c.Output())
			})
		}
	})
}

// TestOffer covers the order of the offer, ProtocolNone inside a list and
// verbatim raw offers.
func TestOffer(t *testing.T) {
	ctx := testCtx(t)
	srv := newServer(t, serverOpts{})

	c := srv.dial(t, ctx, Options{Protocols: []execproto.Protocol{execproto.ProtocolNone, execproto.ProtocolV5, execproto.ProtocolV4}})
	sc := srv.accept(t, ctx)
	assert.Equal(t, []string{"v5.channel.k8s.io, v4.channel.k8s.io"}, sc.req.Header["Sec-Websocket-Protocol"])
	assert.Equal(t, execproto.ProtocolV5, c.Protocol())

	c = srv.dial(t, ctx, Options{Protocols: []execproto.Protocol{execproto.ProtocolNone}})
	sc = srv.accept(t, ctx)
	assert.NotContains(t, sc.req.Header, "Sec-Websocket-Protocol")
	assert.Equal(t, execproto.ProtocolNone, c.Protocol())

	c = srv.dial(t, ctx, Options{RawProtocols: []string{"bogus.k8s.io", "v4.base64.channel.k8s.io"}, Protocols: []execproto.Protocol{execproto.ProtocolV5}})
	sc = srv.accept(t, ctx)
	assert.Equal(t, []string{"bogus.k8s.io, v4.base64.channel.k8s.io"}, sc.req.Header["Sec-Websocket-Protocol"])
	assert.Equal(t, execproto.ProtocolV4Base64, c.Protocol())

	_, err := Dial(ctx, srv.url, Options{RawProtocols: []string{"bogus.k8s.io"}})
	var he *HandshakeError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, http.StatusForbidden, he.StatusCode)
	assert.Contains(t, he.Body, "requested protocol(s) are not supported")

	_, err = Dial(ctx, srv.url, Options{Header: http.Header{"sec-websocket-protocol": {"x"}}})
	assert.Error(t, err)
}

// TestHandshakeError checks the status and the body, bounded to 4 KiB
// (beyond gorilla's 1 KiB), for a Content-Length and a chunked body.
func TestHandshakeError(t *testing.T) {
	transports(t, func(t *testing.T, tlsOn bool) {
		ctx := testCtx(t)
		srv := newServer(t, serverOpts{tls: tlsOn, refuseStatus: http.StatusForbidden, refuseBody: "pods \"p\" is forbidden"})
		_, err := Dial(ctx, srv.url, Options{TLSConfig: srv.tlsConfig})
		var he *HandshakeError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, http.StatusForbidden, he.StatusCode)
		assert.Equal(t, "pods \"p\" is forbidden\n", he.Body)
		assert.Equal(t, "nosniff", he.Header.Get("X-Content-Type-Options"))
		assert.Contains(t, err.Error(), "403")

		long := strings.Repeat("0123456789", 1000)
		srv = newServer(t, serverOpts{tls: tlsOn, refuseStatus: http.StatusUnauthorized, refuseBody: long})
		_, err = Dial(ctx, srv.url, Options{TLSConfig: srv.tlsConfig})
		require.ErrorAs(t, err, &he)
		assert.Equal(t, http.StatusUnauthorized, he.StatusCode)
		assert.Equal(t, long[:MaxHandshakeBody], he.Body)
	})
}

// TestStrictProtocol checks the browser rule on the subprotocol answer.
func TestStrictProtocol(t *testing.T) {
	ctx := testCtx(t)
	v4 := string(execproto.ProtocolV4)
	srv := newServer(t, serverOpts{answer: &v4})
	o := Options{Protocols: []execproto.Protocol{execproto.ProtocolV5}}

	c := srv.dial(t, ctx, o)
	assert.Equal(t, execproto.ProtocolV4, c.Protocol(), "lenient: reported verbatim")

	o.StrictProtocol = true
	_, err := Dial(ctx, srv.url, o)
	assert.ErrorIs(t, err, ErrProtocolMismatch)

	none := ""
	srv = newServer(t, serverOpts{answer: &none})
	_, err = Dial(ctx, srv.url, o)
	assert.ErrorIs(t, err, ErrProtocolMismatch)
	o.Protocols = nil
	c = srv.dial(t, ctx, o)
	assert.Equal(t, execproto.ProtocolNone, c.Protocol())
}

// TestDialCancel checks that cancelling ctx interrupts a stalled upgrade
// (gorilla alone would wait for the handshake deadline, here beyond the
// test's own).
func TestDialCancel(t *testing.T) {
	ctx := testCtx(t)
	arrived := make(chan struct{}, 1)
	var srv *testServer
	srv = newServer(t, serverOpts{beforeUpgrade: func(*http.Request) {
		arrived <- struct{}{}
		<-srv.hold
	}})
	dctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := Dial(dctx, srv.url, Options{HandshakeTimeout: time.Minute})
		errc <- err
	}()
	recv(t, ctx, arrived)
	cancel()
	err := recv(t, ctx, errc)
	assert.ErrorIs(t, err, context.Canceled)
	var he *HandshakeError
	assert.False(t, errors.As(err, &he))
}
