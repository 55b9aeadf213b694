package fakeapiserver

import (
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/execconform/execconform/execproto"
)

// wsConn is a session's WebSocket: the transport of every exec
// subprotocol of the WebSocket upgrade. One writer goroutine owns the
// writes; one reader goroutine reads and dispatches the client's messages.
type wsConn struct {
	s         *Session
	conn      *websocket.Conn
	out       chan wsMsg
	closeSent chan struct{} // the server's close frame was written (or could not be)
	sentOnce  sync.Once
}

type wsMsg struct {
	typ  int
	data []byte
	ack  chan error // closed/sent after the write, if non-nil
}

func newWSConn(s *Session, conn *websocket.Conn) *wsConn {
	return &wsConn{s: s, conn: conn, out: make(chan wsMsg, 64), closeSent: make(chan struct{})}
}

// start runs the writer and the reader on wg.
func (c *wsConn) start(wg *sync.WaitGroup) {
	wg.Add(2)
	go func() { defer wg.Done(); c.writer() }()
	go func() { defer wg.Done(); c.reader() }()
}

// established writes an empty message on the lowest writable channel, as
// the runtime does to tell the client the connection is established.
func (c *wsConn) established() {
	s := c.s
	switch {
	case s.Stdout:
		c.send(execproto.StreamStdout, nil)
	case s.Stderr:
		c.send(execproto.StreamStderr, nil)
	default:
		c.send(execproto.StreamError, nil)
	}
}

// send queues data on stream for the writer; it reports false (and drops
// the data) when the WebSocket has ended.
func (c *wsConn) send(stream byte, data []byte) bool {
	s := c.s
	typ, payload := execproto.Encode(s.Protocol, stream, data)
	select {
	case c.out <- wsMsg{typ: typ, data: payload}:
		return true
	case <-s.wsDone:
		return false
	}
}

// closeAndWait starts the close handshake from the server's side (code
// 1000) and waits, bounded by CloseTimeout, for the client's reply; the
// reader then closes the connection.
func (c *wsConn) closeAndWait() {
	s := c.s
	ack := make(chan error, 1)
	select {
	case c.out <- wsMsg{typ: websocket.CloseMessage, data: websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), ack: ack}:
	case <-s.wsDone:
		return
	}
	select {
	case <-ack:
	case <-s.wsDone:
		return
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.CloseTimeout))
	<-s.wsDone
}

// writer is the only goroutine that writes data and close frames to the
// connection (gorilla's pong replies use WriteControl, which may run
// concurrently with it).
func (c *wsConn) writer() {
	s := c.s
	for {
		select {
		case m := <-c.out:
			var err error
			if m.typ == websocket.CloseMessage {
				err = c.conn.WriteControl(websocket.CloseMessage, m.data, time.Now().Add(s.srv.cfg.CloseTimeout))
				c.sentOnce.Do(func() { close(c.closeSent) })
			} else {
				err = c.conn.WriteMessage(m.typ, m.data)
			}
			if m.ack != nil {
				m.ack <- err
			}
			if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
				s.endWS("write: " + err.Error())
				return
			}
		case <-s.wsDone:
			return
		}
	}
}

// reader reads and dispatches the client's messages until the connection
// ends, then ends the WebSocket and closes the connection.
func (c *wsConn) reader() {
	s := c.s
	reason := c.readLoop()
	var ce *websocket.CloseError
	var fe *execproto.FrameError
	// gorilla reports a connection that ended without a close frame as
	// close 1006, which no peer sends.
	gotClose := errors.As(reason, &ce) && ce.Code != websocket.CloseAbnormalClosure
	if gotClose || errors.As(reason, &fe) || (reason != nil && s.Protocol == execproto.ProtocolV5) {
		// The client sent a close frame, or a message that ends the
		// session (a malformed CLOSE signal). Like the real server, send
		// 1000 whatever the client's code, unless we sent ours already.
		//
		// When the client's TCP ended without a close frame (FIN or
		// RST), a real cluster answers with 1000 (into the dead
		// connection) only on v5: the API server terminates v5 itself, while older protocols
		// are tunnelled to the kubelet, and the API server tears the
		// tunnel down with the client's connection (measured by make
		// e2e-local, e2e/KNOWN_DIFFERENCES.md).
		select {
		case <-c.closeSent:
		default:
			ack := make(chan error, 1)
			select {
			case c.out <- wsMsg{typ: websocket.CloseMessage, data: websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), ack: ack}:
				select {
				case <-ack:
				case <-s.wsDone:
				}
			case <-s.wsDone:
			}
		}
	}
	msg := "connection closed"
	if reason != nil {
		msg = reason.Error()
	}
	s.endWS(msg)
	_ = s.tap.Close()
}

// ErrFragmented is the protocol error recorded for a message the client
// sent in more than one frame.
const ErrFragmented = "fragmented message from the client: a real API server reads each frame as a separate message"

func (c *wsConn) readLoop() error {
	s := c.s
	for {
		fragmentsBefore := s.rec.fragments()
		mt, data, err := c.conn.ReadMessage()
		if s.rec.fragments() != fragmentsBefore {
			// A real API server (golang.org/x/net/websocket) reads each
			// frame as a message: the continuation frames would be read as
			// messages of their own, their first byte as a channel.
			s.rec.protocolError(ErrFragmented)
		}
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				s.rec.protocolError(fmt.Sprintf("message larger than %d bytes: closed with 1009", s.srv.cfg.MaxMessageSize))
			}
			return err
		}
		if mt == websocket.TextMessage && !utf8.Valid(data) {
			s.ignored(&s.badInput.InvalidUTF8, fmt.Sprintf("text frame of %d bytes that is not valid UTF-8", len(data)))
		}
		f, err := execproto.Decode(s.Protocol, mt, data)
		if err != nil {
			var fe *execproto.FrameError
			switch {
			case errors.As(err, &fe) && fe.Stream == execproto.StreamClose && s.Protocol.StreamClose():
				// wsstream ends its read loop on a malformed CLOSE signal
				// (on other protocols 255 is just an unknown channel).
				s.rec.protocolError(err.Error())
				s.log.Debug("malformed CLOSE signal: the read loop ends", "err", err)
				return err
			case errors.As(err, &fe) && fe.Stream >= execproto.NumStreams:
				s.ignored(&s.badInput.UnknownChannel, err.Error())
			default: // the only other error Decode has
				s.ignored(&s.badInput.Base64, err.Error())
			}
			continue
		}
		if f == nil {
			continue
		}
		s.dispatch(f)
	}
}
