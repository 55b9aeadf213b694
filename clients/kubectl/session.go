package kubectl

import (
	"github.com/execconform/execconform/internal/changes"

	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/proctable"
	"github.com/execconform/execconform/scenarios"
)

// Verbosity is kubectl's -v: 6 logs every request with its answer (the
// exec upgrade's 101 included) and nothing of its headers.
const Verbosity = 6

// Sizes of what a session keeps.
const (
	stderrTail = 10              // kubectl's last stderr lines, for End.Err
	logTail    = 20              // its last log lines
	drainWait  = 2 * time.Second // for the output after kubectl has exited
)

// InitialSize is the size of a tty session's terminal until Resize.
var InitialSize = struct{ Cols, Rows uint16 }{80, 24}

// ExitError is End().Err of a session whose kubectl did not exit 0.
type ExitError struct {
	// Code is kubectl's exit code, -1 if a signal killed it.
	Code int
	// Signal is the signal that killed it ("" if none).
	Signal string
	// Stderr are its last stderr lines that are not log lines.
	Stderr []string
	// Log are its last log lines (-v=6).
	Log []string
	// By is what the session did to end it ("AbortTCP", "sigterm", ...;
	// "" if nothing: kubectl ended by itself).
	By string
}

func (e *ExitError) Error() string {
	how := fmt.Sprintf("kubectl exited with code %d", e.Code)
	if e.Signal != "" {
		how = "kubectl was killed by " + e.Signal
	}
	if e.By != "" {
		how += " (after " + e.By + ")"
	}
	if len(e.Stderr) == 0 {
		return how + "; nothing on stderr"
	}
	return fmt.Sprintf("%s; its last stderr lines: %q", how, e.Stderr)
}

// Unwrap gives execclient.ErrAborted after AbortTCP and
// execclient.ErrReset after Reset, as the emulator's End.Err would.
func (e *ExitError) Unwrap() error {
	switch e.By {
	case "AbortTCP":
		return execclient.ErrAborted
	case "Reset":
		return execclient.ErrReset
	}
	return nil
}

// session is one kubectl exec.
type session struct {
	req     clients.Request
	log     *slog.Logger
	dir     string
	cmd     *exec.Cmd
	started time.Time

	ptmx  *os.File // tty: the pty master (nil once terminal-closed)
	stdin *os.File // notty: the write end of kubectl's stdin

	// up is closed when the exec upgrade was answered with 101 and how
	// (transport, protocol) is known, or kubectl exited first.
	up        chan struct{}
	upOnce    sync.Once
	readers   sync.WaitGroup
	exited    chan struct{} // kubectl reaped
	done      chan struct{} // reaped and its output read
	release   sync.Once
	ptmxClose sync.Once

	mu        sync.Mutex
	changes   changes.Changes // wakes the waiters on every change of the guarded fields
	out       []byte          // the tail of the output
	outTotal  int64
	cursor    int64
	transport execproto.Transport
	protocol  execproto.Protocol
	upgraded  bool       // the exec upgrade got its 101
	wsUp      bool       // a WebSocket 101: the next log line tells the subprotocol
	refused   []response // exec upgrades answered otherwise, in order
	failed    []response // other requests answered with an error status, in order
	prompted  bool       // kubectl asked for a user name before its upgrade
	stderr    []string   // the last stderr lines
	logLines  []string   // the last log lines
	by        string     // what the session did to end kubectl
	ended     bool       // done is closed; end is final
	end       execclient.End
	state     *os.ProcessState
	exitCode  int // kubectl's exit code, -1 for a signal
	exitLine  string
}

