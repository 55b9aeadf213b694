package execclient

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	spdyframe "github.com/moby/spdystream/spdy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
)

// TestSPDYNegotiation: the offer, the answer and the refusals, as the
// kubelet's httpstream.Handshake makes them.
func TestSPDYNegotiation(t *testing.T) {
	cases := []struct {
		name     string
		opts     Options
		versions []execproto.Protocol
		want     execproto.Protocol
		refused  int
	}{
		{name: "client-go's offer gets v4 from the kubelet's list", want: execproto.SPDYProtocolV4},
		{name: "an explicit offer is taken in the client's order", opts: Options{Protocols: []execproto.Protocol{execproto.SPDYProtocolV3, execproto.SPDYProtocolV4}}, want: execproto.SPDYProtocolV3},
		{name: "a server that only knows v2 gets v2", versions: []execproto.Protocol{execproto.SPDYProtocolV2}, want: execproto.SPDYProtocolV2},
		{name: "an offer the server does not accept is refused with 403", opts: Options{Protocols: []execproto.Protocol{execproto.SPDYProtocolV5}}, refused: http.StatusForbidden},
		{name: "an empty raw offer is refused with 400", opts: Options{RawProtocols: []string{}}, refused: http.StatusBadRequest},
		{name: "no offer at all is refused with 400", opts: Options{Protocols: []execproto.Protocol{execproto.ProtocolNone}}, refused: http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newSPDYServer(t, spdySrvOpts{versions: tc.versions})
			o := tc.opts
			o.Header = http.Header{"Authorization": {"Bearer t0ken"}}
			c, err := DialSPDY(testCtx(t), srv.url, o)
			if tc.refused != 0 {
				var he *HandshakeError
				require.ErrorAs(t, err, &he)
				assert.Equal(t, tc.refused, he.StatusCode)
				assert.Contains(t, he.Body, "unable to upgrade")
				if tc.refused == http.StatusForbidden {
					assert.Equal(t, []string{"v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"},
						he.Header.Values(execproto.HeaderAcceptedProtocolVersions))
				}
				return
			}
			require.NoError(t, err)
			t.Cleanup(func() { c.Reset() })
			assert.Equal(t, tc.want, c.Protocol())
			assert.Equal(t, execproto.TransportSPDY, c.Transport())
			assert.Equal(t, http.StatusSwitchingProtocols, c.Response().StatusCode)

			sc := recv(t, testCtx(t), srv.conns)
			assert.Equal(t, http.MethodPost, sc.req.Method)
			assert.Equal(t, "Bearer t0ken", sc.req.Header.Get("Authorization"))
			assert.Equal(t, "Upgrade", sc.req.Header.Get("Connection"))
			assert.Equal(t, "SPDY/3.1", sc.req.Header.Get("Upgrade"))
			if tc.opts.Protocols == nil {
				assert.Equal(t, execproto.ClientGoSPDYOffer, sc.req.Header.Values(execproto.HeaderProtocolVersion), "one header line per version")
			}
		})
	}
}

// TestSPDYStreamOrder: the streams come in client-go's order, each for
// what the URL asks and the version has.
func TestSPDYStreamOrder(t *testing.T) {
	cases := []struct {
		name     string
		query    string
		versions []execproto.Protocol
		want     []string
	}{
		{"a tty gets resize and no stderr", "stdin=true&stdout=true&stderr=true&tty=true", nil,
			[]string{"error", "stdin", "stdout", "resize"}},
		{"no tty gets stderr and no resize", "stdin=true&stdout=true&stderr=true&tty=false", nil,
			[]string{"error", "stdin", "stdout", "stderr"}},
		{"v2 has no resize stream", "stdin=true&stdout=true&stderr=true&tty=true", []execproto.Protocol{execproto.SPDYProtocolV2},
			[]string{"error", "stdin", "stdout"}},
		{"only what the URL asks for", "stdout=true", nil,
			[]string{"error", "stdout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newSPDYServer(t, spdySrvOpts{versions: tc.versions, handle: func(*spdySrvConn) {}})
			url := strings.Split(srv.url, "?")[0] + "?command=sh&" + tc.query
			c, err := DialSPDY(testCtx(t), url, Options{})
			require.NoError(t, err)
			t.Cleanup(func() { c.Reset() })
			sc := recv(t, testCtx(t), srv.conns)
			var got []string
			for range tc.want {
				got = append(got, strings.TrimPrefix(recv(t, testCtx(t), sc.frames), "SYN_STREAM "))
			}
			assert.Equal(t, tc.want, got)
			if !strings.Contains(tc.query, "stderr=true&tty=false") {
				assert.ErrorIs(t, c.Send(execproto.StreamStderr, []byte("x")), ErrNoStream)
			}
		})
	}
}

