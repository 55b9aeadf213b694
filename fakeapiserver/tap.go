package fakeapiserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/internal/tcpreset"
)

// tapConn feeds every byte read and written on a hijacked connection to the
// session's Recorder, and records how the connection ended. It sits under
// the WebSocket library, so the recorder sees the frames as they crossed
// the wire.
//
//	client ==TCP(+TLS)==> tapConn.Read  --> gorilla --> session
//	client <==TCP(+TLS)== tapConn.Write <-- gorilla <-- session
//	                         |
//	                         +--> Recorder.feed (both directions)
type tapConn struct {
	net.Conn
	rec    atomic.Pointer[Recorder]
	closed atomic.Bool
	// writes notes whether a Write reported the peer's RST. Linux reports
	// a RST once: if a Write takes it, a Read at the same moment gets EOF,
	// and would record a reset as a FIN (1 run in 20 of a reset test).
	writes *tcpreset.Watch
	// dead is set once the connection was seen reset (by a Read or a
	// Write): Linux then fails every later write (EPIPE), so what is
	// written after it never reaches the wire and is not recorded. A real
	// API server writes its close frame into a reset connection too (v5:
	// x/net/websocket closes with 1000 on any read error), and no peer
	// ever sees it.
	dead atomic.Bool
	// pending holds bytes the HTTP server had read past the request
	// before the hijack (SPDY: spdyTapWriter); Read returns them first.
	// Only the reading goroutine touches it.
	pending []byte
}

func newTapConn(conn net.Conn) *tapConn {
	return &tapConn{Conn: conn, writes: tcpreset.New()}
}

func (c *tapConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		if r := c.rec.Load(); r != nil {
			r.feed(FromClient, b[:n])
		}
		return n, nil
	}
	n, err := c.Conn.Read(b)
	r := c.rec.Load()
	if r != nil {
		if n > 0 {
			r.feed(FromClient, b[:n])
		}
		if err != nil {
			how := c.classify(err)
			if how == TCPEOF && c.writes.TookReset() {
				how = TCPReset
			}
			if how == TCPReset {
				c.dead.Store(true)
			}
			r.tcpEnd(how)
		}
	}
	return n, err
}

// Write records b before writing it, so that a frame is always recorded
// before the peer can have answered it; but not once the connection was
// seen reset (dead), when nothing written reaches the peer.
func (c *tapConn) Write(b []byte) (int, error) {
	r := c.rec.Load()
	if r != nil && !c.dead.Load() {
		r.feed(FromServer, b)
	}
	n, err := c.writes.Write(func() (int, error) { return c.Conn.Write(b) })
	if err != nil && c.classify(err) == TCPReset {
		c.dead.Store(true)
	}
	if r != nil && err != nil {
		r.protocolError(fmt.Sprintf("write failed after %d of %d bytes: %v", n, len(b), err))
		r.tcpEnd(c.classify(err))
	}
	return n, err
}

func (c *tapConn) Close() error {
	c.closed.Store(true)
	if r := c.rec.Load(); r != nil {
		r.tcpEnd(TCPServerClosed)
	}
	return c.Conn.Close()
}

// classify names a read or write error as a TCP ending. The first error
// counts: after a RST, Linux reports ECONNRESET once (to a read or a
// write) and then EOF to every later read.
func (c *tapConn) classify(err error) string {
	var ne net.Error
	switch {
	case c.closed.Load() || errors.Is(err, net.ErrClosed):
		return TCPServerClosed
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return TCPEOF
	case tcpreset.IsReset(err):
		return TCPReset
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return TCPTimeout
	}
	return "error: " + err.Error()
}

// tapWriter wraps the http.ResponseWriter given to the WebSocket upgrader so
// that the hijacked connection is a tapConn. The upgrader must be set up
// with its own read buffer (ReadBufferSize > 0) so that it reads through
// the tap and not through the HTTP server's buffered reader.
type tapWriter struct {
	http.ResponseWriter
	tap *tapConn
}

func (w *tapWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	tap, brw, err := hijackTap(w.ResponseWriter)
	if err != nil {
		return nil, nil, err
	}
	w.tap = tap
	return tap, brw, nil
}

// hijackTap hijacks rw's connection, wrapped in a tapConn (WebSocket and
// SPDY upgrades alike).
func hijackTap(rw http.ResponseWriter) (*tapConn, *bufio.ReadWriter, error) {
	h, ok := rw.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("fakeapiserver: connection cannot be hijacked")
	}
	conn, brw, err := h.Hijack()
	if err != nil {
		return nil, nil, err
	}
	return newTapConn(conn), brw, nil
}

// The recorder's default bounds (Config.RecordPayload, Config.RecordFrames).
const (
	defaultRecordPayload = 256
	defaultRecordFrames  = 2000
)

// NewRecorder makes a recorder for one WebSocket connection that speaks
// protocol p, for recording outside the server (a relay in front of a real
// API server): wrap the connection from the WebSocket client with Tap.
// payloadPrefix and frames bound its memory as Config.RecordPayload and
// Config.RecordFrames do (0 for their defaults).
func NewRecorder(start time.Time, p execproto.Protocol, payloadPrefix, frames int) *Recorder {
	if payloadPrefix <= 0 {
		payloadPrefix = defaultRecordPayload
	}
	if frames <= 0 {
		frames = defaultRecordFrames
	}
	return newRecorder(start, p, payloadPrefix, frames)
}

// Tap wraps conn, the connection to the WebSocket client, so that every
// byte read from it is recorded as FromClient and every byte written to it
// as FromServer, and how it ended as the close record's TCP.
func (r *Recorder) Tap(conn net.Conn) net.Conn {
	t := newTapConn(conn)
	t.rec.Store(r)
	return t
}