// Dial starts kubectl exec for req and returns once its exec upgrade was
// answered with 101 (read from its -v=6 log), or the error that kept it
// from being up: a *execclient.HandshakeError when kubectl logged a
// refused upgrade (a WebSocket refusal is followed by kubectl's own SPDY
// fallback, which may still succeed), else kubectl's exit.
func (d *Dialer) Dial(ctx context.Context, req clients.Request) (clients.Session, error) {
	if len(req.Command) == 0 {
		return nil, errors.New("kubectl: no command to exec")
	}
	if req.Front == nil {
		return nil, errors.New("kubectl: no front URL")
	}
	log := d.log
	if req.Logger != nil {
		log = req.Logger.With("component", "kubectl")
	}
	log = log.With("case", caseName(req.Case), "container", req.Container)
	if h := unsentHeaders(req); len(h) > 0 {
		log.Info("kubectl sends only a bearer token: these headers are not sent", "headers", h)
	}
	dir, err := proctable.MkdirTemp("kubectl")
	if err != nil {
		return nil, fmt.Errorf("kubectl: %w", err)
	}
	s := &session{
		req: req, log: log, dir: dir, started: time.Now(),
		up: make(chan struct{}), exited: make(chan struct{}), done: make(chan struct{}),
		transport: req.Case.Transport, exitCode: -1,
		end: execclient.End{ServerCloseCode: -1},
	}
	if s.transport == "" {
		s.transport = execproto.TransportWebSocket
	}
	kc, err := d.writeKubeconfig(ctx, dir, req)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := s.start(d.bin, kc); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	select {
	case <-s.up:
	case <-ctx.Done():
		s.Release()
		out := s.Output()
		if len(out) > 512 {
			out = out[len(out)-512:]
		}
		return nil, fmt.Errorf("kubectl: waiting for the exec upgrade: %w; %s; output tail: %q", ctx.Err(), s.stderrWords(), out)
	}
	s.mu.Lock()
	upgraded, refused, failed, prompted := s.upgraded, slices.Clone(s.refused), slices.Clone(s.failed), s.prompted
	s.mu.Unlock()
	if upgraded {
		return s, nil
	}
	<-s.done // up without an upgrade: kubectl has exited
	end := s.End()
	s.Release()
	if prompted {
		why := "kubectl has no credentials in its kubeconfig (the run's headers have no \"Authorization: Bearer\", the only credential kubectl can send)"
		if len(failed) > 0 {
			f := failed[len(failed)-1]
			why = fmt.Sprintf("the front refused kubectl's credentials (GET %s: %d)", f.url, f.status)
		}
		return nil, fmt.Errorf("kubectl: %s, and it asked for a user name and password (%q): it was stopped", why, strings.TrimSpace(userPrompt))
	}
	if len(refused) > 0 {
		r := refused[len(refused)-1]
		return nil, &execclient.HandshakeError{StatusCode: r.status, Header: http.Header{}, Body: strings.Join(exitErrorLines(end.Err), "\n")}
	}
	return nil, fmt.Errorf("kubectl: exited before its exec upgrade was answered: %v", end.Err)
}

// caseName is c's name, "" for a case of no scenario.
func caseName(c scenarios.Case) string {
	if c.Scenario == nil {
		return ""
	}
	return c.Name()
}

// exitErrorLines are the stderr lines of an *ExitError.
func exitErrorLines(err error) []string {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Stderr
	}
	return nil
}

// args is kubectl's command line: exec with stdin, a tty for a tty case.
func (s *session) args() []string {
	ns := s.req.Namespace
	if ns == "" {
		ns = "default"
	}
	a := []string{"exec", "-v=" + strconv.Itoa(Verbosity), "-i"}
	if s.req.Case.TTY {
		a = append(a, "-t")
	}
	a = append(a, "-n", ns, s.req.Pod)
	if s.req.Container != "" {
		a = append(a, "-c", s.req.Container)
	}
	return append(append(a, "--"), s.req.Command...)
}

// env is kubectl's environment: ours, without what would make it read
// another kubeconfig, cache or preferences file, or choose its
// transport, then its own HOME (its discovery cache is the session's:
// every session reads discovery as a first run does), kubeconfig, no
// kuberc, WebSockets off for a SPDY case, and the tags that let the
// process table attribute it to this process (reap finds it if we die).
func (s *session) env(kubeconfig string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "KUBECONFIG", name == "HOME", name == "KUBERC", name == "KUBECACHEDIR",
			strings.HasPrefix(name, "KUBECTL_"), name == proctable.SessionEnv, name == proctable.ServerPIDEnv:
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+s.dir, "KUBECONFIG="+kubeconfig, "KUBERC=off",
		proctable.SessionEnv+"=kubectl:"+caseName(s.req.Case)+"/"+s.req.Container,
		proctable.ServerPIDEnv+"="+strconv.Itoa(os.Getpid()))
	if s.req.Case.Transport == execproto.TransportSPDY {
		// kubectl's switch (k8s.io/kubectl pkg/cmd/util, RemoteCommandWebsockets).
		env = append(env, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false")
	}
	if s.req.Case.TTY && os.Getenv("TERM") == "" {
		env = append(env, "TERM=xterm")
	}
	return env
}