// TestSPDYWSScheme: a ws:// URL, as the harness builds them, is dialled as
// http://.
func TestSPDYWSScheme(t *testing.T) {
	srv := newSPDYServer(t, spdySrvOpts{})
	c, err := DialSPDY(testCtx(t), "ws"+strings.TrimPrefix(srv.url, "http"), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { c.Reset() })
	assert.Equal(t, execproto.SPDYProtocolV4, c.Protocol())
}

// TestSPDYHandshakeCancel: a server that never answers the upgrade; ctx
// ends the dial.
func TestSPDYHandshakeCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		if nc, err := ln.Accept(); err == nil {
			accepted <- nc
		}
	}()
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	_, err = DialSPDY(ctx, "http://"+ln.Addr().String()+execPath, Options{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	nc := recv(t, testCtx(t), accepted)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.Copy(io.Discard, nc)
	assert.NoError(t, err, "the client closed the connection (EOF)")
	nc.Close()
}

// TestSPDYEcho: stdin to stdout through the server, Expect, and Resize.
func TestSPDYEcho(t *testing.T) {
	srv := newSPDYServer(t, spdySrvOpts{})
	c := srv.dial(t, Options{})
	sc := recv(t, testCtx(t), srv.conns)
	ctx := testCtx(t)

	require.NoError(t, c.Type("hello\r"))
	require.NoError(t, c.Expect(ctx, "hello"))
	require.NoError(t, c.Send(execproto.StreamStdin, []byte("world")))
	require.NoError(t, c.Expect(ctx, "world"))
	assert.Equal(t, "hello\rworld", c.Output())
	assert.EqualValues(t, 11, c.OutputTotal())

	require.NoError(t, c.Resize(80, 24))
	assert.Equal(t, `{"Width":80,"Height":24}`, recv(t, ctx, sc.resizes))
	assert.ErrorIs(t, c.Send(7, nil), ErrNoStream)
}

// TestSPDYStatus: the status on the error stream, and the server's end
// (GOAWAY, then TCP).
func TestSPDYStatus(t *testing.T) {
	cases := []struct {
		name     string
		versions []execproto.Protocol
		exit     int
		ok       bool
	}{
		{"v4 success", nil, 0, true},
		{"v4 exit code", nil, 3, true},
		{"v2 success is no status", []execproto.Protocol{execproto.SPDYProtocolV2}, 0, false},
		{"v2 exit code in the text", []execproto.Protocol{execproto.SPDYProtocolV2}, 3, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newSPDYServer(t, spdySrvOpts{versions: tc.versions})
			c := srv.dial(t, Options{})
			sc := recv(t, testCtx(t), srv.conns)
			ctx := testCtx(t)
			require.NoError(t, c.Type("exit "+string(rune('0'+tc.exit))))
			s, ok, err := c.Status(ctx)
			require.NoError(t, err)
			require.Equal(t, tc.ok, ok)
			if ok {
				code, known := s.ExitCode()
				assert.True(t, known)
				assert.Equal(t, tc.exit, code)
			}
			waitSPDYDone(t, c)
			end := c.End()
			assert.True(t, end.GoAway, "%s", end)
			assert.NoError(t, end.Err)
			assert.Equal(t, -1, end.ServerCloseCode)
			assert.ErrorIs(t, recv(t, ctx, sc.readEnd), io.EOF, "the client closed TCP after the server")
			assert.NotContains(t, sc.drainFrames(), "GOAWAY", "the client does not answer a GOAWAY")
			assert.ErrorIs(t, c.Type("x"), ErrEnded)
			_, err = c.Close(ctx, 1000, "")
			assert.ErrorIs(t, err, ErrEnded)
		})
	}
}

// TestSPDYCloseStdin: a FIN on stdin; the session stays open.
func TestSPDYCloseStdin(t *testing.T) {
	srv := newSPDYServer(t, spdySrvOpts{})
	c := srv.dial(t, Options{})
	sc := recv(t, testCtx(t), srv.conns)
	ctx := testCtx(t)
	require.NoError(t, c.CloseStdin())
	sc.waitFrame(t, "FIN stdin")
	recv(t, ctx, sc.stdinEO)
	require.NoError(t, c.Expect(ctx, "stdin closed"))
	select {
	case <-c.Done():
		t.Fatal("the session ended with stdin")
	default:
	}
	require.NoError(t, c.Resize(100, 30))
	assert.Equal(t, `{"Width":100,"Height":30}`, recv(t, ctx, sc.resizes), "the session outlives stdin")
}

