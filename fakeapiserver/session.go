package fakeapiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/proctable"
)

// Semantics is what the fake container runtime does to a session's process
// when its WebSocket ends while the process lives.
type Semantics string

const (
	// Containerd is what real clusters were measured to do (the default): a
	// tty session keeps its pty master open and the shell keeps running (the
	// orphan); a session without a tty gets EOF on stdin.
	Containerd Semantics = "containerd"
	// HangupOnDisconnect closes the pty master, so the kernel sends SIGHUP to
	// the session (without a tty: stdin is closed and the process group gets
	// SIGHUP). No real runtime does this; it exists for contrast.
	HangupOnDisconnect Semantics = "hangup-on-disconnect"
)

// Session is one exec request: a WebSocket connection and the real process
// it started.
type Session struct {
	ID        string
	Namespace string
	Pod       string
	Container string
	Command   []string
	// Offered is the client's offer as the server read it (Offered, after
	// authentication took a bearer-token subprotocol out), redacted.
	Offered  []string
	Protocol execproto.Protocol
	TTY      bool
	Stdin    bool
	Stdout   bool
	Stderr   bool
	Started  time.Time

	srv  *Server
	seq  int64 // registration order in srv, from 1 (set by add)
	log  *slog.Logger
	rec  *Recorder
	proc *process
	conn *websocket.Conn
	tap  *tapConn

	out       chan wsMsg
	wsDone    chan struct{} // the WebSocket has ended
	wsOnce    sync.Once
	finished  chan struct{} // process reaped and connection closed
	closeSent chan struct{} // the server's close frame was written (or could not be)
	sentOnce  sync.Once

	mu           sync.Mutex
	status       *execproto.Status
	startErr     string
	endReason    string
	endAt        time.Duration
	exitAt       time.Duration
	stdinClosed  bool
	resizes      []execproto.TerminalSize
	outputsAfter int64 // output bytes discarded after the WebSocket ended
	badInput     BadInput

	// Guarded by srv.mu: when run returned, and whether the process table
	// showed a process of the session alive after that.
	finishedAt time.Time
	lingering  bool
}

type wsMsg struct {
	typ  int
	data []byte
	ack  chan error // closed/sent after the write, if non-nil
}

// BadInput counts the client's messages that the server ignored, as the
// real API server ignores them (k8s.io/apimachinery wsstream's read loop
// logs them, at most, and reads on). Each is also logged at debug level
// and kept among the record's protocol errors; none closes the session.
type BadInput struct {
	// Base64: a message of a base64 protocol whose data is not standard
	// base64.
	Base64 int64 `json:"base64,omitempty"`
	// UnknownChannel: a message whose first byte names no channel (0-4;
	// 255, the CLOSE signal, only on v5).
	UnknownChannel int64 `json:"unknown_channel,omitempty"`
	// InvalidUTF8: a text frame that is not valid UTF-8, which RFC 6455
	// section 8.1 says to fail the connection for; its data is read on
	// (and on a base64 protocol is then bad base64 too).
	InvalidUTF8 int64 `json:"invalid_utf8,omitempty"`
	// ServerChannel: data on a channel only the server writes (stdout,
	// stderr, error).
	ServerChannel int64 `json:"server_channel,omitempty"`
}

// BadInput counts the client's messages the session ignored so far.
func (s *Session) BadInput() BadInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.badInput
}

// ignored counts a bad message in n (a counter of s.badInput), records it
// as a protocol error and logs it at debug level: what, never the data.
func (s *Session) ignored(n *int64, what string) {
	s.mu.Lock()
	*n++
	s.mu.Unlock()
	s.rec.protocolError(what)
	s.log.Debug("bad input ignored", "what", what)
}

// Done is closed when the session's WebSocket has ended.
func (s *Session) Done() <-chan struct{} { return s.wsDone }

// Exited is closed when the session's process has exited and been reaped.
// It is never closed for a session whose process failed to start.
func (s *Session) Exited() <-chan struct{} {
	if s.proc == nil {
		return nil
	}
	return s.proc.done
}

// Finished is closed when the process is reaped and the connection closed,
// and the server has taken note of it: its retention may drop the session
// from then on (Config.KeepEnded).
func (s *Session) Finished() <-chan struct{} { return s.finished }

// PID is the PID of the session's process (its session and group leader), 0 if none.
func (s *Session) PID() int {
	if s.proc == nil {
		return 0
	}
	return s.proc.pid()
}

