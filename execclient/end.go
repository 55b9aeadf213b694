package execclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// End tells how a connection ended.
type End struct {
	// ServerCloseCode is the code of the server's close frame: -1 if none
	// was received, 1005 (CloseNoStatusReceived) for a frame without code.
	ServerCloseCode int
	// ServerCloseReason is the reason text of that frame.
	ServerCloseReason string
	// ServerClosedFirst: the server's close frame came before the client
	// sent one (the client then replied, echoing the code).
	ServerClosedFirst bool
	// Err is what ended the connection when it was not a close handshake:
	// the read error (gorilla reports a TCP EOF as a *websocket.CloseError
	// with code 1006, see IsEOF), or ErrAborted, ErrReset, or the error of a
	// Close that gave up. Nil after a close frame from the server; over
	// SPDY nil after the server's GOAWAY, or after a Close whose GOAWAY the
	// server answered by closing TCP.
	Err error
	// GoAway: the server sent a SPDY GOAWAY (SPDYConn only; false over
	// WebSocket). Err is then nil, as after a close frame.
	GoAway bool
	// At is when the end happened (the close frame's arrival, or the error),
	// since Dial was called.
	At time.Duration
}

// String describes e for error messages.
func (e End) String() string {
	if e.ServerCloseCode >= 0 {
		first := "in reply"
		if e.ServerClosedFirst {
			first = "first"
		}
		return fmt.Sprintf("server close %d %q (%s) at %v", e.ServerCloseCode, e.ServerCloseReason, first, e.At)
	}
	switch {
	case e.GoAway:
		return fmt.Sprintf("server GOAWAY at %v", e.At)
	case e.Err == nil:
		return fmt.Sprintf("closed cleanly at %v", e.At)
	}
	return fmt.Sprintf("%v at %v", e.Err, e.At)
}

// CloseResult is what Close observed.
type CloseResult struct {
	ReplyCode       int           // the code of the server's close frame; -1 if none
	ReplyReason     string        // its reason
	Replied         bool          // the server answered with a close frame
	TCPClosedByPeer bool          // the server then closed TCP (FIN) before the client did
	PeerReset       bool          // the server reset TCP instead
	Elapsed         time.Duration // from the call of Close to its return
}

// Errors that end a connection from the client side.
var (
	// ErrEnded: the connection has ended; nothing more can be sent or expected.
	ErrEnded = errors.New("execclient: connection ended")
	// ErrAborted is End.Err after AbortTCP.
	ErrAborted = errors.New("execclient: TCP closed by AbortTCP")
	// ErrReset is End.Err after Reset.
	ErrReset = errors.New("execclient: TCP reset by Reset")
)

// IsEOF reports whether err is the peer closing TCP (FIN) without a close
// frame, as gorilla reports it: a *websocket.CloseError with code 1006
// (which is never sent on the wire), io.EOF or io.ErrUnexpectedEOF.
func IsEOF(err error) bool {
	var ce *websocket.CloseError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		(errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure)
}