// start starts kubectl: on a pty for a tty case (stdin and stdout, a
// session of its own with the pty as its controlling terminal, as a
// shell's job in a terminal window), on pipes otherwise (a process
// group of its own); stderr is a pipe. Pdeathsig kills it with us.
func (s *session) start(bin, kubeconfig string) error {
	cmd := exec.Command(bin, s.args()...)
	cmd.Dir = s.dir
	cmd.Env = s.env(kubeconfig)
	errR, errW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("kubectl: %w", err)
	}
	cmd.Stderr = errW
	var outR *os.File
	var childFiles []*os.File // closed in the parent after the start
	childFiles = append(childFiles, errW)
	if s.req.Case.TTY {
		ptmx, tty, err := pty.Open()
		if err == nil {
			ptmx, err = pollable(ptmx)
		}
		if err != nil {
			closeFiles(errR, errW, tty)
			return fmt.Errorf("kubectl: pty: %w", err)
		}
		if err := setSize(ptmx, InitialSize.Cols, InitialSize.Rows); err != nil {
			closeFiles(errR, errW, ptmx, tty)
			return fmt.Errorf("kubectl: pty size: %w", err)
		}
		cmd.Stdin, cmd.Stdout = tty, tty
		// Setsid makes kubectl the leader of its own session and process
		// group (what Setpgid does for a notty one), so that closing the
		// master hangs its terminal up as a closed window does.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Pdeathsig: syscall.SIGKILL}
		s.ptmx, outR = ptmx, ptmx
		childFiles = append(childFiles, tty)
	} else {
		inR, inW, err := os.Pipe()
		if err != nil {
			closeFiles(errR, errW)
			return fmt.Errorf("kubectl: %w", err)
		}
		r, w, err := os.Pipe()
		if err != nil {
			closeFiles(errR, errW, inR, inW)
			return fmt.Errorf("kubectl: %w", err)
		}
		cmd.Stdin, cmd.Stdout = inR, w
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		s.stdin, outR = inW, r
		childFiles = append(childFiles, inR, w)
	}
	s.cmd = cmd
	if err := cmd.Start(); err != nil {
		closeFiles(childFiles...)
		closeFiles(errR, outR, s.stdin)
		return fmt.Errorf("kubectl: start %s: %w", bin, err)
	}
	closeFiles(childFiles...)
	s.log.Debug("kubectl started", "pid", cmd.Process.Pid, "args", cmd.Args[1:])

	split := newStderrSplitter(s.addOutput, s.addStderrLine, s.addLogLine)
	s.readers.Add(2)
	go s.read(outR, s.addOutput, nil, !s.req.Case.TTY)
	go s.read(errR, split.write, split.close, true)
	go s.wait()
	return nil
}

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			_ = f.Close()
		}
	}
}

// read copies f to add until it ends (EOF; EIO on a pty master once
// nobody holds the terminal; a closed master after terminal-closed),
// and closes f if owned (the master is closePtmx's).
func (s *session) read(f *os.File, add func([]byte), end func(), owned bool) {
	defer s.readers.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			add(buf[:n])
		}
		if err != nil {
			break
		}
	}
	if end != nil {
		end()
	}
	if owned {
		_ = f.Close()
	}
}

// pollable returns the pty master as a non-blocking file in Go's poller:
// creack/pty's ioctls call Fd(), which leaves it blocking, and then
// Close would wait for a pending Read (terminal-closed would never
// close it) and nothing would interrupt that Read.
func pollable(f *os.File) (*os.File, error) {
	fd, err := unix.Dup(int(f.Fd()))
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("dup the master: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), nil
}

// setSize sets the pty's size through the poller's descriptor (Fd()
// would make the master blocking again, see pollable).
func setSize(f *os.File, cols, rows uint16) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	if err := sc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	}); err != nil {
		return err
	}
	return ioErr
}