// TestSPDYClose: FIN on stdin and resize, RST_STREAM on every stream,
// GOAWAY, then the server closes TCP and the client closes its side.
func TestSPDYClose(t *testing.T) {
	transportsSPDY(t, func(t *testing.T, tlsOn bool) {
		srv := newSPDYServer(t, spdySrvOpts{tls: tlsOn})
		c := srv.dial(t, Options{})
		sc := recv(t, testCtx(t), srv.conns)
		ctx := testCtx(t)
		require.NoError(t, c.Type("hi"))
		require.NoError(t, c.Expect(ctx, "hi"))

		res, err := c.Close(ctx, 1000, "bye")
		require.NoError(t, err)
		assert.True(t, res.Replied)
		assert.True(t, res.TCPClosedByPeer)
		assert.False(t, res.PeerReset)
		assert.Equal(t, -1, res.ReplyCode)

		before := sc.waitFrame(t, "GOAWAY")
		assert.Contains(t, before, "FIN stdin")
		assert.Contains(t, before, "FIN resize")
		assert.Contains(t, before, "RST_STREAM error")
		assert.Less(t, indexOf(before, "FIN stdin"), indexOf(before, "RST_STREAM error"), "%q", before)
		assert.ErrorIs(t, recv(t, ctx, sc.readEnd), io.EOF, "FIN after GOAWAY")

		waitSPDYDone(t, c)
		end := c.End()
		assert.NoError(t, end.Err, "%s", end) // GoAway may be set: the server library answers one when its handler returns first
		assert.ErrorIs(t, c.Type("x"), ErrEnded)
		assert.ErrorIs(t, c.Reset(), ErrEnded)
	})
}

// TestSPDYAbortTCP: a FIN without GOAWAY, then the client drains.
func TestSPDYAbortTCP(t *testing.T) {
	transportsSPDY(t, func(t *testing.T, tlsOn bool) {
		srv := newSPDYServer(t, spdySrvOpts{tls: tlsOn})
		c := srv.dial(t, Options{})
		sc := recv(t, testCtx(t), srv.conns)
		ctx := testCtx(t)
		require.NoError(t, c.Type("hi"))
		require.NoError(t, c.Expect(ctx, "hi"))

		require.NoError(t, c.AbortTCP())
		assert.ErrorIs(t, recv(t, ctx, sc.readEnd), io.EOF)
		assert.NotContains(t, sc.drainFrames(), "GOAWAY")
		waitSPDYDone(t, c)
		end := c.End()
		assert.ErrorIs(t, end.Err, ErrAborted)
		assert.False(t, end.GoAway)
		assert.ErrorIs(t, c.AbortTCP(), ErrEnded)
	})
}

// TestSPDYReset: a RST; the server's read fails with ECONNRESET.
func TestSPDYReset(t *testing.T) {
	transportsSPDY(t, func(t *testing.T, tlsOn bool) {
		srv := newSPDYServer(t, spdySrvOpts{tls: tlsOn})
		c := srv.dial(t, Options{})
		sc := recv(t, testCtx(t), srv.conns)
		ctx := testCtx(t)
		require.NoError(t, c.Type("hi"))
		require.NoError(t, c.Expect(ctx, "hi"))

		require.NoError(t, c.Reset())
		assert.ErrorIs(t, recv(t, ctx, sc.readEnd), syscall.ECONNRESET)
		assert.NotContains(t, sc.drainFrames(), "GOAWAY")
		waitSPDYDone(t, c)
		assert.ErrorIs(t, c.End().Err, ErrReset)
	})
}

// TestSPDYFreeze: the client stops reading; the server's writes back up
// and nothing more is recorded; AbortTCP ends it.
func TestSPDYFreeze(t *testing.T) {
	srv := newSPDYServer(t, spdySrvOpts{handle: func(*spdySrvConn) {}})
	c := srv.dial(t, Options{})
	sc := recv(t, testCtx(t), srv.conns)
	ctx := testCtx(t)
	out := sc.streams[execproto.StreamTypeStdout]
	_, err := out.Write([]byte("before"))
	require.NoError(t, err)
	require.NoError(t, c.Expect(ctx, "before"))

	c.Freeze()
	total := c.OutputTotal()
	assert.ErrorIs(t, c.Type("x"), ErrFrozen)
	_, err = c.Close(ctx, 0, "")
	assert.ErrorIs(t, err, ErrFrozen)

	// Write until one write cannot finish: the client does not read.
	chunk := bytes.Repeat([]byte("f"), 64<<10)
	var written int
	for {
		require.NoError(t, ctx.Err(), "the server's writes never backed up (%d bytes)", written)
		tc := sc.streams[execproto.StreamTypeStdout].(interface{ SetWriteDeadline(time.Time) error })
		tc.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := out.Write(chunk); err != nil {
			break
		}
		written += len(chunk)
	}
	assert.Equal(t, total, c.OutputTotal(), "nothing recorded after Freeze")

	require.NoError(t, c.AbortTCP())
	waitSPDYDone(t, c)
	assert.ErrorIs(t, c.End().Err, ErrAborted)
}

