package proxyundertest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/execconform/execconform/execproto"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/execconform/execconform/internal/wsframe"
)

// frame is one WebSocket message or control frame to write.
type frame struct {
	typ  int // websocket.TextMessage, BinaryMessage, CloseMessage, ...
	data []byte
}

// request is a unit of work for an endpoint's writer: its frames are written
// in order, with nothing from any other request in between.
type request struct {
	frames   []frame
	fwd      bool          // forwarded from the other endpoint: dropped once dropFwd is closed
	deadline time.Time     // zero: the endpoint's default for each frame
	done     chan struct{} // closed once written or failed; may be nil
}

// endpoint is one WebSocket connection of a session (the frontend or the
// backend) with its two goroutines:
//
//	          ┌──────────── endpoint ────────────┐
//	peer ───▶ │ readLoop ──forward──▶ other.out  │
//	peer ◀─── │ writeLoop ◀── out (data, exit, close), ctrl (pongs), pings
//	          └──────────────────────────────────┘
//
// writeLoop is the only goroutine that writes to conn (data, pings, pongs,
// the exit and close frames): gorilla/websocket allows one writer at a time.
// readLoop is the only one that reads; it also owns the read deadline.
type endpoint struct {
	name string
	conn *websocket.Conn

	maxSize      int64         // read limit per message
	readTimeout  time.Duration // each frame read extends the read deadline by this; 0: none
	writeTimeout time.Duration // deadline of a data write; 0: none
	ctrlTimeout  time.Duration // deadline of a pong write
	pingEvery    time.Duration // 0: no pings
	pingTimeout  time.Duration // deadline of a ping write
	drainToEOF   bool          // after a close frame, read the raw connection until EOF
	recoverPanic bool          // recover a panic of a write into an error (ExitConcurrentWrite)
	fragments    bool          // write large messages in continuation frames (FragmentedInput)
	client       bool          // our side is the WebSocket client (the backend connection): frames are masked
	// holdStdinClose: the v5 CLOSE signal of stdin is not forwarded (a
	// tty session's: the shell would outlive it, and the exit could not
	// follow it); holdLog notes each one held back.
	holdStdinClose bool
	holdLog        func()

	out  chan request
	ctrl chan []byte // pong payloads, best effort

	// Written by readLoop before ended is closed.
	ended     chan struct{}
	readErr   error
	gotClose  bool // the peer sent a close frame
	closeCode int
	closeText string
	// Closed by readLoop when a message exceeds maxSize; it then discards.
	oversized chan struct{}
	// Written by readLoop before readerDone is closed.
	readerDone chan struct{}
	drainErr   error // what ended the raw drain (io.EOF when clean)

	// Written by writeLoop before writeFailed is closed.
	writeFailed chan struct{}
	writeErr    error
	panicked    bool // the failed write panicked

	stopForward chan struct{} // closed: readLoop drops messages instead of forwarding them
	// stopReading: once forwarding stops, stop reading too (unread is then
	// set, and the read deadline left in the past).
	stopReading bool
	unread      atomic.Bool
	dropFwd     chan struct{} // closed: writeLoop drops the forwarded requests still queued
	dropOnce    sync.Once
	quit        chan struct{} // closed: writeLoop returns
	stopOnce    sync.Once
	quitOnce    sync.Once
	closeOnce   sync.Once
}

func newEndpoint(name string, conn *websocket.Conn) *endpoint {
	return &endpoint{
		name:        name,
		conn:        conn,
		out:         make(chan request, 16),
		ctrl:        make(chan []byte, 4),
		ended:       make(chan struct{}),
		oversized:   make(chan struct{}),
		readerDone:  make(chan struct{}),
		writeFailed: make(chan struct{}),
		stopForward: make(chan struct{}),
		dropFwd:     make(chan struct{}),
		quit:        make(chan struct{}),
	}
}

// start runs readLoop (forwarding to fwd, which may be nil) and writeLoop,
// counted in wg.
func (e *endpoint) start(wg *sync.WaitGroup, fwd *endpoint) {
	wg.Add(2)
	go func() { defer wg.Done(); e.readLoop(fwd) }()
	go func() { defer wg.Done(); e.writeLoop() }()
}

