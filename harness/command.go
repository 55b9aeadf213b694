package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/execconform/execconform/proctable"
)

// CommandVars are the placeholders of a CommandTarget's template, for
// example
//
//	myproxy --listen {{.Listen}} --upstream {{.Backend}} --ca {{.CAFile}} --token {{.Token}}
type CommandVars struct {
	Listen      string // 127.0.0.1:PORT, the address the proxy must listen on
	Host        string // 127.0.0.1
	Port        int    // PORT
	Backend     string // the API server's base URL, https://127.0.0.1:PORT (no path)
	BackendHost string // its host:port
	CAFile      string // PEM file of the CA that signed the API server's certificate ("" over plain http)
	Token       string // the bearer token the API server requires
	TokenFile   string // a file holding Token, for proxies that read it from a file
	Dir         string // a directory of the case's own, removed afterwards
	Case        string // the case's name (for the proxy's logs)
}

// quoted is v with every string shell-quoted, as the template's
// placeholders expand: a value with a space, a ';' or a '$(...)' (a TMPDIR,
// a case's name) stays one word and runs nothing. So a template must not
// quote a placeholder itself.
func (v CommandVars) quoted() CommandVars {
	q := v
	for _, f := range []*string{&q.Listen, &q.Host, &q.Backend, &q.BackendHost, &q.CAFile, &q.Token, &q.TokenFile, &q.Dir, &q.Case} {
		*f = shellQuote(*f)
	}
	return q
}

// shellQuote quotes s for /bin/sh: in single quotes, each single quote in
// it closed, escaped with a backslash and reopened.
// Values of only safe characters are left as they are, so that a rendered
// command line reads as it was written.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@%+=,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// CommandConfig configures CommandTarget.
type CommandConfig struct {
	// Template is a shell command line (run by /bin/sh -c) with text/template
	// placeholders from CommandVars. Each placeholder expands shell-quoted
	// (one word, whatever it holds): do not quote them yourself.
	Template string
	// Scheme the proxy serves on: "http" (default) or "https" (then set
	// Options.FrontTLS).
	Scheme string
	// PathPrefix is the frontend path the proxy serves exec under (the
	// exec path /api/v1/... is appended to it).
	PathPrefix string
	// StartTimeout bounds the start: from the exec to the first accepted
	// TCP connection on Listen (default 10 s).
	StartTimeout time.Duration
	// StopTimeout is how long the proxy has between SIGTERM and SIGKILL
	// (default 10 s).
	StopTimeout time.Duration
	// NoFDCheck skips the open-files check (see CommandTarget).
	NoFDCheck bool
}

// DefaultStartTimeout and DefaultStopTimeout are the CommandConfig defaults.
const (
	DefaultStartTimeout = 10 * time.Second
	DefaultStopTimeout  = 10 * time.Second
)