// wait reaps kubectl, then waits (bounded) for its output, and ends the session.
func (s *session) wait() {
	err := s.cmd.Wait()
	close(s.exited)
	drained := make(chan struct{})
	go func() { s.readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainWait):
		// Something else holds kubectl's terminal or pipes: stop reading.
		s.closePtmx()
	}
	s.mu.Lock()
	s.state = s.cmd.ProcessState
	s.end.At = time.Since(s.started)
	ws, _ := s.state.Sys().(syscall.WaitStatus)
	code := s.state.ExitCode()
	s.exitCode = code
	if code != 0 {
		ee := &ExitError{Code: code, Stderr: slices.Clone(s.stderr), Log: slices.Clone(s.logLines), By: s.by}
		if ws.Signaled() {
			ee.Signal = ws.Signal().String()
		}
		s.end.Err = ee
	}
	s.ended = true
	s.notify()
	s.mu.Unlock()
	s.log.Debug("kubectl exited", "code", code, "err", err, "after", s.end.At)
	s.markUp()
	close(s.done)
}

func (s *session) markUp() { s.upOnce.Do(func() { close(s.up) }) }

// notify wakes the waiters. s.mu must be held.
func (s *session) notify() {
	s.changes.Notify()
}

// waitFor blocks until cond (called with s.mu held) is true or ctx ends.
func (s *session) waitFor(ctx context.Context, cond func() bool) error {
	return s.changes.Wait(ctx, &s.mu, cond)
}

func (s *session) addOutput(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = append(s.out, b...)
	s.outTotal += int64(len(b))
	if len(s.out) > 2*execclient.MaxOutput {
		s.out = append([]byte(nil), s.out[len(s.out)-execclient.MaxOutput:]...)
	}
	if !s.upgraded && !s.prompted && bytes.Contains(s.out, []byte(userPrompt)) {
		// kubectl has no credentials for an https server (or they
		// were refused) and asks its user, on stdout, then reads
		// stdin: nobody will answer.
		s.prompted = true
		go func() { _ = s.signal(syscall.SIGKILL, "") }()
	}
	s.notify()
}

// userPrompt is what kubectl asks on stdout when the server answers 401
// to a kubeconfig without credentials (client-go's basic-auth prompt).
const userPrompt = "Please enter Username: "

func (s *session) addStderrLine(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if exitCodeLine.MatchString(line) {
		s.exitLine = line
	}
	s.stderr = appendTail(s.stderr, line, stderrTail)
}

// addLogLine reads a kubectl log line: the answer to the exec upgrade,
// and after a WebSocket's 101 the subprotocol (client-go logs it next).
func (s *session) addLogLine(line string) {
	s.log.Debug("kubectl log", "line", line)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logLines = appendTail(s.logLines, line, logTail)
	if s.wsUp {
		s.wsUp = false
		if m := subprotocolLine.FindStringSubmatch(line); m != nil {
			s.protocol = execproto.Protocol(m[1])
		}
		s.markUp()
		return
	}
	r, ok := parseResponse(line)
	if !ok {
		return
	}
	if !r.isExec() {
		if r.status >= 400 {
			s.failed = append(s.failed, r)
		}
		return
	}
	if r.status != http.StatusSwitchingProtocols {
		s.refused = append(s.refused, r)
		return
	}
	s.upgraded = true
	if r.verb == http.MethodPost {
		// client-go's SPDY executor posts; its WebSocket executor gets.
		s.transport = execproto.TransportSPDY
		s.markUp()
		return
	}
	s.transport = execproto.TransportWebSocket
	s.wsUp = true
}

func appendTail(list []string, line string, n int) []string {
	list = append(list, line)
	if len(list) > n {
		list = list[len(list)-n:]
	}
	return list
}

// stderrWords is kubectl's last stderr lines, for an error.
func (s *session) stderrWords() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.stderr) == 0 {
		return "nothing on kubectl's stderr"
	}
	return fmt.Sprintf("kubectl's last stderr lines: %q", s.stderr)
}

// The execclient.Session of a kubectl.

func (s *session) Transport() execproto.Transport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transport
}

// Protocol is the WebSocket subprotocol kubectl logged ("" over SPDY,
// where it logs none: the harness takes the backend's).
func (s *session) Protocol() execproto.Protocol {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.protocol
}

