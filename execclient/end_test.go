package execclient

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
)

// TestClose: the server replies 1000 and closes TCP.
func TestClose(t *testing.T) {
	transports(t, func(t *testing.T, tlsOn bool) {
		ctx := testCtx(t)
		srv := newServer(t, serverOpts{tls: tlsOn})
		c := srv.dial(t, ctx, Options{Protocols: []execproto.Protocol{execproto.ProtocolV5}})
		sc := srv.accept(t, ctx)

		res, err := c.Close(ctx, websocket.CloseNormalClosure, "bye")
		require.NoError(t, err)
		assert.True(t, res.Replied)
		assert.Equal(t, 1000, res.ReplyCode)
		assert.True(t, res.TCPClosedByPeer)
		assert.False(t, res.PeerReset)
		assert.Equal(t, closeMsg{1000, "bye"}, recv(t, ctx, sc.closes))

		waitDone(t, ctx, c)
		end := c.End()
		assert.Equal(t, 1000, end.ServerCloseCode)
		assert.False(t, end.ServerClosedFirst)
		assert.NoError(t, end.Err)
		assert.ErrorIs(t, c.Type("x"), ErrEnded)
		_, err = c.Close(ctx, 1000, "")
		assert.ErrorIs(t, err, ErrEnded)
		assert.ErrorIs(t, c.Reset(), ErrEnded)
	})
}

// TestCloseNoReply: the server never replies; Close gives up at ctx's deadline.
func TestCloseNoReply(t *testing.T) {
	ctx := testCtx(t)
	var srv *testServer
	srv = newServer(t, serverOpts{noCloseReply: true, handle: func(sc *srvConn) {
		sc.read(nil)
		<-srv.hold
	}})
	c := srv.dial(t, ctx, Options{})
	sc := srv.accept(t, ctx)

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	res, err := c.Close(short, 4000, "")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotNil(t, res)
	assert.False(t, res.Replied)
	assert.Equal(t, -1, res.ReplyCode)
	assert.False(t, res.TCPClosedByPeer)
	assert.Positive(t, res.Elapsed)
	assert.Equal(t, closeMsg{4000, ""}, recv(t, ctx, sc.closes))

	waitDone(t, ctx, c)
	end := c.End()
	assert.Equal(t, -1, end.ServerCloseCode)
	assert.ErrorIs(t, end.Err, context.DeadlineExceeded)
}

// TestCloseReplyKeepsTCP: the server replies but never closes TCP; Close
// reports the reply and gives up on the TCP close at ctx's deadline.
func TestCloseReplyKeepsTCP(t *testing.T) {
	ctx := testCtx(t)
	var srv *testServer
	srv = newServer(t, serverOpts{handle: func(sc *srvConn) {
		sc.read(nil)
		<-srv.hold
	}})
	c := srv.dial(t, ctx, Options{})
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	res, err := c.Close(short, 1000, "")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.True(t, res.Replied)
	assert.Equal(t, 1000, res.ReplyCode)
	assert.False(t, res.TCPClosedByPeer)
	waitDone(t, ctx, c)
	assert.NoError(t, c.End().Err, "the close handshake itself was clean")
	assert.Equal(t, 1000, c.End().ServerCloseCode)
}

// TestServerCloseKeepsTCP: after the server's close frame the client waits
// CloseWait for the TCP close, then closes itself.
func TestServerCloseKeepsTCP(t *testing.T) {
	ctx := testCtx(t)
	var srv *testServer
	srv = newServer(t, serverOpts{handle: func(sc *srvConn) {
		sc.control(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""))
		sc.read(nil)
		<-srv.hold
	}})
	c := srv.dial(t, ctx, Options{CloseWait: 50 * time.Millisecond})
	waitDone(t, ctx, c)
	end := c.End()
	assert.Equal(t, websocket.CloseGoingAway, end.ServerCloseCode)
	assert.True(t, end.ServerClosedFirst)
}

// TestServerClosesFirst: the client replies with the same code and records
// who closed first.
func TestServerClosesFirst(t *testing.T) {
	transports(t, func(t *testing.T, tlsOn bool) {
		ctx := testCtx(t)
		srv := newServer(t, serverOpts{tls: tlsOn})
		c := srv.dial(t, ctx, Options{Protocols: []execproto.Protocol{execproto.ProtocolV4Base64}})
		sc := srv.accept(t, ctx)

		require.NoError(t, c.Type("bye\r"))
		waitDone(t, ctx, c)
		end := c.End()
		assert.Equal(t, 4001, end.ServerCloseCode)
		assert.Equal(t, "done", end.ServerCloseReason)
		assert.True(t, end.ServerClosedFirst)
		assert.NoError(t, end.Err)
		assert.Positive(t, end.At)
		assert.Equal(t, closeMsg{4001, ""}, recv(t, ctx, sc.closes), "the reply echoes the code")
		assert.ErrorIs(t, c.Type("x"), ErrEnded)
	})
}

// TestAbortTCP: the server reads EOF, without any close frame.
func TestAbortTCP(t *testing.T) {
	transports(t, func(t *testing.T, tlsOn bool) {
		ctx := testCtx(t)
		srv := newServer(t, serverOpts{tls: tlsOn})
		c := srv.dial(t, ctx, Options{})
		sc := srv.accept(t, ctx)
		require.NoError(t, c.Type("x"))
		require.NoError(t, c.Expect(ctx, "x"))

		require.NoError(t, c.AbortTCP())
		err := recv(t, ctx, sc.readErr)
		assert.True(t, IsEOF(err), "server read error %v", err)
		assert.Empty(t, sc.closes, "no close frame")
		waitDone(t, ctx, c)
		assert.ErrorIs(t, c.End().Err, ErrAborted)
		assert.Equal(t, -1, c.End().ServerCloseCode)
		assert.ErrorIs(t, c.AbortTCP(), ErrEnded)
	})
}

