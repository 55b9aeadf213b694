package execclient

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/execproto"
)

// Conn is one exec WebSocket connection seen from the client. Its methods are
// safe for concurrent use. It owns one goroutine, the reader, which records
// everything the server sends until the connection ends; Done is closed when
// that goroutine has returned and the socket is closed.
type Conn struct {
	ws    *websocket.Conn
	codec *dialect.ClientCodec // a dialect connection's; nil: exec subprotocols
	resp  *http.Response
	proto execproto.Protocol
	opts  Options
	log   *slog.Logger
	start time.Time

	wmu          sync.Mutex // serialises every frame the client writes
	closeSent    bool       // guarded by wmu: a close frame was written
	closeByClose atomic.Bool

	sessionState            // mu guards it and the fields below
	frames       []Received // the first MaxFrames messages
	nframes      int        // messages received
	opened       bool
	status       []byte // the first non-empty message on StreamError
	closeFrame   *closeInfo
	dialectClose *closeInfo // a SockJS close frame
	peerFIN      bool       // the server closed TCP (we read EOF)
	peerRST      bool       // the server reset TCP
	finished     bool       // the reader is returning; done is about to close
}

// closeInfo is the server's close frame.
type closeInfo struct {
	code        int
	reason      string
	at          time.Duration
	serverFirst bool // it arrived before we sent a close frame
}

// killKind says which local action cut the TCP connection.
type killKind int

const (
	killNone  killKind = iota
	killAbort          // AbortTCP: FIN, then drain
	killReset          // Reset: RST
	killForce          // Close gave up waiting: plain close
)

func newConn(ws *websocket.Conn, resp *http.Response, tcp *net.TCPConn, opts Options, start time.Time) *Conn {
	c := &Conn{
		ws:           ws,
		resp:         resp,
		proto:        execproto.Protocol(ws.Subprotocol()),
		opts:         opts,
		log:          opts.Logger,
		start:        start,
		sessionState: newSessionState(tcp, opts.CloseWait),
	}
	if !opts.Dialect.IsKubernetes() {
		c.codec = opts.Dialect.ClientCodec(opts.DialectSession)
	}
	ws.SetReadLimit(opts.MaxMessageSize)
	ws.SetPingHandler(c.onPing)
	ws.SetCloseHandler(c.onClose)
	return c
}

// Started is when Dial was called: End().At counts from it.
func (c *Conn) Started() time.Time { return c.start }

// Protocol is the negotiated subprotocol, from the response's
// Sec-WebSocket-Protocol header; ProtocolNone when it is absent. It is
// reported verbatim, even if the server chose a name that was not offered
// (see Options.StrictProtocol).
func (c *Conn) Protocol() execproto.Protocol { return c.proto }

// Response is the server's 101 response (its body is empty).
func (c *Conn) Response() *http.Response { return c.resp }

// LocalAddr is the client's address, to match the connection in server logs.
func (c *Conn) LocalAddr() net.Addr { return c.tcp.LocalAddr() }

// Done is closed when the connection has ended (server close frame, EOF,
// error, or our own Close, AbortTCP or Reset), the reader goroutine has
// returned and the socket is closed. After a close frame or AbortTCP that
// includes waiting (bounded) for the server to close TCP.
func (c *Conn) Done() <-chan struct{} { return c.done }

// End tells how the connection ended. It is final once Done is closed;
// before the end is known it is the zero End with ServerCloseCode -1.
func (c *Conn) End() End {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.end
}

// since is the time since Dial was called.
func (c *Conn) since() time.Duration { return time.Since(c.start) }
