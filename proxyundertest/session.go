package proxyundertest

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/gorilla/websocket"
)

// endKind says why a session ends; the first event wins.
type endKind int

const (
	frontClosed      endKind = iota // the frontend sent a close frame
	frontLost                       // EOF, reset or another read error on the frontend
	frontTimeout                    // keepalive: nothing read within PingInterval+PongTimeout
	frontOversize                   // a frontend message exceeded MaxMessageSize
	frontWriteFailed                // a write to the frontend failed
	proxyShutdown                   // Proxy.Shutdown
	backClosed                      // the backend sent a close frame
	backLost                        // the backend connection broke without a close frame
	backOversize                    // a backend message exceeded MaxMessageSize
	backWriteFailed                 // a write to the backend failed
)

var endKindNames = [...]string{
	frontClosed:      "frontend-close",
	frontLost:        "frontend-lost",
	frontTimeout:     "frontend-keepalive-timeout",
	frontOversize:    "frontend-message-too-big",
	frontWriteFailed: "frontend-write-failed",
	proxyShutdown:    "proxy-shutdown",
	backClosed:       "backend-close",
	backLost:         "backend-lost",
	backOversize:     "backend-message-too-big",
	backWriteFailed:  "backend-write-failed",
}

func (k endKind) String() string { return endKindNames[k] }

// frontend reports whether the session ends on the frontend side, which
// calls for the farewell (exit and close handshake) on the backend.
func (k endKind) frontend() bool { return k <= proxyShutdown }

// waitFor is what settles one side of a closing session: done or fail being
// closed. The zero value is settled at once.
type waitFor struct{ done, fail <-chan struct{} }

func (w waitFor) none() bool { return w.done == nil && w.fail == nil }

// session is one proxied exec stream:
//
//	browser ══ frontend endpoint ══ session ══ backend endpoint ══ API server
//
// run owns the ending: it waits for the first end event, then closes both
// sides (in parallel, each bounded by CloseTimeout), then waits for all four
// goroutines of the two endpoints.
type session struct {
	id           string
	log          *slog.Logger
	variant      Variant
	proto        execproto.Protocol
	tty          bool
	closeTimeout time.Duration
	front, back  *endpoint

	shutdown     chan struct{} // closed by Proxy.Shutdown: end as on a frontend end
	shutdownOnce sync.Once
	abort        chan struct{} // closed when Shutdown's context expired: stop waiting
	abortOnce    sync.Once

	wg sync.WaitGroup
}

func (s *session) requestShutdown() { s.shutdownOnce.Do(func() { close(s.shutdown) }) }

// forceClose drops both connections and cuts every wait short.
func (s *session) forceClose() {
	s.abortOnce.Do(func() { close(s.abort) })
	s.front.closeConn()
	s.back.closeConn()
}

func (s *session) run() {
	s.front.start(&s.wg, s.back)
	s.back.start(&s.wg, s.front)

	kind, detail := s.waitEnd()
	deadline := time.Now().Add(s.closeTimeout)
	s.log.Info("session ending", "reason", kind.String(), "detail", detail, "input_queued", len(s.back.out))

	var fw, bw waitFor
	if kind.frontend() {
		fw, bw = s.endFrontend(kind, deadline)
	} else {
		fw, bw = s.endBackend(kind, deadline)
	}
	s.settle(fw, bw, deadline)
	s.front.shut()
	s.back.shut()
	s.wg.Wait()

	// All goroutines have returned: the endpoints' fields are ours.
	s.log.Info("session over", "reason", kind.String(),
		"backend_close_frame", s.back.gotClose, "backend_close_code", s.back.closeCode,
		"backend_drain", errString(s.back.drainErr), "backend_read", errString(s.back.readErr))
}

func (s *session) waitEnd() (endKind, string) {
	f, b := s.front, s.back
	select {
	case <-f.ended:
		switch {
		case f.gotClose:
			return frontClosed, fmt.Sprintf("close %d %q", f.closeCode, f.closeText)
		case isTimeout(f.readErr):
			return frontTimeout, f.readErr.Error()
		default:
			return frontLost, f.readErr.Error()
		}
	case <-f.oversized:
		return frontOversize, ""
	case <-f.writeFailed:
		return frontWriteFailed, f.writeErr.Error()
	case <-s.shutdown:
		return proxyShutdown, ""
	case <-b.ended:
		if b.gotClose {
			return backClosed, fmt.Sprintf("close %d %q", b.closeCode, b.closeText)
		}
		return backLost, b.readErr.Error()
	case <-b.oversized:
		return backOversize, ""
	case <-b.writeFailed:
		return backWriteFailed, b.writeErr.Error()
	}
}