// Close ends the connection with the close handshake: it sends a close frame
// with code and reason (code 1005 sends a frame without code), waits for the
// server's close frame, then for the server to close TCP, and closes the
// socket. ctx bounds both waits; give it a deadline. If ctx ends first, the
// TCP connection is closed (FIN, or RST if data was unread), the result so
// far is returned together with an error wrapping ctx.Err() (so Replied may
// be true while the server kept TCP open), and End.Err records it unless a
// close frame had arrived.
//
// Close fails without waiting if a close frame was already sent, or the
// connection has ended or is frozen.
func (c *Conn) Close(ctx context.Context, code int, reason string) (*CloseResult, error) {
	start := time.Now()
	if err := c.writeClose(ctx, code, reason); err != nil {
		return nil, err
	}
	err := c.wait(ctx, func() bool { return c.closeFrame != nil || c.ended })
	if err == nil {
		err = c.wait(ctx, func() bool { return c.finished })
	}
	if err != nil {
		err = fmt.Errorf("execclient: Close: %w", err)
		c.cut(killForce, err)
		<-c.done
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	res := &CloseResult{ReplyCode: -1, TCPClosedByPeer: c.peerFIN, PeerReset: c.peerRST, Elapsed: time.Since(start)}
	if cf := c.closeFrame; cf != nil {
		res.Replied, res.ReplyCode, res.ReplyReason = true, cf.code, cf.reason
	}
	return res, err
}

// writeClose sends the client's close frame.
func (c *Conn) writeClose(ctx context.Context, code int, reason string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writableLocked(); err != nil {
		return err
	}
	deadline := time.Now().Add(c.opts.WriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline); err != nil {
		return fmt.Errorf("execclient: Close: %w", err)
	}
	c.closeSent = true
	c.closeByClose.Store(true)
	return nil
}

// finish runs in the reader goroutine once reading is over: it fixes End,
// waits (bounded) for the server to close TCP where a browser would, closes
// the socket and closes done.
func (c *Conn) finish(readErr error) {
	c.mu.Lock()
	end := End{ServerCloseCode: -1, At: c.since()}
	cf, kill := c.closeFrame, c.kill
	switch {
	case cf != nil:
		end.ServerCloseCode, end.ServerCloseReason, end.ServerClosedFirst, end.At = cf.code, cf.reason, cf.serverFirst, cf.at
	case kill != killNone:
		end.Err = c.killErr
	default:
		end.Err = readErr
	}
	c.end, c.ended = end, true
	c.notify()
	c.mu.Unlock()
	c.log.Debug("execclient: ended", "end", end.String())

	var tcpErr error
	switch {
	case kill == killAbort:
		tcpErr = c.drain() // bounded by the deadline AbortTCP set
	case kill != killNone:
		// already closed
	case cf != nil && (cf.serverFirst || !c.closeByClose.Load()):
		// A browser waits for the server to close TCP first, a while.
		if err := c.tcp.SetReadDeadline(time.Now().Add(c.opts.CloseWait)); err == nil {
			tcpErr = c.drain()
		}
	case cf != nil:
		// Close is waiting, bounded by its ctx.
		if err := c.tcp.SetReadDeadline(time.Time{}); err == nil {
			tcpErr = c.drain()
		}
	default:
		tcpErr = readErr
	}

	c.mu.Lock()
	if kill == killNone || kill == killAbort {
		c.peerFIN = IsEOF(tcpErr)
		c.peerRST = errors.Is(tcpErr, syscall.ECONNRESET)
	}
	if !c.tcpClosed {
		c.tcpClosed = true
		c.tcp.Close()
	}
	c.finished = true
	c.notify()
	c.mu.Unlock()
	close(c.done)
}

// drain reads and discards the raw TCP stream until it ends (under TLS the
// records are not decrypted: only the end matters).
func (c *Conn) drain() error {
	buf := make([]byte, 4096)
	for {
		if _, err := c.tcp.Read(buf); err != nil {
			return err
		}
	}
}

// AbortTCP closes the TCP connection without any close frame, with a FIN:
// it shuts down the sending side at once, then keeps reading (and
// discarding) until the server closes its side or CloseWait passes, and only
// then closes the socket, so that unread data cannot turn the FIN into a
// RST. Messages arriving after AbortTCP are not recorded. Done is closed when
// that is over; End.Err is ErrAborted. It works on a frozen connection.
func (c *Conn) AbortTCP() error { return c.abortTCP() }

// Reset closes the TCP connection with SO_LINGER 0, so the server sees a RST
// (ECONNRESET) and no close frame. It works on a frozen connection, after
// AbortTCP, and while waiting for the server to close TCP after a close
// handshake. End.Err is ErrReset unless the end was already known.
func (c *Conn) Reset() error { return c.reset() }

// Freeze makes the client go silent without closing anything: it stops
// reading (the server's writes pile up in the socket buffers, then block)
// and writing (no pongs, no close reply; Send fails with ErrFrozen). To the
// server it is a half-open client. When Freeze returns nothing more is
// recorded. A frozen connection only ends with AbortTCP or Reset (or the
// server's RST): call one of them, or the reader goroutine stays. Freeze on
// an ended connection does nothing.
func (c *Conn) Freeze() { c.freeze() }