// CommandTarget runs an external proxy, one process per case: each case
// has its own API server (its URL, token and CA differ), a case that stops
// the proxy (proxy/shutdown-*) needs a process of its own to send SIGTERM
// to, and what the process prints belongs to one case. Starting a small
// binary costs milliseconds; the matrix runs cases in parallel anyway.
//
// The process runs in a process group of its own, with
// EXECCONFORM_SESSION set so that `execconform reap` finds it if the
// harness dies. It is ready when Listen accepts a TCP connection; a process
// that exits first, or is not ready within StartTimeout, fails the case as
// ERROR with its output. Stop sends SIGTERM to the group, then SIGKILL after
// StopTimeout. Its stdout and stderr go to the case's Result (TargetOutput)
// when the case fails.
//
// Once the case is judged, the proxy must hold no more open files (sockets
// included) than when it became ready: every connection of an ended session
// must be closed. Unless NoFDCheck, more fails the case.
func CommandTarget(cfg CommandConfig) (Target, error) {
	tmpl, err := template.New("proxy-cmd").Option("missingkey=error").Parse(cfg.Template)
	if err != nil {
		return nil, fmt.Errorf("harness: proxy command template: %w", err)
	}
	// Every placeholder must exist: find out now, not in every case.
	if err := tmpl.Execute(&bytes.Buffer{}, CommandVars{}); err != nil {
		return nil, fmt.Errorf("harness: proxy command template: %w", err)
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "http"
	}
	if cfg.Scheme != "http" && cfg.Scheme != "https" {
		return nil, fmt.Errorf("harness: proxy scheme %q: want http or https", cfg.Scheme)
	}
	if cfg.PathPrefix != "" && !strings.HasPrefix(cfg.PathPrefix, "/") {
		return nil, fmt.Errorf("harness: path prefix %q must start with /", cfg.PathPrefix)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	return func(ctx context.Context, b Backend) (*url.URL, func(), error) {
		return startCommand(ctx, cfg, tmpl, b)
	}, nil
}

// startAttempts is how often a proxy is started on a new port when another
// process took its port between the pick and the proxy's bind.
const startAttempts = 3

func startCommand(ctx context.Context, cfg CommandConfig, tmpl *template.Template, b Backend) (*url.URL, func(), error) {
	for attempt := 1; ; attempt++ {
		front, stop, err := startCommandOnce(ctx, cfg, tmpl, b)
		var pt *portTakenError
		if !errors.As(err, &pt) || attempt == startAttempts {
			return front, stop, err
		}
	}
}

// portTakenError: the proxy failed to start and another process listens on
// the port it was given (a race no pick can rule out across processes).
type portTakenError struct {
	port int
	err  error
}

func (e *portTakenError) Error() string { return e.err.Error() }
func (e *portTakenError) Unwrap() error { return e.err }

func startCommandOnce(ctx context.Context, cfg CommandConfig, tmpl *template.Template, b Backend) (*url.URL, func(), error) {
	dir, err := proctable.MkdirTemp("proxy")
	if err != nil {
		return nil, nil, err
	}
	port, release, err := pickPort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	cleanup := func() {
		release()
		os.RemoveAll(dir)
	}
	vars := CommandVars{
		Listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Host: "127.0.0.1", Port: port,
		Backend: (&url.URL{Scheme: b.URL.Scheme, Host: b.URL.Host}).String(), BackendHost: b.URL.Host,
		CAFile: b.CAFile, Token: b.Token, TokenFile: filepath.Join(dir, "token"), Dir: dir,
		Case: caseName(ctx),
	}
	if err := os.WriteFile(vars.TokenFile, []byte(b.Token), 0o600); err != nil {
		cleanup()
		return nil, nil, err
	}
	var line bytes.Buffer
	if err := tmpl.Execute(&line, vars.quoted()); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("proxy command template: %w", err)
	}

	out := TargetOutput(ctx)
	cmd := exec.Command("/bin/sh", "-c", line.String())
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(),
		proctable.SessionEnv+"=proxy:"+vars.Case,
		"EXECCONFORM_SERVER_PID="+strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("start %q: %w", line.String(), err)
	}
	p := &proxyProcess{cmd: cmd, exited: make(chan struct{}), stopTimeout: cfg.StopTimeout}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	stop := func() {
		p.stop()
		cleanup()
	}
	if err := p.ready(ctx, vars.Listen, cfg.StartTimeout); err != nil {
		stop()
		err = fmt.Errorf("the proxy did not start (%s): %w; its output:\n%s", line.String(), err, outputText(out))
		// The proxy is gone now: a listener left on its port is another
		// process's, which took the port between the pick and the bind.
		if portTaken(port) {
			return nil, nil, &portTakenError{port: port, err: err}
		}
		return nil, nil, err
	}
	if !cfg.NoFDCheck {
		baseline, err := p.settledFiles(ctx)
		if err == nil {
			AddTargetCheck(ctx, func(ctx context.Context) []string { return p.checkFiles(ctx, baseline) })
		}
	}
	front := &url.URL{Scheme: cfg.Scheme, Host: vars.Listen, Path: cfg.PathPrefix}
	return front, stop, nil
}

// proxyProcess is one started proxy.
type proxyProcess struct {
	cmd         *exec.Cmd
	exited      chan struct{}
	waitErr     error // set before exited is closed
	stopTimeout time.Duration
}

// errExited: the proxy's process ended while a poll waited on it.
var errExited = errors.New("the proxy exited")

// poll calls done every interval until it returns true (nil), the process
// exits (errExited) or ctx ends (its error). A port that is not yet
// listening and a process's descriptor table have no event to wait on.
func (p *proxyProcess) poll(ctx context.Context, interval time.Duration, done func() bool) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if done() {
			return nil
		}
		select {
		case <-p.exited:
			return errExited
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// ready waits until addr accepts a connection on a socket the proxy
// itself holds (another process may have taken the port: then the proxy
// fails to bind), the process exits, or the bound passes.
func (p *proxyProcess) ready(ctx context.Context, addr string, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	_, port, _ := net.SplitHostPort(addr)
	err := p.poll(ctx, 20*time.Millisecond, func() bool {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return p.listening(ctx, port)
	})
	switch {
	case errors.Is(err, errExited):
		return fmt.Errorf("it exited before listening on %s: %v", addr, exitText(p.waitErr))
	case err != nil:
		return fmt.Errorf("nothing listening on %s after %s", addr, bound)
	}
	return nil
}

// stop sends SIGTERM to the process group, then SIGKILL after the bound,
// and waits for the process.
func (p *proxyProcess) stop() {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.exited:
	default:
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(p.stopTimeout)
		select {
		case <-p.exited:
		case <-t.C:
		}
		t.Stop()
	}
	// Whatever is left of the group (the shell's children), and the
	// process itself if it ignored SIGTERM.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.exited
}

// fds lists what the descriptors of the proxy's live processes (its
// process group, from the process table) point at: "socket:[123]",
// "pipe:[45]", "/dev/null", ...
func (p *proxyProcess) fds(ctx context.Context) ([]string, error) {
	procs, err := proctable.Default.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, q := range procs {
		if q.PGID != p.cmd.Process.Pid || !q.Live() {
			continue
		}
		dir := fmt.Sprintf("/proc/%d/fd", q.PID)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue // gone meanwhile
		}
		for _, e := range entries {
			if t, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
				out = append(out, t)
			}
		}
	}
	return out, nil
}

