package proxyundertest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/execconform/execconform/dialect"
)

// tsession is one translated session: a front connection and a
// client-go executor.
type tsession struct {
	t      *Translator
	front  front
	params dialect.Params
	codec  *dialect.ServerCodec
	log    *slog.Logger

	ctx    context.Context // the executor's
	cancel context.CancelFunc

	stdinR  *io.PipeReader
	stdinW  *io.PipeWriter
	stdinQ  chan []byte   // the front's stdin, for the feeder
	stdinMu sync.Mutex    // the feeder's write, or the farewell's
	dropIn  chan struct{} // closed: queued stdin is dropped (the farewell's exit goes next)
	sizes   chan remotecommand.TerminalSize

	out       chan outMsg   // to the front's one writer
	frontGone chan struct{} // closed when the front has ended: output is dropped
	goneOnce  sync.Once

	shutdown     chan struct{}
	shutdownOnce sync.Once
}

// outMsg is a message for the front's writer; a close frame when close.
type outMsg struct {
	mt     int
	b      []byte
	close  bool
	code   int
	reason string
	done   chan error
}

func (s *tsession) requestShutdown() { s.shutdownOnce.Do(func() { close(s.shutdown) }) }
func (s *tsession) markGone()        { s.goneOnce.Do(func() { close(s.frontGone) }) }

// run serves one session until both sides have ended.
func (t *Translator) run(f front, p dialect.Params) {
	s := &tsession{
		t: t, front: f, params: p, codec: t.cfg.Dialect.ServerCodec(),
		log:       t.log.With("container", p.Container, "tty", p.TTY),
		stdinQ:    make(chan []byte, 64),
		dropIn:    make(chan struct{}),
		sizes:     make(chan remotecommand.TerminalSize, 1),
		out:       make(chan outMsg, 64),
		frontGone: make(chan struct{}),
		shutdown:  make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if t.cfg.Broken == ContextNeverCancelled {
		s.ctx, s.cancel = context.Background(), func() {} // the bug: nothing can end the executor
	}
	defer s.cancel()
	s.stdinR, s.stdinW = io.Pipe()
	t.mu.Lock()
	t.sessions[s] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.sessions, s)
		t.mu.Unlock()
	}()

	ex, u, err := t.executor(p)
	if err != nil {
		s.log.Warn("executor", "err", err)
		_ = f.closeWith(websocket.CloseInternalServerErr, "backend")
		f.drop()
		return
	}
	s.log.Debug("session", "backend", u.Path, "spdy-only", t.cfg.ForceSPDY)
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); s.writer() }()
	frontDone := make(chan error, 1)
	go s.reader(frontDone)
	go s.feeder()
	execDone := make(chan error, 1)
	go func() {
		out := outWriter{s}
		opts := remotecommand.StreamOptions{Stdin: s.stdinR, Stdout: out, Tty: p.TTY}
		if !p.TTY {
			opts.Stderr = out
		}
		if p.TTY {
			opts.TerminalSizeQueue = sizeQueue{s}
		}
		err := ex.StreamWithContext(s.ctx, opts)
		_ = s.stdinW.Close() // unblock any write still pending
		execDone <- err
	}()

	select {
	case err := <-execDone:
		// The backend ended: the shell exited or was killed, or the
		// backend went away. The front hears it as a close frame.
		code, reason := websocket.CloseNormalClosure, ""
		var ee utilexec.ExitError
		if err != nil && !errors.As(err, &ee) {
			code, reason = websocket.CloseInternalServerErr, "backend: "+trimReason(err.Error())
			s.log.Info("backend ended", "err", err)
		}
		s.cancel()
		_ = s.stdinW.Close()
		s.closeFront(code, reason, frontDone)
	case err := <-frontDone:
		s.log.Debug("front ended", "err", err)
		s.markGone()
		f.drop() // its close frame, if any, was answered as it came
		s.farewell(execDone)
	case <-s.shutdown:
		s.farewell(execDone)
		s.closeFront(websocket.CloseGoingAway, "proxy shutting down", frontDone)
	}
	s.markGone()
	<-writerDone
}

// farewell ends the backend side after the front has gone: the exit
// typed on stdin first (after what was already forwarded; what is still
// queued is dropped), a bounded wait for the shell to end, then the
// executor's end: its context cancelled and its stdin closed.
func (s *tsession) farewell(execDone <-chan error) {
	bound := s.t.cfg.ExitWait
	var exit []byte
	switch s.t.cfg.Broken {
	case EOTOnly:
		exit = []byte{0x04}
	case StdinEOFOnly:
		_ = s.stdinW.Close()
	case ExitAsJSON:
		_, exit, _ = s.t.cfg.Dialect.ClientCodec("").Stdin(ExitSequence(s.params.TTY))
	default:
		exit = ExitSequence(s.params.TTY)
	}
	if exit != nil {
		go func() {
			s.stdinMu.Lock()
			defer s.stdinMu.Unlock()
			select {
			case <-s.dropIn:
			default:
				close(s.dropIn)
			}
			_, _ = s.stdinW.Write(exit)
		}()
	}
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case <-execDone:
		return
	case <-timer.C:
	}
	if s.t.cfg.Broken == ContextNeverCancelled {
		<-execDone // the bug: the executor runs on until the backend ends it
		return
	}
	// The shell did not end in time: end the executor (the backend
	// connection with it) rather than hold it.
	s.log.Info("the shell did not end after the exit; ending the executor", "bound", bound)
	s.cancel()
	_ = s.stdinW.Close()
	timer.Reset(s.t.cfg.CloseTimeout)
	select {
	case <-execDone:
	case <-timer.C:
		s.log.Warn("the executor did not return after its context was cancelled")
	}
}