// TestStatusAfterAbort: once the client has given up its connection nothing
// more is recorded, so Status answers at once (no status) instead of waiting
// for a server that keeps the connection open (or a backlog behind a
// throttled link).
func TestStatusAfterAbort(t *testing.T) {
	for name, end := range map[string]func(*Conn) error{"abort": (*Conn).AbortTCP, "reset": (*Conn).Reset} {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			var srv *testServer
			srv = newServer(t, serverOpts{noCloseReply: true, handle: func(sc *srvConn) {
				sc.read(nil)
				<-srv.hold
			}})
			c := srv.dial(t, ctx, Options{CloseWait: time.Minute})
			srv.accept(t, ctx)
			require.NoError(t, end(c))

			short, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, ok, err := c.Status(short)
			require.NoError(t, err, "Status waited for a connection the client gave up")
			assert.False(t, ok)
		})
	}
}

// TestReset: the server reads ECONNRESET, without any close frame.
func TestReset(t *testing.T) {
	transports(t, func(t *testing.T, tlsOn bool) {
		ctx := testCtx(t)
		srv := newServer(t, serverOpts{tls: tlsOn})
		c := srv.dial(t, ctx, Options{})
		sc := srv.accept(t, ctx)
		require.NoError(t, c.Type("x"))
		require.NoError(t, c.Expect(ctx, "x"))

		require.NoError(t, c.Reset())
		err := recv(t, ctx, sc.readErr)
		assert.ErrorIs(t, err, syscall.ECONNRESET)
		assert.Empty(t, sc.closes)
		waitDone(t, ctx, c)
		assert.ErrorIs(t, c.End().Err, ErrReset)
	})
}

// TestFreeze: a frozen client answers no ping and records nothing; AbortTCP
// and Reset still end it.
func TestFreeze(t *testing.T) {
	transports(t, func(t *testing.T, tlsOn bool) {
		for _, how := range []string{"abort", "reset"} {
			t.Run(how, func(t *testing.T) {
				ctx := testCtx(t)
				srv := newServer(t, serverOpts{tls: tlsOn})
				c := srv.dial(t, ctx, Options{})
				sc := srv.accept(t, ctx)

				require.NoError(t, c.Type("a"))
				require.NoError(t, c.Expect(ctx, "a"))
				require.NoError(t, sc.control(websocket.PingMessage, []byte("p1")))
				assert.Equal(t, "p1", recv(t, ctx, sc.pongs), "pings are answered")

				c.Freeze()
				require.NoError(t, sc.control(websocket.PingMessage, []byte("p2")))
				require.NoError(t, sc.send(execproto.StreamStdout, []byte("unseen")))
				assert.ErrorIs(t, c.Type("x"), ErrFrozen)
				_, err := c.Close(ctx, 1000, "")
				assert.ErrorIs(t, err, ErrFrozen)

				if how == "abort" {
					require.NoError(t, c.AbortTCP())
					assert.True(t, IsEOF(recv(t, ctx, sc.readErr)))
				} else {
					require.NoError(t, c.Reset())
					assert.ErrorIs(t, recv(t, ctx, sc.readErr), syscall.ECONNRESET)
				}
				waitDone(t, ctx, c)
				assert.Empty(t, sc.pongs, "no pong while frozen")
				assert.Empty(t, sc.closes)
				assert.Equal(t, "a", c.Output())
				assert.Len(t, c.Frames(), 2, "the open message and the echo")
			})
		}
	})
}

// TestSendRaw: raw messages reach the server unframed; a raw ping is answered.
func TestSendRaw(t *testing.T) {
	ctx := testCtx(t)
	srv := newServer(t, serverOpts{})
	c := srv.dial(t, ctx, Options{Protocols: []execproto.Protocol{execproto.ProtocolV4}})
	sc := srv.accept(t, ctx)
	require.NoError(t, c.SendRaw(websocket.TextMessage, []byte("0bHMN")))
	assert.Equal(t, rawMsg{websocket.TextMessage, []byte("0bHMN")}, recv(t, ctx, sc.msgs))
	require.NoError(t, c.SendRaw(websocket.CloseMessage, websocket.FormatCloseMessage(1001, "away")))
	assert.Equal(t, closeMsg{1001, "away"}, recv(t, ctx, sc.closes))
	waitDone(t, ctx, c)
	assert.Equal(t, 1001, c.End().ServerCloseCode)
	assert.False(t, c.End().ServerClosedFirst)
}

// TestNoGoroutineLeak: after Done, every way of ending leaves no goroutine.
func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		ctx := testCtx(t)
		for _, tlsOn := range []bool{false, true} {
			var srv *testServer
			srv = newServer(t, serverOpts{tls: tlsOn})
			ends := map[string]func(*Conn){
				"close":  func(c *Conn) { c.Close(ctx, 1000, "") },
				"abort":  func(c *Conn) { c.AbortTCP() },
				"reset":  func(c *Conn) { c.Reset() },
				"server": func(c *Conn) { c.Type("bye\r") },
				"frozen": func(c *Conn) {
					c.Freeze()
					c.Reset()
				},
			}
			for name, end := range ends {
				c, err := Dial(ctx, srv.url, Options{TLSConfig: srv.tlsConfig})
				require.NoError(t, err, name)
				require.NoError(t, c.Expect(ctx, ""), name)
				end(c)
				waitDone(t, ctx, c)
			}
			srv.ts.Close()
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		<-tick.C
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines, baseline %d:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}