// endFrontend: the frontend is gone (or the proxy shuts down). The backend
// gets the farewell (exit, close 1000, drain); the frontend gets an answer
// to its close frame, or our own close frame when it is still alive.
func (s *session) endFrontend(kind endKind, deadline time.Time) (front, back waitFor) {
	s.front.stopForwarding()
	s.back.stopForwarding() // the backend's last output has nobody to go to
	fw := s.variant.farewell(s.proto, s.tty)
	if s.variant.secondWriter() && fw.exit != nil {
		// The ExitConcurrentWrite bug: the queued input is still being
		// written, and the exit is written beside it.
		if err := writeBeside(s.back.conn, *fw.exit); err != nil {
			s.log.Error("exit write failed: dropping both connections", "err", err)
			s.forceClose()
			return waitFor{}, waitFor{}
		}
		fw.exit = nil
	} else {
		s.back.dropForwarded() // nor has the frontend's queued input anybody to want it
	}
	back = sayFarewell(s.back, fw, websocket.CloseNormalClosure, "", deadline, s.abort)

	switch kind {
	case frontClosed:
		// RFC 6455 section 5.5.1: answer with a close frame echoing the
		// code, then (we are the server) close TCP.
		front = waitFor{done: s.front.send([]frame{closeFrameFor(s.front.closeCode, "")}, deadline, s.abort)}
	case frontOversize:
		s.front.send([]frame{closeFrameFor(websocket.CloseMessageTooBig, "message too big")}, deadline, s.abort)
		front = waitFor{done: s.front.ended, fail: s.front.writeFailed}
	case proxyShutdown:
		s.front.send([]frame{closeFrameFor(websocket.CloseGoingAway, "proxy shutting down")}, deadline, s.abort)
		front = waitFor{done: s.front.ended, fail: s.front.writeFailed}
	default:
		// Lost, timed out or unwritable: nothing can reach the frontend.
	}
	return front, back
}

// endBackend: the backend ended the stream. Its close code and reason are
// relayed to the frontend, whose reply we wait for.
func (s *session) endBackend(kind endKind, deadline time.Time) (front, back waitFor) {
	s.front.stopForwarding()
	s.back.stopForwarding()
	code, text := websocket.CloseInternalServerErr, "backend connection lost"
	switch kind {
	case backClosed:
		code, text = s.back.closeCode, s.back.closeText
		// Answer its close frame, then wait for it to close TCP.
		s.back.send([]frame{closeFrameFor(code, "")}, deadline, s.abort)
		back = waitFor{done: s.back.readerDone, fail: s.back.writeFailed}
		if !s.variant.relaysBackendClose() {
			return waitFor{}, back // the CloseNotRelayed bug: the frontend's TCP is just closed
		}
	case backOversize:
		// The backend is alive and so may be the process: end it as on a
		// frontend end.
		text = "backend message too big"
		back = sayFarewell(s.back, s.variant.farewell(s.proto, s.tty),
			websocket.CloseMessageTooBig, "message too big", deadline, s.abort)
	default:
		// Lost or unwritable: nothing can reach the backend.
	}
	s.front.send([]frame{closeFrameFor(code, text)}, deadline, s.abort)
	front = waitFor{done: s.front.ended, fail: s.front.writeFailed}
	return front, back
}

// sayFarewell carries out fw on the backend endpoint e and says what to wait
// for before closing its TCP connection.
func sayFarewell(e *endpoint, fw farewell, code int, text string, deadline time.Time, abort <-chan struct{}) waitFor {
	var frames []frame
	if fw.exit != nil {
		frames = append(frames, *fw.exit)
	}
	if fw.closeFrame {
		frames = append(frames, closeFrameFor(code, text))
	}
	if len(frames) == 0 {
		return waitFor{}
	}
	if fw.waitExit && fw.exit != nil && fw.closeFrame {
		// The exit, then the close frame once the backend has ended the
		// session (its close frame, or its connection), or half the close
		// bound has passed. Forwarding has stopped: nothing the frontend
		// sent lands between the two.
		// Settled once our close frame is written (the reply, when the
		// backend closed first: a real API server closes TCP right after
		// its close frame, so the reply must not wait for the drain) and
		// the backend has closed TCP.
		e.send(frames[:1], deadline, abort)
		wait := time.Until(deadline) / 2
		settled := make(chan struct{})
		go func() {
			defer close(settled)
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-e.ended:
			case <-t.C:
			case <-abort:
				return
			case <-e.quit:
				return
			}
			select {
			case <-e.send(frames[1:], deadline, abort):
			case <-abort:
				return
			}
			select {
			case <-e.readerDone:
			case <-abort:
			case <-e.quit:
			}
		}()
		return waitFor{done: settled, fail: e.writeFailed}
	}
	// One request: nothing the frontend sent can land between the exit and
	// the close frame, and whatever is queued after it is refused.
	written := e.send(frames, deadline, abort)
	if fw.drain {
		return waitFor{done: e.readerDone, fail: e.writeFailed}
	}
	return waitFor{done: written}
}