// StartedAt is when the session started (Started, as a method).
func (s *Session) StartedAt() time.Time { return s.Started }

// Recorder gives the frame recorder of the session.
func (s *Session) Recorder() *Recorder { return s.rec }

// match selects the session's processes in the process table: those that
// carry its EXECCONFORM_SESSION tag and those in its Unix session.
func (s *Session) match() proctable.Match {
	return proctable.Match{Session: s.ID, SID: s.PID()}
}

// Live lists the session's live processes, read from the process table.
func (s *Session) Live(ctx context.Context) ([]proctable.Proc, error) {
	return s.srv.procs.Live(ctx, s.match())
}

// WaitGone waits until the process table shows no live process of the
// session and returns how long that took from the call.
func (s *Session) WaitGone(ctx context.Context) (time.Duration, []proctable.Proc, error) {
	return s.srv.procs.WaitGone(ctx, s.match())
}

// Kill sends SIGKILL to every live process of the session and waits until
// the process table shows none.
func (s *Session) Kill(ctx context.Context) error {
	_, err := s.srv.procs.Kill(ctx, s.match(), 9)
	return err
}

// run serves the session until its process has exited and its connection
// has closed. It owns every goroutine of the session. The caller closes
// s.finished.
func (s *Session) run(ctx context.Context) {
	var wg sync.WaitGroup
	pumps := sync.WaitGroup{}
	wg.Add(2)
	go func() { defer wg.Done(); s.writer() }()
	go func() { defer wg.Done(); s.reader() }()

	// The runtime writes an empty message on the lowest writable channel to
	// tell the client the connection is established.
	switch {
	case s.Stdout:
		s.send(execproto.StreamStdout, nil)
	case s.Stderr:
		s.send(execproto.StreamStderr, nil)
	default:
		s.send(execproto.StreamError, nil)
	}

	if s.proc == nil {
		// The process could not start: the error goes on the error channel.
		s.sendStatus()
		s.closeAndWait()
		wg.Wait()
		return
	}

	if s.Stdout || s.TTY {
		pumps.Add(1)
		go func() { defer pumps.Done(); s.pump(s.proc.stdout, execproto.StreamStdout, s.Stdout) }()
	}
	if !s.TTY {
		pumps.Add(1)
		go func() { defer pumps.Done(); s.pump(s.proc.stderr, execproto.StreamStderr, s.Stderr) }()
	}
	if !s.Stdin {
		s.proc.closeStdin()
	}

	select {
	case <-s.proc.done:
		s.exited("process exited")
		pumps.Wait()
		s.sendStatus()
		s.closeAndWait()
	case <-s.wsDone:
		s.disconnected()
		<-s.proc.done
		s.exited("orphan exited")
	case <-ctx.Done():
	}
	s.proc.release()
	pumps.Wait()
	s.endWS("server shutting down")
	wg.Wait()
}

// exited records the process's exit and bounds the wait for its last
// output: a background child may hold the output open forever.
func (s *Session) exited(what string) {
	s.mu.Lock()
	s.exitAt = time.Since(s.Started)
	s.mu.Unlock()
	s.log.Debug(what, "code", s.proc.exitCode)
	deadline := time.Now().Add(s.srv.cfg.DrainTimeout)
	_ = s.proc.stdout.SetReadDeadline(deadline)
	if s.proc.stderr != nil {
		_ = s.proc.stderr.SetReadDeadline(deadline)
	}
}

// disconnected applies the runtime semantics to a live process whose
// WebSocket has ended.
func (s *Session) disconnected() {
	select {
	case <-s.proc.done:
		return
	default:
	}
	switch s.srv.cfg.Semantics {
	case HangupOnDisconnect:
		s.log.Debug("disconnect: hanging up")
		s.proc.hangup()
	default:
		s.log.Debug("disconnect: closing stdin; a tty keeps its pty open")
		s.proc.closeStdin()
	}
}

// pump copies the process's output to the client on stream (when the
// client asked for it) and, once the WebSocket has ended, discards it so
// that the process never blocks on a full pipe or pty.
func (s *Session) pump(f *os.File, stream byte, forward bool) {
	buf := make([]byte, 32*1024)
	for {
		n, err := f.Read(buf)
		if n > 0 && forward {
			data := append([]byte(nil), buf[:n]...)
			if !s.send(stream, data) {
				s.mu.Lock()
				s.outputsAfter += int64(n)
				s.mu.Unlock()
			}
		}
		if err != nil {
			return
		}
	}
}

