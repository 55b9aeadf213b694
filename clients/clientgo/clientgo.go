// Package clientgo drives exec sessions with client-go's remotecommand
// executors, as kubectl and every translating terminal run them: the
// fallback executor (WebSocket v5, then SPDY on an upgrade failure) for a
// WebSocket case, the SPDY executor for a SPDY case. Each session is a
// process of its own (this binary, started again as the client: see
// childEnv), so that it can be killed for real; its stdin, stdout and
// stderr are the executor's.
package clientgo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/proctable"
	"github.com/execconform/execconform/scenarios"
)

// Dialer starts client-go sessions.
type Dialer struct{}

// New returns a Dialer. The client processes are this executable: any
// program or test binary that imports this package can be one.
func New() *Dialer { return &Dialer{} }

// Client is scenarios.ClientGo.
func (*Dialer) Client() scenarios.Client { return scenarios.ClientGo }

// Close does nothing: every session releases its own process.
func (*Dialer) Close() error { return nil }

// Dial starts the client process on req's exec and returns once it runs
// (the executor's upgrade is not visible from outside it: the harness
// finds the backend session).
func (d *Dialer) Dial(ctx context.Context, req clients.Request) (clients.Session, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	tty := req.Case.TTY
	er := execproto.ExecRequest{Namespace: req.Namespace, Pod: req.Pod, Container: req.Container, Command: req.Command,
		Stdin: true, Stdout: true, Stderr: !tty, TTY: tty}
	u := *req.Front
	base := u.String()
	u.Path = strings.TrimSuffix(u.Path, "/") + er.Path()
	u.RawPath = ""
	u.RawQuery = er.Query().Encode()
	r := request{ExecURL: u.String(), Host: base, Executor: "fallback", TTY: tty}
	if req.Case.SPDY() {
		r.Executor = "spdy"
	}
	if tok, ok := req.FrontBearer(); ok {
		r.Token = tok
	}
	if req.Front.Scheme == "https" {
		switch {
		case req.TLS != nil && req.TLS.InsecureSkipVerify:
			r.Insecure = true
		case len(req.FrontCA) > 0:
			r.CAData = req.FrontCA
		case req.TLS != nil && req.TLS.RootCAs != nil:
			// client-go takes PEM, and a pool does not give its CAs back.
			return nil, fmt.Errorf("clientgo: an https front needs its CA as PEM (Request.FrontCA): %w", errors.ErrUnsupported)
		}
	}
	line, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	s := &session{req: req, started: time.Now(), ctl: ctlW, done: make(chan struct{}), exit: make(chan event, 1),
		log: req.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1",
		proctable.SessionEnv+"=clientgo-"+strconv.Itoa(os.Getpid()),
		proctable.ServerPIDEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.ExtraFiles = []*os.File{ctlR, evW}
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		ctlR.Close()
		ctlW.Close()
		evR.Close()
		evW.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		ctlR.Close()
		ctlW.Close()
		evR.Close()
		evW.Close()
		return nil, fmt.Errorf("clientgo: start the client process: %w", err)
	}
	ctlR.Close()
	evW.Close()
	s.cmd = cmd
	if _, err := ctlW.Write(append(line, '\n')); err != nil {
		s.Release()
		evR.Close()
		return nil, fmt.Errorf("clientgo: the client process took no request: %w", err)
	}
	go s.readEvents(evR)
	go s.wait()
	return s, nil
}

// session is one client process.
type session struct {
	req     clients.Request
	started time.Time
	log     *slog.Logger
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	out     clients.Output

	ctlMu sync.Mutex
	ctl   *os.File

	exit chan event // the executor's result, once
	done chan struct{}

	mu      sync.Mutex
	result  *event
	end     execclient.End
	stdinMu sync.Mutex
	release sync.Once
}

func (s *session) readEvents(r *os.File) {
	defer r.Close()
	b, _ := io.ReadAll(io.LimitReader(r, 1<<16))
	var ev event
	if json.Unmarshal(bytes.TrimSpace(b), &ev) == nil && ev.Event == "" {
		ev.Event = "exit"
	}
	if len(bytes.TrimSpace(b)) > 0 {
		s.exit <- ev
	}
	close(s.exit)
}