// testTrace is a TransportTrace that keeps everything.
type testTrace struct {
	mu        sync.Mutex
	starts    []string
	sent, rcv bytes.Buffer
}

func (tt *testTrace) Start(p execproto.Protocol) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.starts = append(tt.starts, "websocket "+string(p))
}

func (tt *testTrace) StartTransport(tr execproto.Transport, p execproto.Protocol) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.starts = append(tt.starts, string(tr)+" "+string(p))
}

func (tt *testTrace) Sent(b []byte) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.sent.Write(b)
}

func (tt *testTrace) Received(b []byte) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.rcv.Write(b)
}

// TestSPDYTrace: a TransportTrace gets StartTransport(spdy, v4) and every
// byte above TLS, which parse as SPDY frames; a plain Trace gets nothing.
func TestSPDYTrace(t *testing.T) {
	transportsSPDY(t, func(t *testing.T, tlsOn bool) {
		srv := newSPDYServer(t, spdySrvOpts{tls: tlsOn})
		tr := &testTrace{}
		c := srv.dial(t, Options{Trace: tr})
		recv(t, testCtx(t), srv.conns)
		require.NoError(t, c.Type("exit 0"))
		waitSPDYDone(t, c)

		tr.mu.Lock()
		defer tr.mu.Unlock()
		assert.Equal(t, []string{"spdy v4.channel.k8s.io"}, tr.starts)
		sent := spdyFrameNames(t, tr.sent.Bytes())
		assert.Equal(t, []string{"SYN_STREAM error", "SYN_STREAM stdin", "SYN_STREAM stdout", "SYN_STREAM resize", "DATA"}, sent)
		rcv := spdyFrameNames(t, tr.rcv.Bytes())
		assert.Contains(t, rcv, "GOAWAY")
		assert.Equal(t, "SYN_REPLY", rcv[0])
	})
	t.Run("plain", func(t *testing.T) {
		srv := newSPDYServer(t, spdySrvOpts{})
		tr := &testTrace{}
		c := srv.dial(t, Options{Trace: onlyTrace{tr}})
		require.NoError(t, c.Type("exit 0"))
		waitSPDYDone(t, c)
		tr.mu.Lock()
		defer tr.mu.Unlock()
		assert.Empty(t, tr.starts)
		assert.Zero(t, tr.sent.Len()+tr.rcv.Len())
	})
}

// onlyTrace hides every method but Trace's.
type onlyTrace struct{ Trace }

// spdyFrameNames parses b as SPDY frames and names them.
func spdyFrameNames(t *testing.T, b []byte) []string {
	t.Helper()
	f, err := spdyframe.NewFramer(io.Discard, bytes.NewReader(b))
	require.NoError(t, err)
	var names []string
	for {
		fr, err := f.ReadFrame()
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
			return names
		}
		switch fr := fr.(type) {
		case *spdyframe.SynStreamFrame:
			names = append(names, "SYN_STREAM "+fr.Headers.Get(execproto.HeaderStreamType))
		case *spdyframe.SynReplyFrame:
			names = append(names, "SYN_REPLY")
		case *spdyframe.DataFrame:
			names = append(names, "DATA")
		case *spdyframe.GoAwayFrame:
			names = append(names, "GOAWAY")
		case *spdyframe.RstStreamFrame:
			names = append(names, "RST_STREAM")
		}
	}
}

// TestSPDYNoGoroutineLeak: after Done, every way of ending leaves no
// goroutine.
func TestSPDYNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		for _, tlsOn := range []bool{false, true} {
			srv := newSPDYServer(t, spdySrvOpts{tls: tlsOn})
			ctx := testCtx(t)
			ends := map[string]func(*SPDYConn){
				"close":  func(c *SPDYConn) { c.Close(ctx, 0, "") },
				"abort":  func(c *SPDYConn) { c.AbortTCP() },
				"reset":  func(c *SPDYConn) { c.Reset() },
				"server": func(c *SPDYConn) { c.Type("exit 0") },
				"frozen": func(c *SPDYConn) {
					c.Freeze()
					c.Reset()
				},
			}
			for name, end := range ends {
				c, err := DialSPDY(ctx, srv.url, Options{TLSConfig: srv.tlsConfig})
				require.NoError(t, err, name)
				require.NoError(t, c.Type("ok"), name)
				require.NoError(t, c.Expect(ctx, "ok"), name)
				end(c)
				waitSPDYDone(t, c)
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

// waitSPDYDone waits for c to end or fails the test.
func waitSPDYDone(t *testing.T, c *SPDYConn) {
	t.Helper()
	select {
	case <-c.Done():
	case <-testCtx(t).Done():
		require.FailNow(t, "session did not end")
	}
}

// indexOf is the index of s in ss, -1 if absent.
func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}