// writeBeside writes f on c from the calling goroutine, beside the
// endpoint's writer: the ExitConcurrentWrite bug. A panic of gorilla's
// concurrent write detection is returned as an error, as net/http would
// recover it in a handler.
func writeBeside(c *websocket.Conn, f frame) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return c.WriteMessage(f.typ, f.data)
}

// settle closes each side's connection as soon as it is settled, and both
// at the deadline at the latest (the caller shuts both after settle).
func (s *session) settle(front, back waitFor, deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		if front.none() {
			s.front.closeConn()
		}
		if back.none() {
			s.back.closeConn()
		}
		if front.none() && back.none() {
			return
		}
		select {
		case <-front.done:
			front = waitFor{}
		case <-front.fail:
			front = waitFor{}
		case <-back.done:
			back = waitFor{}
		case <-back.fail:
			back = waitFor{}
			if s.back.panicked {
				// The writer "crashed" (ExitConcurrentWrite): as a process
				// dies, both connections go at once.
				s.log.Error("backend writer panicked: dropping both connections", "err", s.back.writeErr)
				s.forceClose()
				return
			}
		case <-t.C:
			s.log.Warn("close handshake timed out", "frontend_pending", !front.none(), "backend_pending", !back.none())
			return
		case <-s.abort:
			return
		}
	}
}

// abandonBackend gives the farewell to a backend connection whose frontend
// never came up (its upgrade failed): the exec process was started all the
// same.
func abandonBackend(bc *websocket.Conn, cfg *Config, proto execproto.Protocol, tty bool, log *slog.Logger) {
	e := newBackendEndpoint(bc, cfg)
	var wg sync.WaitGroup
	e.start(&wg, nil)
	deadline := time.Now().Add(cfg.CloseTimeout)
	w := sayFarewell(e, cfg.Variant.farewell(proto, tty), websocket.CloseNormalClosure, "", deadline, nil)
	if !w.none() {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-w.done:
		case <-w.fail:
		case <-t.C:
			log.Warn("close handshake timed out", "backend_pending", true)
		}
		t.Stop()
	}
	e.shut()
	wg.Wait()
	log.Info("backend abandoned", "backend_close_frame", e.gotClose, "backend_drain", errString(e.drainErr))
}

func newFrontendEndpoint(c *websocket.Conn, cfg *Config) *endpoint {
	e := newEndpoint("frontend", c)
	e.maxSize = cfg.MaxMessageSize
	if !cfg.Variant.keepalive() {
		e.ctrlTimeout = cfg.CloseTimeout
		return e // the NoKeepalive bug: no pings, no deadlines
	}
	e.readTimeout = cfg.PingInterval + cfg.PongTimeout
	// A frontend that does not take a message within the keepalive window
	// is as dead as one that does not answer a ping.
	e.writeTimeout = cfg.PingInterval + cfg.PongTimeout
	e.ctrlTimeout = cfg.CloseTimeout
	e.pingEvery = cfg.PingInterval
	e.pingTimeout = cfg.PongTimeout
	return e
}

func newBackendEndpoint(c *websocket.Conn, cfg *Config) *endpoint {
	e := newEndpoint("backend", c)
	e.maxSize = cfg.MaxMessageSize
	// No read or write deadline: an exec stream may idle for hours, and a
	// shell that does not read its pty legitimately stalls our writes.
	e.ctrlTimeout = cfg.CloseTimeout
	e.drainToEOF = true
	e.recoverPanic = cfg.Variant.secondWriter()
	e.fragments = cfg.Variant.fragments()
	e.stopReading = cfg.Variant == ExitCloseNoDrain
	e.client = true
	return e
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
