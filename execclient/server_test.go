package execclient

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
)

// execPath is the exec URL path and query the tests dial.
const execPath = "/api/v1/namespaces/ns/pods/p/exec?command=sh&stdin=true&stdout=true&stderr=true&tty=true"

// testServer is an in-test exec endpoint speaking the framing via execproto.
type testServer struct {
	ts        *httptest.Server
	url       string
	tlsConfig *tls.Config
	conns     chan *srvConn // every upgraded connection
	hold      chan struct{} // closed at cleanup: handlers that wait on it return
}

// serverOpts sets a testServer's behaviour.
type serverOpts struct {
	tls           bool
	handle        func(*srvConn) // runs after the upgrade; the connection is closed when it returns
	refuseStatus  int            // refuse every upgrade with this status and refuseBody
	refuseBody    string
	answer        *string // answer this Sec-WebSocket-Protocol instead of negotiating
	noCloseReply  bool    // record close frames but never reply
	beforeUpgrade func(*http.Request)
}

// srvConn is the server side of one connection, observable by the test.
type srvConn struct {
	ws      *websocket.Conn
	proto   execproto.Protocol
	req     *http.Request
	srv     *testServer
	wmu     sync.Mutex
	msgs    chan rawMsg   // data messages read
	pongs   chan string   // pongs read
	closes  chan closeMsg // close frames read
	readErr chan error    // the error that ended reading
}

type rawMsg struct {
	mt      int
	payload []byte
}

type closeMsg struct {
	code int
	text string
}

func newServer(t *testing.T, o serverOpts) *testServer {
	t.Helper()
	s := &testServer{conns: make(chan *srvConn, 16), hold: make(chan struct{})}
	if o.handle == nil {
		o.handle = echo
	}
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.beforeUpgrade != nil {
			o.beforeUpgrade(r)
		}
		if o.refuseStatus != 0 {
			http.Error(w, o.refuseBody, o.refuseStatus)
			return
		}
		var proto execproto.Protocol
		if o.answer != nil {
			proto = execproto.Protocol(*o.answer)
		} else {
			p, err := execproto.Negotiate(execproto.Offered(r.Header.Values("Sec-Websocket-Protocol")))
			if err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
			proto = p
		}
		h := http.Header{}
		if proto != execproto.ProtocolNone {
			h.Set("Sec-Websocket-Protocol", string(proto))
		}
		up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
		ws, err := up.Upgrade(w, r, h)
		if err != nil {
			return
		}
		defer ws.NetConn().Close()
		sc := &srvConn{
			ws: ws, proto: proto, req: r, srv: s,
			msgs:    make(chan rawMsg, 1000),
			pongs:   make(chan string, 100),
			closes:  make(chan closeMsg, 10),
			readErr: make(chan error, 1),
		}
		ws.SetPongHandler(func(d string) error { sc.pongs <- d; return nil })
		ws.SetCloseHandler(func(code int, text string) error {
			sc.closes <- closeMsg{code, text}
			if o.noCloseReply {
				return nil
			}
			sc.wmu.Lock()
			defer sc.wmu.Unlock()
			ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
			return nil
		})
		s.conns <- sc
		o.handle(sc)
	}))
	if o.tls {
		s.ts.StartTLS()
		s.tlsConfig = s.ts.Client().Transport.(*http.Transport).TLSClientConfig
		s.url = "wss://" + strings.TrimPrefix(s.ts.URL, "https://") + execPath
	} else {
		s.ts.Start()
		s.url = "ws://" + strings.TrimPrefix(s.ts.URL, "http://") + execPath
	}
	t.Cleanup(s.ts.Close)
	t.Cleanup(func() { close(s.hold) })
	return s
}

// dial connects a client to s.
func (s *testServer) dial(t *testing.T, ctx context.Context, o Options) *Conn {
	t.Helper()
	o.TLSConfig = s.tlsConfig
	c, err := Dial(ctx, s.url, o)
	require.NoError(t, err)
	t.Cleanup(func() { c.Reset() })
	return c
}

// accept returns the server side of the next connection.
func (s *testServer) accept(t *testing.T, ctx context.Context) *srvConn {
	t.Helper()
	return recv(t, ctx, s.conns)
}

// send writes data on stream, framed for the connection's protocol.
func (sc *srvConn) send(stream byte, data []byte) error {
	mt, p := execproto.Encode(sc.proto, stream, data)
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	return sc.ws.WriteMessage(mt, p)
}

// control writes a control frame.
func (sc *srvConn) control(mt int, data []byte) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	return sc.ws.WriteControl(mt, data, time.Now().Add(time.Second))
}

// read reads until an error, recording messages and calling onFrame for
// each decodable one; the error goes to readErr.
func (sc *srvConn) read(onFrame func(*execproto.Frame)) error {
	for {
		mt, p, err := sc.ws.ReadMessage()
		if err != nil {
			sc.readErr <- err
			return err
		}
		sc.msgs <- rawMsg{mt, p}
		if f, err := execproto.Decode(sc.proto, mt, p); err == nil && f != nil && onFrame != nil {
			onFrame(f)
		}
	}
}

// echo sends the open message, then echoes stdin on stdout. Typing "status
// N\r" makes it write the exit status N on the error channel and close 1000;
// "bye\r" makes it close first with 4001 "done" and wait for the reply.
func echo(sc *srvConn) {
	sc.send(execproto.StreamStdout, nil)
	sc.read(func(f *execproto.Frame) {
		if f.Stream != execproto.StreamStdin {
			return
		}
		in := string(f.Data)
		var n int
		switch {
		case in == "bye\r":
			sc.control(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "done"))
		case strings.HasPrefix(in, "status "):
			fmt.Sscanf(in, "status %d", &n)
			if b := execproto.EncodeStatus(sc.proto, execproto.ExitStatus([]string{"sh"}, n)); b != nil {
				sc.send(execproto.StreamError, b)
			}
			sc.control(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		default:
			sc.send(execproto.StreamStdout, f.Data)
		}
	})
}

// recv receives from ch or fails the test when ctx ends.
func recv[T any](t *testing.T, ctx context.Context, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		require.FailNow(t, "timed out waiting on a channel", "%v", ctx.Err())
		panic("unreachable")
	}
}

// waitDone waits for c to end or fails the test.
func waitDone(t *testing.T, ctx context.Context, c *Conn) {
	t.Helper()
	select {
	case <-c.Done():
	case <-ctx.Done():
		require.FailNow(t, "connection did not end", "%v", ctx.Err())
	}
}

// testCtx is the bound of one test.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// transports runs f over plain ws:// and over wss://.
func transports(t *testing.T, f func(t *testing.T, tlsOn bool)) {
	for _, tlsOn := range []bool{false, true} {
		name := "ws"
		if tlsOn {
			name = "wss"
		}
		t.Run(name, func(t *testing.T) { f(t, tlsOn) })
	}
}
