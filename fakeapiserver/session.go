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

// Session is one exec request: a connection (a WebSocket, or SPDY streams)
// and the real process it started.
type Session struct {
	ID        string
	Namespace string
	Pod       string
	Container string
	Command   []string
	// Offered is the client's offer as the server read it (Offered, after
	// authentication took a bearer-token subprotocol out), redacted.
	Offered []string
	// Transport is how the session's streams travel: WebSocket or SPDY.
	Transport execproto.Transport
	// Protocol is the negotiated version: the WebSocket subprotocol, or
	// over SPDY the X-Stream-Protocol-Version.
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
	t    transport
	tap  *tapConn

	wsDone   chan struct{} // the connection (WebSocket or SPDY) has ended
	wsOnce   sync.Once
	finished chan struct{} // process reaped and connection closed
	noStatus bool          // the session never writes a status (SPDY: its streams never came)

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

// transport is a session's connection to its client as the run loop
// sees it, whatever carries the streams: wsConn (ws.go) or spdyConn
// (spdy.go). Both end the connection with Session.endWS, which closes
// Session.Done.
type transport interface {
	// start starts the goroutines that serve the connection, counted in
	// wg; they return once the connection has ended (Done is closed).
	start(wg *sync.WaitGroup)
	// established tells the client that the session is established.
	established()
	// send writes data on an exec stream; false (the data dropped) once
	// the connection has ended.
	send(stream byte, data []byte) bool
	// closeAndWait ends the connection from the server's side and waits,
	// bounded by CloseTimeout, until it has ended.
	closeAndWait()
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
	// UnknownStream (SPDY): a stream whose streamType header names no
	// stream of the negotiated version; the kubelet logs "unexpected
	// stream type" and never reads it.
	UnknownStream int64 `json:"unknown_stream,omitempty"`
	// DuplicateStream (SPDY): a second stream of a type the client
	// created already; the kubelet takes the later one and never reads
	// the earlier.
	DuplicateStream int64 `json:"duplicate_stream,omitempty"`
	// LateStream (SPDY): a stream created after the server stopped
	// waiting for streams; reset (see spdy.go).
	LateStream int64 `json:"late_stream,omitempty"`
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
	s.t.start(&wg)
	s.t.established()

	if s.proc == nil {
		// The process could not start: the error goes on the error channel.
		s.sendStatus()
		s.t.closeAndWait()
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
		s.t.closeAndWait()
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

// send writes data on stream; false (the data dropped) once the
// connection has ended.
func (s *Session) send(stream byte, data []byte) bool { return s.t.send(stream, data) }

// sendStatus writes the process's status on the error channel.
func (s *Session) sendStatus() {
	if s.noStatus {
		return
	}
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

func (s *Session) dispatch(f *execproto.Frame) {
	switch f.Stream {
	case execproto.StreamStdin:
		if s.proc == nil || !s.Stdin {
			s.rec.protocolError("stdin data on a session without stdin")
			return
		}
		s.writeStdin(f.Data)
	case execproto.StreamResize:
		var size execproto.TerminalSize
		if err := json.Unmarshal(f.Data, &size); err != nil {
			s.rec.protocolError("resize: " + err.Error())
			return
		}
		s.resize(size)
	case execproto.StreamClose:
		if f.Data[0] == execproto.StreamStdin && s.proc != nil {
			s.closeStdinByClient()
		}
	default:
		s.ignored(&s.badInput.ServerChannel,
			fmt.Sprintf("client wrote on channel %d (%s), which only the server writes", f.Stream, channelName(int(f.Stream))))
	}
}

// writeStdin writes the client's stdin data to the process; s.proc is
// set. Like wsstream's pipe (and the runtime's copy of a SPDY stdin
// stream), this blocks while the process does not read.
func (s *Session) writeStdin(data []byte) {
	s.mu.Lock()
	closed := s.stdinClosed
	s.mu.Unlock()
	if closed {
		s.rec.protocolError("stdin data after stdin was closed")
		return
	}
	if _, err := s.proc.stdin.Write(data); err != nil {
		s.rec.protocolError("write to process stdin: " + err.Error())
	}
}

// resize records a terminal size the client sent and applies it to a tty.
func (s *Session) resize(size execproto.TerminalSize) {
	s.mu.Lock()
	s.resizes = append(s.resizes, size)
	s.mu.Unlock()
	if s.proc != nil && s.TTY {
		if err := setSize(s.proc.pty, size.Width, size.Height); err != nil {
			s.rec.protocolError("resize: " + err.Error())
		}
	}
}

// closeStdinByClient applies the client's half-close of stdin (a v5 CLOSE
// signal, a FIN on a SPDY stdin stream): the process's stdin ends, which
// on a tty keeps the pty open; s.proc is set.
func (s *Session) closeStdinByClient() {
	s.mu.Lock()
	s.stdinClosed = true
	s.mu.Unlock()
	s.proc.closeStdin()
}

// compact lets go of what only the running session needed, once run has
// returned: the connection and its buffers (most of a session's memory)
// and the queue of messages never written. The session stays a record.
func (s *Session) compact() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t, s.tap = nil, nil
}

// endWS marks the WebSocket as ended, once.
func (s *Session) endWS(reason string) {
	s.wsOnce.Do(func() {
		s.mu.Lock()
		s.endReason = reason
		s.endAt = time.Since(s.Started)
		s.mu.Unlock()
		if s.Transport == execproto.TransportSPDY {
			s.log.Debug("connection ended", "reason", reason)
		} else {
			s.log.Debug("websocket ended", "reason", reason)
		}
		close(s.wsDone)
	})
}

// SessionInfo is the JSON view of a session for the control API and reports.
type SessionInfo struct {
	ID string `json:"id"`
	// Seq is the session's place in the order the server registered them,
	// from 1: the control API's list pages by it (?after=).
	Seq       int64    `json:"seq"`
	Namespace string   `json:"namespace"`
	Pod       string   `json:"pod"`
	Container string   `json:"container,omitempty"`
	Command   []string `json:"command"`
	Offered   []string `json:"offered,omitempty"` // the offer the server negotiated over (through a real cluster's relay: as the target sent it), redacted
	// Transport is "websocket" or "spdy" (always set).
	Transport string `json:"transport"`
	// Protocol is the negotiated version: the WebSocket subprotocol, or over SPDY the X-Stream-Protocol-Version.
	Protocol string    `json:"protocol"`
	TTY      bool      `json:"tty"`
	Stdin    bool      `json:"stdin"`
	Stdout   bool      `json:"stdout"`
	Stderr   bool      `json:"stderr"`
	PID      int       `json:"pid"`
	StartErr string    `json:"start_error,omitempty"`
	Started  time.Time `json:"started"`
	// Ended: the WebSocket ended, with the reason the server saw, at EndedAt since Started.
	Ended     bool          `json:"ws_ended"`
	EndReason string        `json:"ws_end_reason,omitempty"`
	EndedAt   time.Duration `json:"ws_ended_at_ns,omitempty"`
	// Exited: the process was reaped, with its code, at ExitedAt since Started.
	Exited   bool              `json:"exited"`
	ExitCode int               `json:"exit_code"`
	ExitedAt time.Duration     `json:"exited_at_ns,omitempty"`
	Status   *execproto.Status `json:"status_sent,omitempty"`
	// StdinClosed: the client half-closed stdin (v5 CLOSE signal, or a FIN on the SPDY stdin stream).
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
		Command: s.Command, Offered: s.Offered, Transport: s.Transport.String(), Protocol: s.Protocol.String(), TTY: s.TTY,
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
