package execclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/websocket"

	"github.com/execconform/execconform/internal/wsframe"

	"github.com/execconform/execconform/execproto"
)

// Errors of the write methods.
var (
	// ErrFrozen: the connection was frozen with Freeze.
	ErrFrozen = errors.New("execclient: connection is frozen")
	// ErrCloseSent: a close frame was already written (by Close, SendRaw, or
	// as the reply to the server's).
	ErrCloseSent = errors.New("execclient: close frame already sent")
	// ErrDialect: the connection's dialect cannot say that.
	ErrDialect = errors.New("execclient: not in the dialect")
	// ErrNotV5: CloseStdin needs the v5 protocol.
	ErrNotV5 = errors.New("execclient: the negotiated protocol has no CLOSE signal")
)

// Send writes data on stream, framed for the negotiated protocol with
// execproto.Encode (binary with a channel byte, or '0'+channel then base64).
func (c *Conn) Send(stream byte, data []byte) error {
	if c.codec != nil {
		if stream != execproto.StreamStdin {
			return fmt.Errorf("%w: dialect %s carries no %s stream", ErrDialect, c.codec.Dialect().Name, execproto.StreamType(stream))
		}
		mt, payload, err := c.codec.Stdin(data)
		if err != nil {
			return err
		}
		return c.writeData(mt, payload)
	}
	mt, payload := execproto.Encode(c.proto, stream, data)
	return c.writeData(mt, payload)
}

// sendStart writes a dialect's start messages (a bind).
func (c *Conn) sendStart() error {
	mts, msgs, err := c.codec.Start()
	if err != nil {
		return err
	}
	for i, m := range msgs {
		if err := c.writeData(mts[i], m); err != nil {
			return err
		}
	}
	return nil
}

// SendRaw writes payload as one message of messageType without any framing,
// for malformed-input tests. Text and binary messages are written as data;
// ping, pong and close as control frames (at most 125 bytes). A raw close
// frame counts as the client's close: the server's next close frame is taken
// as the reply, and Close can no longer be used.
func (c *Conn) SendRaw(messageType int, payload []byte) error {
	switch messageType {
	case websocket.TextMessage, websocket.BinaryMessage:
		return c.writeData(messageType, payload)
	case websocket.PingMessage, websocket.PongMessage, websocket.CloseMessage:
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if err := c.writableLocked(); err != nil {
			return err
		}
		err := c.ws.WriteControl(messageType, payload, time.Now().Add(c.opts.WriteTimeout))
		if err != nil {
			return fmt.Errorf("execclient: write: %w", err)
		}
		if messageType == websocket.CloseMessage {
			c.closeSent = true
		}
		return nil
	}
	return fmt.Errorf("execclient: SendRaw: unknown message type %d", messageType)
}

// Type sends s on stdin, as keystrokes typed into a terminal (Enter is "\r"
// with a tty).
func (c *Conn) Type(s string) error { return c.Send(execproto.StreamStdin, []byte(s)) }

// Resize sends the terminal size as JSON execproto.TerminalSize on StreamResize.
func (c *Conn) Resize(width, height uint16) error {
	if c.codec != nil {
		mt, payload, err := c.codec.Resize(width, height)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrDialect, err)
		}
		return c.writeData(mt, payload)
	}
	b, err := json.Marshal(execproto.TerminalSize{Width: width, Height: height})
	if err != nil {
		return err
	}
	return c.Send(execproto.StreamResize, b)
}

// CloseStdin sends the v5 CLOSE signal [255, 0]: stdin EOF while the session
// stays open. On other protocols it returns ErrNotV5 and writes nothing.
func (c *Conn) CloseStdin() error {
	if c.codec != nil {
		return fmt.Errorf("%w: dialect %s has no stdin close", ErrDialect, c.codec.Dialect().Name)
	}
	if !c.proto.StreamClose() {
		return fmt.Errorf("%w (negotiated %s)", ErrNotV5, c.proto)
	}
	mt, payload := execproto.EncodeClose(execproto.StreamStdin)
	return c.writeData(mt, payload)
}

// writeData writes one data message under the write mutex.
func (c *Conn) writeData(mt int, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writableLocked(); err != nil {
		return err
	}
	deadline := time.Now().Add(c.opts.WriteTimeout)
	if err := c.ws.SetWriteDeadline(deadline); err != nil {
		return fmt.Errorf("execclient: write: %w", err)
	}
	if err := writeOneFrame(c.ws, mt, payload, deadline); err != nil {
		return fmt.Errorf("execclient: write: %w", err)
	}
	return nil
}

// writeOneFrame writes a data message as one frame, as browsers do:
// gorilla cuts a message into continuation frames at its write buffer's
// size (4 KiB), and a transparent proxy would then be blamed for fragments
// the client made. Larger messages are framed by wsframe; c.wmu, held by
// the caller, makes this the connection's only writer.
func writeOneFrame(ws *websocket.Conn, mt int, payload []byte, deadline time.Time) error {
	if len(payload) <= smallMessage {
		return ws.WriteMessage(mt, payload)
	}
	nc := ws.NetConn()
	if err := nc.SetWriteDeadline(deadline); err != nil {
		return err
	}
	return wsframe.WriteClientFrame(nc, mt, payload)
}

// smallMessage fits gorilla's default write buffer with a frame header.
const smallMessage = 4096 - 14

// writableLocked says why nothing may be written now, if so. c.wmu must be
// held (c.mu is taken after it, never the other way round).
func (c *Conn) writableLocked() error {
	if c.frozen.Load() {
		return ErrFrozen
	}
	if c.isKilled() {
		return ErrEnded
	}
	c.mu.Lock()
	ended := c.ended
	c.mu.Unlock()
	if ended {
		return ErrEnded
	}
	if c.closeSent {
		return ErrCloseSent
	}
	return nil
}

// onPing answers a ping with a pong under the write mutex. It runs in the
// reader goroutine (inside gorilla's read), so while an application write is
// blocked the reader waits, for at most WriteTimeout. Write errors do not end
// the read loop: the read fails on its own if the connection is gone.
func (c *Conn) onPing(data string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.frozen.Load() || c.closeSent || c.isKilled() {
		return nil
	}
	if err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.opts.WriteTimeout)); err != nil {
		c.log.Debug("execclient: pong failed", "err", err)
	}
	return nil
}

// onClose records the server's close frame and, when the server closed
// first, replies as a browser does: a close frame echoing the code. It runs
// in the reader goroutine; gorilla's read then returns a CloseError.
func (c *Conn) onClose(code int, text string) error {
	at := c.since()
	c.wmu.Lock()
	serverFirst := !c.closeSent
	if serverFirst && !c.frozen.Load() && !c.isKilled() {
		err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(c.opts.WriteTimeout))
		if err != nil {
			c.log.Debug("execclient: close reply failed", "err", err)
		}
		c.closeSent = true
	}
	c.wmu.Unlock()

	c.mu.Lock()
	c.closeFrame = &closeInfo{code: code, reason: text, at: at, serverFirst: serverFirst}
	c.notify()
	c.mu.Unlock()
	return nil
}
