package execclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/moby/spdystream"
	spdyframe "github.com/moby/spdystream/spdy"

	"github.com/execconform/execconform/execproto"
)

// spdyWire is the net.Conn the SPDY library talks through, over TLS or
// TCP. Reads come only from the library's frame reader (one goroutine);
// writes are serialised by the library's frame lock. It
//   - returns first the bytes read past the 101 with the response;
//   - traces every byte both ways (TransportTrace only);
//   - copies what it reads into a pipe that watch parses for GOAWAY;
//   - parks the reader for Freeze, and stops it once the client cut TCP;
//   - puts WriteTimeout on every write;
//   - ignores the library's Close: SPDYConn closes the socket itself.
type spdyWire struct {
	net.Conn
	c            *SPDYConn
	pending      []byte // bytes that came with the 101, read first
	trace        Trace  // a TransportTrace, or nil
	writeTimeout time.Duration

	pw        *io.PipeWriter // the watcher's copy of the server's bytes
	closePipe sync.Once
	watchDone chan struct{} // closed when watch has returned
}

// newSPDYWire wraps nc, starts the trace and the GOAWAY watcher.
func newSPDYWire(c *SPDYConn, nc net.Conn, leftover []byte, o Options) *spdyWire {
	pr, pw := io.Pipe()
	w := &spdyWire{Conn: nc, c: c, pending: leftover, writeTimeout: o.WriteTimeout, pw: pw, watchDone: make(chan struct{})}
	if tt, ok := o.Trace.(TransportTrace); ok {
		tt.StartTransport(execproto.TransportSPDY, c.proto)
		if len(leftover) > 0 {
			tt.Received(leftover)
		}
		w.trace = tt
	}
	go w.watch(pr)
	return w
}

// Read gives the library the server's bytes until the client stops it.
func (w *spdyWire) Read(p []byte) (int, error) {
	c := w.c
	if c.isKilled() {
		return 0, errKilled
	}
	if c.frozen.Load() {
		c.park()
		return 0, errKilled
	}
	if len(w.pending) > 0 {
		n := copy(p, w.pending)
		w.pending = w.pending[n:]
		w.pw.Write(p[:n]) // an error means the watcher is over: nothing to feed
		return n, nil
	}
	n, err := w.Conn.Read(p)
	if err != nil {
		c.noteWireErr(err)
	}
	if c.frozen.Load() && !c.isKilled() {
		// Freeze interrupted the read (or raced with it): drop what came.
		c.park()
	}
	if c.isKilled() {
		return 0, errKilled
	}
	if n > 0 {
		if w.trace != nil {
			w.trace.Received(p[:n])
		}
		w.pw.Write(p[:n])
	}
	return n, err
}

// Write traces and writes under WriteTimeout.
func (w *spdyWire) Write(p []byte) (int, error) {
	if w.trace != nil {
		w.trace.Sent(p)
	}
	if err := w.Conn.SetWriteDeadline(time.Now().Add(w.writeTimeout)); err != nil {
		return 0, err
	}
	return w.Conn.Write(p)
}

// Close is the library's close of the connection (after a GOAWAY either
// way, once its streams are gone): it does nothing, so that the client
// can wait for the server to close TCP first. SPDYConn closes the socket.
func (w *spdyWire) Close() error { return nil }

// watch parses the server's bytes as SPDY frames, with its own framer, to
// learn of a GOAWAY (the library acts on it but does not tell). It reads
// until stopWatch, draining after a frame it cannot parse.
func (w *spdyWire) watch(pr *io.PipeReader) {
	defer close(w.watchDone)
	defer io.Copy(io.Discard, pr)
	f, err := spdyframe.NewFramer(io.Discard, pr)
	if err != nil {
		w.c.noteFrameErr(err)
		return
	}
	for {
		fr, err := f.ReadFrame()
		if err != nil {
			var se *spdyframe.Error
			if errors.As(err, &se) {
				w.c.noteFrameErr(se)
			}
			return
		}
		if _, ok := fr.(*spdyframe.GoAwayFrame); ok {
			w.c.noteGoAway()
		}
	}
}

// stopWatch ends the watcher once the library has stopped reading, and
// waits for it: every frame the library read has then been seen.
func (w *spdyWire) stopWatch() {
	w.closePipe.Do(func() { w.pw.Close() })
	<-w.watchDone
}

// noteWireErr records the first read error under the library.
func (c *SPDYConn) noteWireErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wireErr == nil {
		c.wireErr, c.wireErrAt = err, c.since()
	}
}

// noteGoAway records the server's GOAWAY.
func (c *SPDYConn) noteGoAway() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.goAway && !c.ended {
		c.goAway, c.goAwayAt = true, c.since()
		c.notify()
	}
}

// noteFrameErr records that the server's bytes are no SPDY.
func (c *SPDYConn) noteFrameErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frameErr == nil {
		c.frameErr = fmt.Errorf("execclient: SPDY frame from the server: %w", err)
	}
}