// extendReadDeadline is called by readLoop (and the handlers it runs) on
// every frame read.
func (e *endpoint) extendReadDeadline() {
	if e.unread.Load() {
		return // stopped reading (ExitCloseNoDrain): the deadline stays past
	}
	if e.readTimeout > 0 {
		_ = e.conn.SetReadDeadline(time.Now().Add(e.readTimeout))
	}
}

// deadlineReader extends the read deadline on every read of a message's
// payload, so a long message that keeps arriving is not a dead peer.
type deadlineReader struct {
	r io.Reader
	e *endpoint
}

func (d deadlineReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if n > 0 {
		d.e.extendReadDeadline()
	}
	return n, err
}

func (e *endpoint) readLoop(fwd *endpoint) {
	defer close(e.readerDone)
	// The handlers run inside NextReader, on this goroutine. None of them
	// writes: gorilla's defaults would answer pings and close frames with
	// WriteControl from here, a second writer.
	e.conn.SetCloseHandler(func(code int, text string) error {
		e.gotClose, e.closeCode, e.closeText = true, code, text
		return nil
	})
	e.conn.SetPingHandler(func(data string) error {
		e.extendReadDeadline()
		select {
		case e.ctrl <- []byte(data):
		default: // the writer is behind; a later ping gets its pong
		}
		return nil
	})
	e.conn.SetPongHandler(func(string) error {
		e.extendReadDeadline()
		return nil
	})

	discard := false
	for {
		e.extendReadDeadline()
		typ, r, err := e.conn.NextReader()
		if err != nil {
			e.readErr = err
			break
		}
		// The limit is enforced here rather than with SetReadLimit, because
		// gorilla answers an oversized message by writing a close frame from
		// the reading goroutine. Reading maxSize+1 bytes at most also leaves
		// the connection usable, so the rest can be drained afterwards.
		data, err := io.ReadAll(io.LimitReader(deadlineReader{r, e}, e.maxSize+1))
		if err != nil {
			e.readErr = err
			break
		}
		if int64(len(data)) > e.maxSize {
			if !discard {
				discard = true
				close(e.oversized)
			}
			continue
		}
		if discard || fwd == nil {
			continue
		}
		if e.holdStdinClose && typ == websocket.BinaryMessage && len(data) == 2 && data[0] == execproto.StreamClose && data[1] == execproto.StreamStdin {
			if e.holdLog != nil {
				e.holdLog()
			}
			continue
		}
		select {
		case <-e.stopForward:
			continue
		default:
		}
		select {
		case fwd.out <- request{frames: []frame{{typ: typ, data: data}}, fwd: true}:
		case <-e.stopForward:
		}
	}
	close(e.ended)

	if e.drainToEOF && e.gotClose {
		// We are the client: after the close handshake the server closes
		// TCP first (RFC 6455 section 7.1.1). Wait for that FIN, reading
		// whatever still arrives, so that our close never finds unread data
		// in the receive buffer (which would turn it into an RST). The
		// session bounds this by closing the connection.
		nc := e.conn.NetConn()
		buf := make([]byte, 4096)
		for {
			if _, err := nc.Read(buf); err != nil {
				e.drainErr = err
				break
			}
		}
	}
}

func (e *endpoint) writeLoop() {
	var tick <-chan time.Time
	if e.pingEvery > 0 {
		t := time.NewTicker(e.pingEvery)
		defer t.Stop()
		tick = t.C
	}
	closeSent, failed := false, false
	fail := func(err error) {
		if failed || closeSent {
			return // after our close frame, refused writes are expected
		}
		failed = true
		e.writeErr = err
		close(e.writeFailed)
	}
	for {
		select {
		case <-e.quit:
			return
		case req := <-e.out:
			if req.fwd && isClosed(e.dropFwd) {
				continue // queued before the end; nobody is there to want it
			}
			if err := e.write(req, &closeSent); err != nil {
				fail(err)
			}
			if req.done != nil {
				close(req.done)
			}
		case payload := <-e.ctrl:
			if closeSent || failed {
				continue
			}
			if err := e.conn.WriteControl(websocket.PongMessage, payload, time.Now().Add(e.ctrlTimeout)); err != nil {
				fail(err)
			}
		case <-tick:
			if closeSent || failed {
				continue
			}
			if err := e.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(e.pingTimeout)); err != nil {
				fail(err)
			}
		}
	}
}

