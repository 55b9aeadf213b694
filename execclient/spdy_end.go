package execclient

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/execconform/execconform/execproto"
)

// Close ends the session the way client-go does when its context ends or
// the user quits: it half-closes stdin and resize (FIN on each), then closes
// the SPDY connection as httpstream does (RST_STREAM on every stream, then
// GOAWAY), then reads until the server closes TCP, and closes the socket.
// code and reason are unused (SPDY has no close codes). ctx bounds the
// wait; give it a deadline. If ctx ends first, the socket is closed (FIN,
// or RST if data was unread), and the result so far comes with an error
// wrapping ctx.Err(), which End.Err records unless the server had sent
// GOAWAY.
//
// The result: Replied is true if the server ended its side (its own GOAWAY,
// or closing TCP after ours); TCPClosedByPeer and PeerReset tell how TCP
// ended; ReplyCode is -1. Close fails without waiting if Close already ran,
// or the session has ended or is frozen.
func (c *SPDYConn) Close(ctx context.Context, code int, reason string) (*CloseResult, error) {
	start := time.Now()
	if err := c.writable(); err != nil {
		return nil, err
	}
	if !c.closeByClose.CompareAndSwap(false, true) {
		return nil, ErrEnded
	}
	var errs []error
	if c.streams[execproto.StreamStdin] != nil {
		if err := c.closeStdin(); err != nil && !isWriteClosed(err) {
			errs = append(errs, err)
		}
	}
	if st := c.streams[execproto.StreamResize]; st != nil {
		if err := st.Close(); err != nil && !isWriteClosed(err) {
			errs = append(errs, fmt.Errorf("execclient: close resize: %w", err))
		}
	}
	if err := c.conn.Close(); err != nil {
		errs = append(errs, fmt.Errorf("execclient: GOAWAY: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		c.log.Debug("execclient: SPDY Close could not write everything", "err", err)
	}

	err := c.wait(ctx, func() bool { return c.finished })
	if err != nil {
		err = fmt.Errorf("execclient: Close: %w", err)
		c.cut(killForce, err)
		<-c.done
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	res := &CloseResult{
		ReplyCode:       -1,
		Replied:         c.goAway || c.peerFIN,
		TCPClosedByPeer: c.peerFIN,
		PeerReset:       c.peerRST,
		Elapsed:         time.Since(start),
	}
	return res, err
}

// finish runs in its own goroutine from the end of DialSPDY: once the
// library's reader has stopped it fixes End, waits (bounded) for the server
// to close TCP, closes the socket and closes done.
func (c *SPDYConn) finish() {
	<-c.conn.CloseChan() // the library's reader has returned
	if c.frozen.Load() && !c.isKilled() {
		c.park() // it stopped on its own (GOAWAY) just as Freeze came
	}
	c.readers.Wait() // the library ends every stream once its reader stops
	c.wire.stopWatch()

	c.mu.Lock()
	kill, wireErr := c.kill, c.wireErr
	end := End{ServerCloseCode: -1, At: c.since()}
	switch {
	case c.goAway:
		end.GoAway, end.At = true, c.goAwayAt
	case kill != killNone:
		end.Err = c.killErr
	case c.closeByClose.Load() && IsEOF(wireErr):
		end.At = c.wireErrAt // the server closed TCP after our GOAWAY
	case wireErr != nil:
		end.Err, end.At = wireErr, c.wireErrAt
	case c.frameErr != nil:
		end.Err = c.frameErr
	default:
		end.Err = errors.New("execclient: the SPDY library stopped reading for no known reason")
	}
	c.end, c.ended = end, true
	c.notify()
	closeByClose := c.closeByClose.Load()
	c.mu.Unlock()
	c.log.Debug("execclient: SPDY ended", "end", end.String())

	var tcpErr error
	switch {
	case errors.Is(wireErr, syscall.ECONNRESET):
		tcpErr = wireErr // a second read would say EOF
	case kill == killAbort:
		tcpErr = c.drain() // bounded by the deadline AbortTCP set
	case kill != killNone:
		// already closed
	case closeByClose:
		// Close is waiting, bounded by its ctx.
		if err := c.tcp.SetReadDeadline(time.Time{}); err == nil {
			tcpErr = c.drain()
		}
	default:
		// Like a browser, wait a while for the server to close TCP first.
		if err := c.tcp.SetReadDeadline(time.Now().Add(c.opts.CloseWait)); err == nil {
			tcpErr = c.drain()
		}
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
func (c *SPDYConn) drain() error {
	buf := make([]byte, 4096)
	for {
		if _, err := c.tcp.Read(buf); err != nil {
			return err
		}
	}
}

// AbortTCP closes TCP with a FIN and no GOAWAY (a shutdown of the sending
// side, under TLS too), then keeps reading (and discarding) until the
// server closes its side or CloseWait passes, and only then closes the
// socket, so that unread data cannot turn the FIN into a RST. Nothing
// received after AbortTCP is recorded. Done is closed when that is over;
// End.Err is ErrAborted. It works on a frozen session.
func (c *SPDYConn) AbortTCP() error { return c.abortTCP() }

// Reset closes the TCP connection with SO_LINGER 0, so the server sees a
// RST (ECONNRESET) and no GOAWAY. It works on a frozen session, after
// AbortTCP, and while waiting for the server to close TCP. End.Err is
// ErrReset unless the end was already known.
func (c *SPDYConn) Reset() error { return c.reset() }

// Freeze makes the client go silent without closing anything: the SPDY
// library's reader stops reading the socket (the server's writes pile up
// in the socket buffers, then block, and its pings go unanswered), and
// Send, Close and the other writes fail with ErrFrozen. When Freeze
// returns nothing more is recorded. A frozen session only ends with
// AbortTCP or Reset: call one of them, or its goroutines stay. Freeze on
// an ended session does nothing.
func (c *SPDYConn) Freeze() { c.freeze() }