// wait reaps the process and records the end.
func (s *session) wait() {
	err := s.cmd.Wait()
	ev, got := <-s.exit
	s.mu.Lock()
	e := execclient.End{ServerCloseCode: -1, At: time.Since(s.started)}
	switch {
	case got:
		s.result = &ev
		if ev.Err != "" {
			e.Err = errors.New("client-go: " + ev.Err)
		}
	case err != nil:
		e.Err = fmt.Errorf("client-go process: %w (%q)", err, s.out.String())
	default:
		e.Err = errors.New("client-go process ended without a result")
	}
	s.end = e
	s.mu.Unlock()
	s.out.End()
	s.ctlMu.Lock()
	s.ctl.Close()
	s.ctlMu.Unlock()
	close(s.done)
}

func (s *session) Transport() execproto.Transport {
	if s.req.Case.SPDY() {
		return execproto.TransportSPDY
	}
	return execproto.TransportWebSocket
}

// Protocol is "": the executor does not tell; the backend does.
func (s *session) Protocol() execproto.Protocol { return "" }
func (s *session) Response() *http.Response     { return nil }
func (s *session) Started() time.Time           { return s.started }
func (s *session) Done() <-chan struct{}        { return s.done }

func (s *session) End() execclient.End {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

func (s *session) Close(context.Context, int, string) (*execclient.CloseResult, error) {
	return nil, clients.Unsupported(scenarios.ClientGo, "start a close handshake")
}

// signal sends sig to the client's process group.
func (s *session) signal(sig syscall.Signal) error {
	select {
	case <-s.done:
		return execclient.ErrEnded
	default:
	}
	return syscall.Kill(-s.cmd.Process.Pid, sig)
}

// AbortTCP kills the client: the kernel closes its socket with a FIN.
func (s *session) AbortTCP() error { return s.signal(syscall.SIGKILL) }

// Reset kills the client too: client-go cannot reset on demand.
func (s *session) Reset() error { return s.signal(syscall.SIGKILL) }

// Freeze stops the client's process: it reads nothing more.
func (s *session) Freeze() { _ = s.signal(syscall.SIGSTOP) }

func (s *session) Send(stream byte, data []byte) error {
	if stream != execproto.StreamStdin {
		return clients.Unsupported(scenarios.ClientGo, fmt.Sprintf("write on stream %d", stream))
	}
	s.stdinMu.Lock()
	defer s.stdinMu.Unlock()
	_, err := s.stdin.Write(data)
	return err
}

func (s *session) Type(text string) error { return s.Send(execproto.StreamStdin, []byte(text)) }

func (s *session) control(c control) error {
	b, _ := json.Marshal(c)
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	_, err := s.ctl.Write(append(b, '\n'))
	return err
}

func (s *session) Resize(w, h uint16) error {
	if !s.req.Case.TTY {
		return clients.Unsupported(scenarios.ClientGo, "resize a session without a tty")
	}
	return s.control(control{Op: "resize", Width: w, Height: h})
}

// CloseStdin ends the executor's stdin: it half-closes the stdin stream
// (the v5 CLOSE signal, a SPDY FIN).
func (s *session) CloseStdin() error {
	s.stdinMu.Lock()
	defer s.stdinMu.Unlock()
	return s.stdin.Close()
}

func (s *session) Expect(ctx context.Context, substr string) error { return s.out.Expect(ctx, substr) }
func (s *session) Output() string                                  { return s.out.String() }

// Status is the exec's status from the executor's result: success, or
// the exit code it carried.
func (s *session) Status(ctx context.Context) (execproto.Status, bool, error) {
	select {
	case <-s.done:
	case <-ctx.Done():
		return execproto.Status{}, false, fmt.Errorf("clientgo: Status: %w", ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.result == nil || s.result.Code < 0 {
		return execproto.Status{}, false, nil
	}
	return execproto.ExitStatus(s.req.Command, s.result.Code), true, nil
}

// EndAs: sigkill, sigterm (Go's default: the process ends at once), or
// context-cancel (the executor's context).
func (s *session) EndAs(_ context.Context, ending string) error {
	switch ending {
	case scenarios.OwnSIGKILL:
		return s.signal(syscall.SIGKILL)
	case scenarios.OwnSIGTERM:
		return s.signal(syscall.SIGTERM)
	case scenarios.OwnContextCancel:
		return s.control(control{Op: "cancel"})
	}
	return clients.Unsupported(scenarios.ClientGo, "end by "+ending)
}

// Release kills the process (if it still runs) and waits for it.
func (s *session) Release() {
	s.release.Do(func() {
		_ = s.signal(syscall.SIGKILL) // not once reaped: its group may be another's by then
		<-s.done
	})
}