// send queues data on stream for the writer; it reports false (and drops
// the data) when the WebSocket has ended.
func (s *Session) send(stream byte, data []byte) bool {
	typ, payload := execproto.Encode(s.Protocol, stream, data)
	select {
	case s.out <- wsMsg{typ: typ, data: payload}:
		return true
	case <-s.wsDone:
		return false
	}
}

// sendStatus writes the process's status on the error channel.
func (s *Session) sendStatus() {
	var st execproto.Status
	if s.proc == nil {
		st = execproto.InternalError(errors.New(s.startErr))
	} else {
		st = execproto.ExitStatus(s.Command, s.proc.exitCode)
	}
	s.mu.Lock()
	s.status = &st
	s.mu.Unlock()
	if b := execproto.EncodeStatus(s.Protocol, st); b != nil {
		s.send(execproto.StreamError, b)
	}
}

// closeAndWait starts the close handshake from the server's side (code
// 1000) and waits, bounded by CloseTimeout, for the client's reply; the
// reader then closes the connection.
func (s *Session) closeAndWait() {
	ack := make(chan error, 1)
	select {
	case s.out <- wsMsg{typ: websocket.CloseMessage, data: websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), ack: ack}:
	case <-s.wsDone:
		return
	}
	select {
	case <-ack:
	case <-s.wsDone:
		return
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.CloseTimeout))
	<-s.wsDone
}