// park stops the library's reader for Freeze until AbortTCP or Reset.
func (c *SPDYConn) park() {
	c.parkOnce.Do(func() { close(c.parked) })
	<-c.killed
}

// startReaders reads stdout and stderr into the output, the error stream
// to its end, and stdin for the server's half-close (client-go's copyStdin
// reads it only to close its own side when the server closes its side).
func (c *SPDYConn) startReaders() {
	for _, s := range []byte{execproto.StreamStdout, execproto.StreamStderr} {
		if st := c.streams[s]; st != nil {
			c.readers.Go(func() { c.readOutput(st) })
		}
	}
	c.readers.Go(c.readError)
	if st := c.streams[execproto.StreamStdin]; st != nil {
		c.readers.Go(func() {
			io.Copy(io.Discard, st)
			select {
			case <-c.conn.CloseChan(): // the session is over, not just stdin
			default:
				if c.writable() == nil {
					c.closeStdin()
				}
			}
		})
	}
}

// readOutput appends a stream to the output until it ends.
func (c *SPDYConn) readOutput(st io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := st.Read(buf)
		if n > 0 && !c.frozen.Load() && !c.isKilled() {
			c.mu.Lock()
			if !c.ended {
				c.appendOutput(buf[:n])
				c.notify()
			}
			c.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// readError reads the error stream to its end, keeping MaxMessageSize bytes.
func (c *SPDYConn) readError() {
	buf := make([]byte, 4096)
	for {
		n, err := c.streams[execproto.StreamError].Read(buf)
		c.mu.Lock()
		if n > 0 && !c.frozen.Load() && !c.isKilled() && !c.ended {
			room := max(0, int(c.opts.MaxMessageSize)-len(c.errData))
			c.errData = append(c.errData, buf[:min(n, room)]...)
			c.notify()
		}
		if err != nil {
			c.errDone = true
			c.notify()
		}
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Send writes data on the SPDY stream of exec channel stream as one data
// frame. It fails with ErrNoStream if the session has no such stream,
// ErrFrozen after Freeze, ErrEnded once the session ended or Close ran.
func (c *SPDYConn) Send(stream byte, data []byte) error {
	st, err := c.stream(stream)
	if err != nil {
		return err
	}
	if err := c.writable(); err != nil {
		return err
	}
	if _, err := st.Write(data); err != nil {
		return fmt.Errorf("execclient: write %s: %w", execproto.StreamType(stream), err)
	}
	return nil
}

// stream is the session's stream for an exec channel.
func (c *SPDYConn) stream(stream byte) (io.ReadWriteCloser, error) {
	if int(stream) >= len(c.streams) || c.streams[stream] == nil {
		return nil, fmt.Errorf("%w: channel %d (%q)", ErrNoStream, stream, execproto.StreamType(stream))
	}
	return c.streams[stream], nil
}

// writable says why nothing may be written now, if so.
func (c *SPDYConn) writable() error {
	if c.frozen.Load() {
		return ErrFrozen
	}
	if c.isKilled() {
		return ErrEnded
	}
	if c.closeByClose.Load() {
		return fmt.Errorf("%w (Close sent GOAWAY)", ErrEnded)
	}
	c.mu.Lock()
	ended := c.ended
	c.mu.Unlock()
	if ended {
		return ErrEnded
	}
	return nil
}

// Type sends s on stdin, as keystrokes typed into a terminal (Enter is "\r"
// with a tty).
func (c *SPDYConn) Type(s string) error { return c.Send(execproto.StreamStdin, []byte(s)) }

// Resize sends the terminal size as JSON execproto.TerminalSize on the
// resize stream, with the newline of client-go's json.Encoder.
func (c *SPDYConn) Resize(width, height uint16) error {
	b, err := json.Marshal(execproto.TerminalSize{Width: width, Height: height})
	if err != nil {
		return err
	}
	return c.Send(execproto.StreamResize, append(b, '\n'))
}

// CloseStdin half-closes the stdin stream (an empty data frame with FIN),
// as client-go does when its stdin reaches EOF: the server's stdin sees EOF
// while the session stays open. ErrNoStream without a stdin stream.
func (c *SPDYConn) CloseStdin() error {
	if _, err := c.stream(execproto.StreamStdin); err != nil {
		return err
	}
	if err := c.writable(); err != nil {
		return err
	}
	return c.closeStdin()
}

// closeStdin half-closes stdin once; later calls return the first result.
func (c *SPDYConn) closeStdin() error {
	c.stdinOnce.Do(func() {
		if err := c.streams[execproto.StreamStdin].Close(); err != nil {
			c.stdinErr = fmt.Errorf("execclient: close stdin: %w", err)
		}
	})
	return c.stdinErr
}

// isWriteClosed reports whether err is the library refusing a second FIN.
func isWriteClosed(err error) bool { return errors.Is(err, spdystream.ErrWriteClosedStream) }