// closeFront sends a close frame through the writer, waits (bounded) for
// the front's reply, then drops the connection.
func (s *tsession) closeFront(code int, reason string, frontDone <-chan error) {
	done := make(chan error, 1)
	bound := s.t.cfg.CloseTimeout
	select {
	case s.out <- outMsg{close: true, code: code, reason: reason, done: done}:
	case <-s.frontGone:
	}
	// One bound for both waits: the close written, then the front's
	// reply (or its end).
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case <-done:
	case <-s.frontGone:
	case <-timer.C:
		s.front.drop()
		return
	}
	select {
	case <-frontDone:
	case <-timer.C:
	}
	s.front.drop()
}

// writer is the front's one writer: output, pings, the close frame.
func (s *tsession) writer() {
	var tick <-chan time.Time
	if s.t.cfg.Broken != TranslatorNoKeepalive {
		tk := time.NewTicker(s.t.cfg.PingInterval)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		select {
		case m := <-s.out:
			if m.close {
				m.done <- s.front.closeWith(m.code, m.reason)
				return
			}
			if err := s.front.write(m.mt, m.b); err != nil {
				s.markGone()
				return
			}
		case <-tick:
			if err := s.front.ping(); err != nil {
				s.markGone()
				return
			}
		case <-s.frontGone:
			return
		}
	}
}

// reader reads the front: stdin to the feeder, sizes to the queue.
func (s *tsession) reader(done chan<- error) {
	defer close(s.stdinQ)
	ws, _ := s.front.(*wsFront)
	keepalive := s.t.cfg.Broken != TranslatorNoKeepalive && ws != nil
	extend := func() {
		if keepalive {
			_ = ws.c.SetReadDeadline(time.Now().Add(s.t.cfg.PingInterval + s.t.cfg.PongTimeout))
		}
	}
	if ws != nil {
		ws.c.SetPongHandler(func(string) error { extend(); return nil })
		ws.c.SetCloseHandler(func(code int, _ string) error {
			ws.mu.Lock()
			ws.code, ws.got = code, true
			ws.mu.Unlock()
			msg := websocket.FormatCloseMessage(code, "")
			if code == websocket.CloseNoStatusReceived {
				msg = nil
			}
			_ = ws.c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(s.t.cfg.CloseTimeout))
			return nil
		})
	}
	extend()
	for {
		mt, b, err := s.front.read()
		if err != nil {
			done <- err
			return
		}
		extend()
		in, err := s.codec.Decode(mt, b)
		if err != nil {
			s.log.Info("front message refused", "err", err)
			// The close goes through the one writer, and out before the
			// session's end drops the connection.
			closed := make(chan error, 1)
			select {
			case s.out <- outMsg{close: true, code: websocket.CloseUnsupportedData, reason: "not a message of dialect " + s.t.cfg.Dialect.Name, done: closed}:
				timer := time.NewTimer(s.t.cfg.CloseTimeout)
				select {
				case <-closed:
				case <-timer.C:
				}
				timer.Stop()
			case <-s.frontGone:
			}
			done <- err
			return
		}
		switch in.Kind {
		case dialect.InputStdin:
			select {
			case s.stdinQ <- in.Data:
			case <-s.frontGone:
			}
		case dialect.InputResize:
			select {
			case <-s.sizes: // the latest size wins
			default:
			}
			s.sizes <- remotecommand.TerminalSize{Width: in.Cols, Height: in.Rows}
		}
	}
}

// feeder writes the front's stdin to the executor, in order, until the
// farewell drops what is left.
func (s *tsession) feeder() {
	for b := range s.stdinQ {
		s.stdinMu.Lock()
		select {
		case <-s.dropIn:
		default:
			_, _ = s.stdinW.Write(b)
		}
		s.stdinMu.Unlock()
	}
}

// outWriter is the executor's stdout (and stderr): each write is one
// message to the front, dropped once the front has gone.
type outWriter struct{ s *tsession }

func (w outWriter) Write(p []byte) (int, error) {
	// A Writer must not keep p (the executor's copy loop reuses it), and
	// a raw dialect's message is p itself: the writer gets a copy.
	mt, b := w.s.codec.Output(bytes.Clone(p))
	select {
	case w.s.out <- outMsg{mt: mt, b: b}:
	case <-w.s.frontGone:
	}
	return len(p), nil
}

// sizeQueue is the executor's TerminalSizeQueue.
type sizeQueue struct{ s *tsession }

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	select {
	case sz := <-q.s.sizes:
		return &sz
	case <-q.s.ctx.Done():
		return nil
	case <-q.s.frontGone:
		return nil
	}
}

// trimReason fits a close reason in a close frame (123 bytes).
func trimReason(s string) string {
	if len(s) > 100 {
		return s[:100]
	}
	return s
}