// Response is nil: kubectl shows no upgrade response.
func (s *session) Response() *http.Response { return nil }
func (s *session) Started() time.Time       { return s.started }
func (s *session) Done() <-chan struct{}    { return s.done }

// End tells how kubectl ended: no close code (kubectl shows none), Err
// nil after exit 0, else an *ExitError.
func (s *session) End() execclient.End {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

// Close is unsupported: kubectl closes its connection its own way only
// (EndAs), with no code chosen by anyone.
func (s *session) Close(context.Context, int, string) (*execclient.CloseResult, error) {
	return nil, clients.Unsupported(scenarios.ClientKubectl, "close with a chosen close code")
}

// AbortTCP kills kubectl (SIGKILL): the kernel closes its sockets, with
// a FIN (a RST instead if unread data sits in a socket's receive
// buffer), and no protocol goodbye, which is as close as a process can
// come to a client that drops TCP.
func (s *session) AbortTCP() error { return s.signal(syscall.SIGKILL, "AbortTCP") }

// Reset kills kubectl too: it cannot reset TCP on demand (the kernel
// resets only what has unread data).
func (s *session) Reset() error { return s.signal(syscall.SIGKILL, "Reset") }

// Freeze stops kubectl (SIGSTOP): it reads nothing more, and the
// server's writes back up. Release kills it still stopped.
func (s *session) Freeze() { _ = s.signal(syscall.SIGSTOP, "") }

// signal sends sig to kubectl (its process, not the group) and notes by
// as what ended it; an error once it has exited.
func (s *session) signal(sig syscall.Signal, by string) error {
	select {
	case <-s.exited:
		return execclient.ErrEnded
	default:
	}
	if by != "" {
		s.mu.Lock()
		if s.by == "" {
			s.by = by
		}
		s.mu.Unlock()
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return execclient.ErrEnded
		}
		return fmt.Errorf("kubectl: %v: %w", sig, err)
	}
	return nil
}

// Send writes data on stdin; kubectl has no other stream a user writes.
func (s *session) Send(stream byte, data []byte) error {
	if stream != execproto.StreamStdin {
		return clients.Unsupported(scenarios.ClientKubectl, fmt.Sprintf("write on stream %d", stream))
	}
	return s.Type(string(data))
}

// Type writes to kubectl's terminal (tty) or stdin (notty).
func (s *session) Type(text string) error {
	f := s.input()
	if f == nil {
		return execclient.ErrEnded
	}
	if _, err := f.Write([]byte(text)); err != nil {
		return fmt.Errorf("kubectl: type: %w", err)
	}
	return nil
}

func (s *session) input() *os.File {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.req.Case.TTY {
		return s.ptmx
	}
	return s.stdin
}

// Resize sets the terminal's size: the kernel sends kubectl SIGWINCH,
// on which it sends the size to the server. tty only.
func (s *session) Resize(width, height uint16) error {
	if !s.req.Case.TTY {
		return clients.Unsupported(scenarios.ClientKubectl, "resize a notty session (it has no terminal)")
	}
	f := s.input()
	if f == nil {
		return execclient.ErrEnded
	}
	if err := setSize(f, width, height); err != nil {
		return fmt.Errorf("kubectl: resize: %w", err)
	}
	return nil
}

// CloseStdin closes kubectl's stdin (EOF) on a notty session; a
// terminal has no EOF of its own to give (terminal-closed hangs it up).
func (s *session) CloseStdin() error {
	if s.req.Case.TTY {
		return clients.Unsupported(scenarios.ClientKubectl, "half-close stdin on a tty session")
	}
	s.mu.Lock()
	f := s.stdin
	s.stdin = nil
	s.mu.Unlock()
	if f == nil {
		return execclient.ErrEnded
	}
	return f.Close()
}