// writer is the only goroutine that writes data and close frames to the
// connection (gorilla's pong replies use WriteControl, which may run
// concurrently with it).
func (s *Session) writer() {
	for {
		select {
		case m := <-s.out:
			var err error
			if m.typ == websocket.CloseMessage {
				err = s.conn.WriteControl(websocket.CloseMessage, m.data, time.Now().Add(s.srv.cfg.CloseTimeout))
				s.sentOnce.Do(func() { close(s.closeSent) })
			} else {
				err = s.conn.WriteMessage(m.typ, m.data)
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
func (s *Session) reader() {
	reason := s.readLoop()
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
		case <-s.closeSent:
		default:
			ack := make(chan error, 1)
			select {
			case s.out <- wsMsg{typ: websocket.CloseMessage, data: websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), ack: ack}:
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

func (s *Session) readLoop() error {
	for {
		fragmentsBefore := s.rec.fragments()
		mt, data, err := s.conn.ReadMessage()
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

func (s *Session) dispatch(f *execproto.Frame) {
	switch f.Stream {
	case execproto.StreamStdin:
		if s.proc == nil || !s.Stdin {
			s.rec.protocolError("stdin data on a session without stdin")
			return
		}
		s.mu.Lock()
		closed := s.stdinClosed
		s.mu.Unlock()
		if closed {
			s.rec.protocolError("stdin data after stdin was closed")
			return
		}
		// Like wsstream's pipe, this blocks while the process does not read.
		if _, err := s.proc.stdin.Write(f.Data); err != nil {
			s.rec.protocolError("write to process stdin: " + err.Error())
		}
	case execproto.StreamResize:
		var size execproto.TerminalSize
		if err := json.Unmarshal(f.Data, &size); err != nil {
			s.rec.protocolError("resize: " + err.Error())
			return
		}
		s.mu.Lock()
		s.resizes = append(s.resizes, size)
		s.mu.Unlock()
		if s.proc != nil && s.TTY {
			if err := setSize(s.proc.pty, size.Width, size.Height); err != nil {
				s.rec.protocolError("resize: " + err.Error())
			}
		}
	case execproto.StreamClose:
		if f.Data[0] == execproto.StreamStdin && s.proc != nil {
			s.mu.Lock()
			s.stdinClosed = true
			s.mu.Unlock()
			s.proc.closeStdin()
		}
	default:
		s.ignored(&s.badInput.ServerChannel,
			fmt.Sprintf("client wrote on channel %d (%s), which only the server writes", f.Stream, channelName(int(f.Stream))))
	}
}

// compact lets go of what only the running session needed, once run has
// returned: the connection and its buffers (most of a session's memory)
// and the queue of messages never written. The session stays a record.
func (s *Session) compact() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn, s.tap, s.out = nil, nil, nil
}

// endWS marks the WebSocket as ended, once.
func (s *Session) endWS(reason string) {
	s.wsOnce.Do(func() {
		s.mu.Lock()
		s.endReason = reason
		s.endAt = time.Since(s.Started)
		s.mu.Unlock()
		s.log.Debug("websocket ended", "reason", reason)
		close(s.wsDone)
	})
}

// SessionInfo is the JSON view of a session for the control API and reports.
type SessionInfo struct {
	ID string `json:"id"`
	// Seq is the session's place in the order the server registered them,
	// from 1: the control API's list pages by it (?after=).
	Seq       int64     `json:"seq"`
	Namespace string    `json:"namespace"`
	Pod       string    `json:"pod"`
	Container string    `json:"container,omitempty"`
	Command   []string  `json:"command"`
	Offered   []string  `json:"offered,omitempty"` // the offer the server negotiated over (through a real cluster's relay: as the target sent it), redacted
	Protocol  string    `json:"protocol"`
	TTY       bool      `json:"tty"`
	Stdin     bool      `json:"stdin"`
	Stdout    bool      `json:"stdout"`
	Stderr    bool      `json:"stderr"`
	PID       int       `json:"pid"`
	StartErr  string    `json:"start_error,omitempty"`
	Started   time.Time `json:"started"`
	// Ended: the WebSocket ended, with the reason the server saw, at EndedAt since Started.
	Ended     bool          `json:"ws_ended"`
	EndReason string        `json:"ws_end_reason,omitempty"`
	EndedAt   time.Duration `json:"ws_ended_at_ns,omitempty"`
	// Exited: the process was reaped, with its code, at ExitedAt since Started.
	Exited   bool              `json:"exited"`
	ExitCode int               `json:"exit_code"`
	ExitedAt time.Duration     `json:"exited_at_ns,omitempty"`
	Status   *execproto.Status `json:"status_sent,omitempty"`
	// StdinClosed: the client half-closed stdin (v5 CLOSE signal).
	StdinClosed bool                     `json:"stdin_closed,omitempty"`
	Resizes     []execproto.TerminalSize `json:"resizes,omitempty"`
	// DiscardedOutput: output bytes read from the process after the WebSocket ended.
	DiscardedOutput int64 `json:"discarded_output_bytes,omitempty"`
	// BadInput: the client's messages the server ignored, by kind.
	BadInput BadInput `json:"bad_input,omitzero"`
	// Live: the session's processes alive in the process table when the view was taken.
	Live   []proctable.Proc `json:"live"`
	Record Record           `json:"record,omitzero"`
}

// Info takes a view of the session, with its live processes read from the
// process table now.
func (s *Session) Info(ctx context.Context) (SessionInfo, error) {
	info := s.view()
	if s.proc != nil {
		live, err := s.Live(ctx)
		if err != nil {
			return info, err
		}
		info.Live = live
	}
	return info, nil
}

// infoFrom is Info with the live processes picked from procs, one scan
// for many sessions.
func (s *Session) infoFrom(procs []proctable.Proc) SessionInfo {
	info := s.view()
	if s.proc != nil {
		m := s.match()
		for _, p := range procs {
			if p.Live() && m.Matches(p) {
				info.Live = append(info.Live, p)
			}
		}
	}
	return info
}

// view is the session's info without its live processes.
func (s *Session) view() SessionInfo {
	s.mu.Lock()
	info := SessionInfo{
		ID: s.ID, Seq: s.seq, Namespace: s.Namespace, Pod: s.Pod, Container: s.Container,
		Command: s.Command, Offered: s.Offered, Protocol: s.Protocol.String(), TTY: s.TTY,
		Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, PID: s.PID(),
		StartErr: s.startErr, Started: s.Started,
		EndReason: s.endReason, EndedAt: s.endAt, ExitedAt: s.exitAt,
		Status: s.status, StdinClosed: s.stdinClosed,
		Resizes:         append([]execproto.TerminalSize(nil), s.resizes...),
		DiscardedOutput: s.outputsAfter, BadInput: s.badInput,
	}
	s.mu.Unlock()
	select {
	case <-s.wsDone:
		info.Ended = true
	default:
	}
	if s.proc != nil {
		select {
		case <-s.proc.done:
			info.Exited, info.ExitCode = true, s.proc.exitCode
		default:
		}
	}
	info.Record = s.rec.Snapshot()
	return info
}