// openFiles counts the proxy's descriptors, but the cgroup files that a Go
// runtime (1.25+) opens some time after start and keeps open.
func (p *proxyProcess) openFiles(ctx context.Context) (int, error) {
	fds, err := p.fds(ctx)
	n := 0
	for _, t := range fds {
		if !strings.HasPrefix(t, "/sys/fs/cgroup/") {
			n++
		}
	}
	return n, err
}

// settledFiles is the baseline of openFiles: the proxy still holds the
// readiness probe's connection for a moment, so it samples (for 1 s at
// most) until the count has not fallen for five samples.
func (p *proxyProcess) settledFiles(ctx context.Context) (int, error) {
	n, err := p.openFiles(ctx)
	if err != nil {
		return 0, err
	}
	// The bound ends the sampling, not a scan in progress (its error would
	// pass for the table's).
	scan := context.WithoutCancel(ctx)
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	same := 0
	_ = p.poll(ctx, 20*time.Millisecond, func() bool {
		m, merr := p.openFiles(scan)
		switch {
		case merr != nil:
			err = merr
			return true
		case m < n:
			n, same = m, 0
		default:
			same++
		}
		return same >= 5
	})
	return n, err
}

// checkFiles: back to the baseline, within 3 s.
func (p *proxyProcess) checkFiles(ctx context.Context, baseline int) []string {
	scan := context.WithoutCancel(ctx) // as in settledFiles
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	n := 0
	err := p.poll(ctx, 50*time.Millisecond, func() bool {
		m, err := p.openFiles(scan)
		n = m
		return err != nil || m <= baseline
	})
	if err == nil || errors.Is(err, errExited) {
		return nil // settled, or it crashed: other checks say so
	}
	return []string{fmt.Sprintf("the proxy holds %d open files after every session ended, %d more than when it became ready (leaked connections or files: %s)",
		n, n-baseline, p.describeFiles())}
}

// describeFiles counts the proxy's descriptors by kind (socket, pipe, file
// path).
func (p *proxyProcess) describeFiles() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	fds, _ := p.fds(ctx)
	kinds := map[string]int{}
	for _, t := range fds {
		if i := strings.IndexByte(t, ':'); i > 0 && !strings.HasPrefix(t, "/") {
			t = t[:i] // socket:[123] -> socket
		}
		kinds[t]++
	}
	var parts []string
	for k, n := range kinds {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// proxyPorts are the ports handed to proxies and not yet released: two
// cases starting at once could otherwise pick the same free port, and the
// second proxy's bind fails (seen once in 20-odd CI runs).
var proxyPorts = struct {
	sync.Mutex
	held map[int]bool
}{held: map[int]bool{}}

// pickPort is freePort; tests replace it.
var pickPort = freePort

// freePort picks a free loopback port below the kernel's ephemeral range,
// so that no listener of the suite (which all bind port 0) can take it
// between the pick and the proxy's bind, and holds it for this process
// until release is called.
func freePort() (port int, release func(), err error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	const floor = 10000
	if lo <= floor+1000 {
		return 0, nil, fmt.Errorf("harness: the ephemeral port range starts at %d: no room below it for proxy ports", lo)
	}
	proxyPorts.Lock()
	defer proxyPorts.Unlock()
	for range 100 {
		port := floor + rand.IntN(lo-floor)
		if proxyPorts.held[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		proxyPorts.held[port] = true
		return port, func() {
			proxyPorts.Lock()
			defer proxyPorts.Unlock()
			delete(proxyPorts.held, port)
		}, nil
	}
	return 0, nil, fmt.Errorf("harness: no free port between %d and %d", floor, lo)
}

// portTaken reports whether some socket listens on 127.0.0.1:port.
func portTaken(port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 3 && f[1] == want && f[3] == "0A" { // 0A: LISTEN
			return true
		}
	}
	return false
}

// listening reports whether the proxy holds the socket listening on
// 127.0.0.1:port: it matches the socket's inode in /proc/net/tcp with the
// proxy's descriptors.
func (p *proxyProcess) listening(ctx context.Context, port string) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return true // cannot tell: trust the connection
	}
	want := fmt.Sprintf("0100007F:%04X", atoi(port))
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == want && f[3] == "0A" { // 0A: LISTEN
			fds, _ := p.fds(ctx)
			return slices.Contains(fds, "socket:["+f[9]+"]")
		}
	}
	return false
}

func exitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.String()
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func outputText(w any) string {
	if t, ok := w.(*TailBuffer); ok {
		if s := strings.TrimSpace(t.String()); s != "" {
			return s
		}
	}
	return "(none)"
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

type caseNameKey struct{}

// caseName is the name of the case ctx belongs to ("" outside a case).
func caseName(ctx context.Context) string {
	s, _ := ctx.Value(caseNameKey{}).(string)
	return s
}