// Expect waits until substr appears in the output after the previous
// match, as execclient's Expect does.
func (s *session) Expect(ctx context.Context, substr string) error {
	want := []byte(substr)
	var from int64
	found := false
	err := s.waitFor(ctx, func() bool {
		base := s.outTotal - int64(len(s.out))
		from = max(from, s.cursor, base)
		if i := bytes.Index(s.out[from-base:], want); i >= 0 {
			s.cursor = from + int64(i) + int64(len(want))
			found = true
			return true
		}
		from = max(from, s.outTotal-int64(len(want))+1)
		return s.ended
	})
	if found {
		return nil
	}
	tail := s.Output()
	if len(tail) > 512 {
		tail = tail[len(tail)-512:]
	}
	if err != nil {
		return fmt.Errorf("kubectl: Expect %q: %w; output tail: %q", substr, err, tail)
	}
	return fmt.Errorf("kubectl: Expect %q: %w (%s); output tail: %q", substr, execclient.ErrEnded, s.End(), tail)
}

// Status waits for kubectl's exit and reads the remote status from it:
// exit 0 is Success; "command terminated with exit code N" and exit N a
// NonZeroExitCode failure with N; any other end (an error of kubectl's,
// a signal) is no status (ok false).
func (s *session) Status(ctx context.Context) (execproto.Status, bool, error) {
	select {
	case <-s.done:
	case <-ctx.Done():
		return execproto.Status{}, false, fmt.Errorf("kubectl: Status: %w", ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch m := exitCodeLine.FindStringSubmatch(s.exitLine); {
	case s.exitCode == 0:
		return execproto.Status{Status: execproto.StatusSuccess}, true, nil
	case m != nil && m[1] == strconv.Itoa(s.exitCode):
		return execproto.Status{
			Status: execproto.StatusFailure, Reason: execproto.NonZeroExitCodeReason, Message: m[0],
			Details: &execproto.StatusDetails{Causes: []execproto.StatusCause{{Type: execproto.ExitCodeCauseType, Message: m[1]}}},
		}, true, nil
	}
	return execproto.Status{}, false, nil
}

// Output is the tail of what kubectl printed (stdout, and stderr without
// its log lines).
func (s *session) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.out
	if len(out) > execclient.MaxOutput {
		out = out[len(out)-execclient.MaxOutput:]
	}
	return string(out)
}

// The named endings of kubectl (scenarios.Specs[scenarios.ClientKubectl].Named).
var signals = map[string]syscall.Signal{
	scenarios.OwnSIGKILL: syscall.SIGKILL,
	scenarios.OwnSIGTERM: syscall.SIGTERM,
	scenarios.OwnSIGINT:  syscall.SIGINT,
	scenarios.OwnSIGHUP:  syscall.SIGHUP,
}

// EndAs ends the session kubectl's own way: a signal to its process, or
// (terminal-closed, tty only) its terminal closed: the pty master, which
// hangs the terminal up (the kernel sends SIGHUP to kubectl, whose
// terminal it is, and its reads of it fail). It returns once done; Done
// tells when kubectl has exited.
func (s *session) EndAs(_ context.Context, ending string) error {
	if sig, ok := signals[ending]; ok {
		return s.signal(sig, ending)
	}
	if ending != scenarios.OwnTerminalClosed {
		return clients.Unsupported(scenarios.ClientKubectl, "end as "+strconv.Quote(ending))
	}
	if !s.req.Case.TTY {
		return clients.Unsupported(scenarios.ClientKubectl, "close the terminal of a notty session (it has none)")
	}
	s.mu.Lock()
	if s.by == "" {
		s.by = ending
	}
	s.mu.Unlock()
	return s.closePtmx()
}

// closePtmx closes the pty master once.
func (s *session) closePtmx() error {
	var err error
	s.ptmxClose.Do(func() {
		s.mu.Lock()
		f := s.ptmx
		s.ptmx = nil
		s.mu.Unlock()
		if f != nil {
			err = f.Close()
		}
	})
	return err
}

// Release kills kubectl if it runs, waits for it to be reaped, and
// removes the session's files (its kubeconfig and token with them).
func (s *session) Release() {
	s.release.Do(func() {
		select {
		case <-s.exited:
		default:
			// Its process group: kubectl alone, unless it started a
			// credential plugin.
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		}
		<-s.done
		_ = s.closePtmx()
		s.mu.Lock()
		f := s.stdin
		s.stdin = nil
		s.mu.Unlock()
		closeFiles(f)
		if err := os.RemoveAll(s.dir); err != nil {
			s.log.Warn("remove the session's files", "dir", s.dir, "err", err)
		}
	})
}

var _ clients.Session = (*session)(nil)
