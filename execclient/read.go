package execclient

import (
	"errors"
	"time"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/execproto"
)

// Received is one message from the server, decoded for the negotiated protocol.
type Received struct {
	Stream      byte          // channel number
	Data        []byte        // payload after the channel, base64-decoded where the protocol says; the raw message if Err is set
	MessageType int           // websocket.TextMessage or websocket.BinaryMessage
	At          time.Duration // since Dial was called
	Err         error         // why the message does not decode under the protocol, if it does not
}

// errEmptyMessage marks a message without even a channel byte.
var errEmptyMessage = errors.New("execclient: empty message (no channel)")

// readLoop is the reader goroutine: it records every message until the
// connection ends, then tears the connection down and closes done.
func (c *Conn) readLoop() {
	var err error
	for {
		mt, payload, rerr := c.ws.ReadMessage()
		if rerr != nil {
			err = rerr
			break
		}
		if c.frozen.Load() || c.isKilled() {
			break // the application is gone: drop it
		}
		c.record(mt, payload)
	}
	if c.frozen.Load() && !c.isKilled() {
		// Freeze: stop reading, close nothing, until AbortTCP or Reset.
		close(c.parked)
		<-c.killed
	}
	c.finish(err)
}

// record decodes and stores one message.
func (c *Conn) record(mt int, payload []byte) {
	if c.codec != nil {
		c.recordDialect(mt, payload)
		return
	}
	r := Received{MessageType: mt, At: c.since()}
	f, err := execproto.DecodeFromServer(c.proto, mt, payload)
	switch {
	case err != nil:
		r.Err, r.Data = err, payload
		var fe *execproto.FrameError
		if errors.As(err, &fe) {
			r.Stream = fe.Stream
		}
	case f == nil:
		r.Err = errEmptyMessage
	default:
		r.Stream, r.Data = f.Stream, f.Data
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nframes == 0 && r.Err == nil && len(r.Data) == 0 &&
		r.Stream >= execproto.StreamStdout && r.Stream <= execproto.StreamError {
		c.opened = true
	}
	c.nframes++
	if len(c.frames) < MaxFrames {
		c.frames = append(c.frames, r)
	}
	if r.Err == nil {
		switch r.Stream {
		case execproto.StreamStdout, execproto.StreamStderr:
			c.appendOutput(r.Data)
		case execproto.StreamError:
			if len(r.Data) > 0 && c.status == nil {
				c.status = r.Data
			}
		}
	}
	c.notify()
}

// Output is everything received on stdout and stderr so far, decoded and in
// arrival order, or its last MaxOutput bytes if there was more (OutputTotal
// tells).
func (c *Conn) Output() string { return c.output() }

// OutputTotal is the number of stdout and stderr bytes received so far.
func (c *Conn) OutputTotal() int64 { return c.outputTotal() }

// Frames is every message received so far, decoded, or the first MaxFrames
// of them (FrameCount tells). The Data slices are shared: do not modify them.
func (c *Conn) Frames() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Received(nil), c.frames...)
}

// FrameCount is the number of messages received so far.
func (c *Conn) FrameCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nframes
}

// Opened reports whether the server's first message was the empty
// "connection established" message on the lowest writable channel (stdout,
// stderr or error, depending on the streams requested).
func (c *Conn) Opened() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened
}

// tail returns the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// StreamDialect is Received.Stream for a dialect message that is not
// output (a notice, a SockJS open or heartbeat frame).
const StreamDialect byte = 254

// recordDialect decodes and stores one message of a dialect connection:
// output goes to the output as StreamStdout; a SockJS close frame is
// kept as the server's close (DialectClose).
func (c *Conn) recordDialect(mt int, payload []byte) {
	at := c.since()
	events, err := c.codec.Decode(mt, payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nframes++
	if err != nil {
		if len(c.frames) < MaxFrames {
			c.frames = append(c.frames, Received{Stream: StreamDialect, MessageType: mt, At: at, Data: payload, Err: err})
		}
		c.notify()
		return
	}
	for _, e := range events {
		r := Received{Stream: StreamDialect, MessageType: mt, At: at, Data: e.Data}
		switch e.Kind {
		case dialect.EventOutput:
			r.Stream = execproto.StreamStdout
			c.appendOutput(e.Data)
		case dialect.EventClose:
			if c.dialectClose == nil {
				c.dialectClose = &closeInfo{code: e.Code, reason: e.Reason, at: at, serverFirst: true}
			}
		}
		if len(c.frames) < MaxFrames {
			c.frames = append(c.frames, r)
		}
	}
	c.notify()
}

// DialectClose is the close frame of a dialect's transport (SockJS's
// c[code,"reason"]), if the server sent one.
func (c *Conn) DialectClose() (code int, reason string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dialectClose == nil {
		return 0, "", false
	}
	return c.dialectClose.code, c.dialectClose.reason, true
}