func (e *endpoint) write(req request, closeSent *bool) (err error) {
	if e.recoverPanic {
		// The ExitConcurrentWrite variant: its second writer can make
		// gorilla panic here too. A real proxy would crash; this one
		// fails the write, and the session drops both connections.
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
				e.panicked = true
			}
		}()
	}
	for _, f := range req.frames {
		deadline := req.deadline
		switch f.typ {
		case websocket.CloseMessage, websocket.PingMessage, websocket.PongMessage:
			if deadline.IsZero() {
				deadline = time.Now().Add(e.ctrlTimeout)
			}
			if err := e.conn.WriteControl(f.typ, f.data, deadline); err != nil {
				return err
			}
			if f.typ == websocket.CloseMessage {
				*closeSent = true
			}
		default:
			if deadline.IsZero() && e.writeTimeout > 0 {
				deadline = time.Now().Add(e.writeTimeout)
			}
			_ = e.conn.SetWriteDeadline(deadline)
			if err := e.writeData(f, deadline); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeData writes a data message in one frame: the API server (wsstream,
// on golang.org/x/net/websocket) reads every frame as a message of its
// own, so the continuation frames of a fragmented stdin message would be
// read as messages whose first byte is a channel. gorilla fragments at its
// write buffer's size (4 KiB), so larger messages are framed by wsframe,
// from this goroutine, the connection's only writer. The FragmentedInput
// variant leaves them to gorilla; so does ExitConcurrentWrite (with a
// write buffer as large as a message), whose second writer is gorilla's.
func (e *endpoint) writeData(f frame, deadline time.Time) error {
	if e.fragments || e.recoverPanic || len(f.data) <= smallMessage || !e.client {
		return e.conn.WriteMessage(f.typ, f.data)
	}
	nc := e.conn.NetConn()
	if err := nc.SetWriteDeadline(deadline); err != nil {
		return err
	}
	return wsframe.WriteClientFrame(nc, f.typ, f.data)
}

// smallMessage fits gorilla's default write buffer with a frame header
// (RFC 6455 section 5.2: at most 14 bytes).
const smallMessage = 4096 - 14

// send queues frames for the writer, waiting at most until deadline (or
// until abort is closed) for room in the queue. The returned channel is
// closed once the frames are written or have failed; it is closed at once if
// they could not be queued.
func (e *endpoint) send(frames []frame, deadline time.Time, abort <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case e.out <- request{frames: frames, deadline: deadline, done: done}:
		return done
	case <-t.C:
	case <-abort:
	case <-e.quit:
	}
	close(done)
	return done
}

// stopForwarding makes readLoop drop what it reads from now on.
func (e *endpoint) stopForwarding() {
	e.stopOnce.Do(func() {
		close(e.stopForward)
		if e.stopReading {
			// The ExitCloseNoDrain bug: the loop that read the backend is
			// the one that now says farewell, so nothing reads it any
			// more, and what it sends stays in the receive buffer until
			// the close, which that makes a RST.
			e.unread.Store(true)
			_ = e.conn.SetReadDeadline(time.Now())
		}
	})
}

// dropForwarded makes writeLoop drop the forwarded messages still queued:
// once the frontend is gone, its unsent input must not hold back the exit
// (a large paste to a shell that is not reading would, past the close bound).
func (e *endpoint) dropForwarded() { e.dropOnce.Do(func() { close(e.dropFwd) }) }

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// closeConn closes the TCP connection, unblocking readLoop and writeLoop.
// For TLS it closes the TCP connection under it: tls.Conn.Close would write
// a close_notify alert from this goroutine and could block on a peer that
// does not read.
func (e *endpoint) closeConn() {
	e.closeOnce.Do(func() {
		nc := e.conn.NetConn()
		if tc, ok := nc.(*tls.Conn); ok {
			nc = tc.NetConn()
		}
		_ = nc.Close()
	})
}

// shut ends both goroutines: stop forwarding, close the connection, stop
// the writer.
func (e *endpoint) shut() {
	e.stopForwarding()
	e.closeConn()
	e.quitOnce.Do(func() { close(e.quit) })
}

// isTimeout reports whether err is a read deadline expiry.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
