// Package janitor cleans up after a process that starts shells the moment
// it dies, however it dies: SIGKILLed, its process group killed, or
// exiting normally. Its shells die with it (Pdeathsig), but their children
// (the `sleep 600` of a shell busy in the foreground) live on under PID 1,
// and its temporary directories stay; without a janitor they wait for the
// next run's sweep or for `execconform reap`.
//
//	parent (execconform run, a test binary)     janitor (the same executable, re-executed)
//	+---------------------------------------+   +--------------------------------------------+
//	| pipe write end, held until it dies    |-->| fd 3, the read end: blocks until EOF       |
//	| shells: EXECCONFORM_SERVER_PID=parent |   | EOF: waits until getppid() changes,        |
//	| temp dirs: execconform-KIND-parent-*  |   | kills what the parent started (SweepServer)|
//	+---------------------------------------+   | removes its temp dirs, prints one line if  |
//	                                            | it did anything, exits (within Bound)      |
//	                                            +--------------------------------------------+
//
// The janitor runs in a session of its own, so that a signal to the
// parent's process group (a terminal's ^C, kill -9 -PGID) does not reach
// it. The write end is close-on-exec, so no shell the parent starts holds
// it: its EOF is the parent's death, nothing later.
//
// A program that uses it calls RunIfJanitor first thing in main (test
// binaries: leakguard.Main does), and Start before it starts shells.
package janitor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/execconform/execconform/proctable"
)

// Env carries the parent's identity, PID:STARTTIME (start time in clock
// ticks since boot, /proc/PID/stat field 22), to the janitor; its presence
// makes a process the janitor.
const Env = "EXECCONFORM_JANITOR"

// DisableEnv set to 1 makes Start do nothing: for tests of what happens
// without a janitor (the next run's sweep, reap).
const DisableEnv = "EXECCONFORM_NO_JANITOR"

// Bound is the most time the janitor spends once its parent is gone:
// waiting for the parent's exit to complete, killing, removing.
const Bound = 10 * time.Second

// settle is the least time between two scans of the janitor: what it
// killed must stay gone for two consecutive scans this far apart, so that
// a process whose environment a scan could not read (exiting, mid-exec)
// is caught by the next.
const settle = 20 * time.Millisecond

// pipeFD is the janitor's descriptor of the pipe's read end (ExtraFiles[0]).
const pipeFD = 3

var (
	once     sync.Once
	startErr error
	// writeEnd is never closed nor collected (its finalizer would close
	// it): the kernel closes it when the process dies.
	writeEnd *os.File
	// pid is the janitor's PID, 0 before Start or if disabled.
	pid int
)

// Start starts this process's janitor, once per process; later calls
// return the first call's result. The process should not end its life
// with exec (the janitor would take the exec for a death and find the
// process alive: it then does nothing).
func Start() error {
	once.Do(func() { startErr = start() })
	return startErr
}

// PID returns the PID of this process's janitor, 0 if none was started.
func PID() int { return pid }

func start() error {
	if os.Getenv(DisableEnv) == "1" {
		return nil
	}
	self, err := readProc(os.Getpid())
	if err != nil {
		return fmt.Errorf("janitor: %w", err)
	}
	exe, err := os.Executable()
	if err != nil || strings.HasSuffix(exe, " (deleted)") {
		exe = "/proc/self/exe" // still the running image
	}
	r, w, err := os.Pipe() // both ends close-on-exec
	if err != nil {
		return fmt.Errorf("janitor: %w", err)
	}
	cmd := &exec.Cmd{
		Path: exe,
		Args: []string{"execconform-janitor", strconv.Itoa(self.PID)},
		Env: append(environ(),
			fmt.Sprintf("%s=%d:%d", Env, self.PID, self.StartTime),
			"GOMAXPROCS=1",
			// Under the race detector, a binary sleeps 1 s at exit by
			// default: the janitor need not (go test waits for it).
			"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")),
		Dir:         "/", // pin no directory of the parent's
		Stderr:      os.Stderr,
		ExtraFiles:  []*os.File{r},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	_ = r.Close()
	if err != nil {
		_ = w.Close()
		return fmt.Errorf("janitor: %w", err)
	}
	writeEnd, pid = w, cmd.Process.Pid
	go func() {
		// Reap it, and say so if it ended while we live: then a kill of
		// this process leaves its processes to the next run's sweep.
		err := cmd.Wait()
		fmt.Fprintf(os.Stderr, "execconform: the janitor (PID %d) ended before us (%v): what a kill of PID %d leaves waits for the next run or `execconform reap`\n", pid, err, self.PID)
	}()
	return nil
}

// environ is this process's environment without the tags of processes
// the fake API server starts: the janitor is not one of them (reap
// --check counts those), and a server killing a tagged parent's
// session must not kill its janitor too.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case proctable.SessionEnv, proctable.ServerPIDEnv, Env, "GOMAXPROCS", "GORACE":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// RunIfJanitor, when this process is a janitor (Env is set), does the
// janitor's work and exits; otherwise it returns at once. Call it first
// thing in main, before anything else runs.
func RunIfJanitor() {
	v, ok := os.LookupEnv(Env)
	if !ok {
		return
	}
	os.Exit(run(v, os.NewFile(pipeFD, "janitor-pipe"), os.Stderr))
}

// parent is the process a janitor cleans up after.
type parent struct {
	pid   int
	start uint64 // /proc/PID/stat start time: tells a reuse of its PID
}

func parseParent(v string) (parent, error) {
	p, s, ok := strings.Cut(v, ":")
	pid, err1 := strconv.Atoi(p)
	start, err2 := strconv.ParseUint(s, 10, 64)
	if !ok || err1 != nil || err2 != nil || pid <= 1 {
		return parent{}, fmt.Errorf("%s=%q: want PID:STARTTIME", Env, v)
	}
	return parent{pid, start}, nil
}

// run is the janitor: it returns its exit code.
func run(v string, pipe io.ReadCloser, out io.Writer) int {
	// Its output may be a pipe whose reader died with the parent (go
	// test's): a write must fail, not kill it before its work is done.
	signal.Ignore(syscall.SIGPIPE)
	par, err := parseParent(v)
	if err != nil {
		fmt.Fprintf(out, "execconform janitor: %v\n", err)
		return 2
	}
	// Block until the parent's last descriptor of the write end closes:
	// it is exiting.
	_, _ = io.Copy(io.Discard, pipe)
	_ = pipe.Close()

	// Never outlive the bound, whatever blocks.
	watchdog := time.AfterFunc(Bound+time.Second, func() { os.Exit(3) })
	defer watchdog.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), Bound)
	defer cancel()
	res := clean(ctx, par, proctable.NewTable(settle))
	if len(res.killed)+len(res.dirs) > 0 || res.failed() {
		fmt.Fprintf(out, "execconform janitor: PID %d ended: %s\n", par.pid, res)
	}
	if res.failed() {
		return 1
	}
	return 0
}

// result is what clean did.
type result struct {
	killed  []proctable.Proc
	dirs    []string
	killErr error // never printed: it may show a command line, and a proxy's may hold a token
	dirErr  error
}

func (r result) failed() bool { return r.killErr != nil || r.dirErr != nil }

// String says what the janitor did in one line, and what it could not do,
// without any process's command line.
func (r result) String() string {
	s := fmt.Sprintf("killed %d process(es) it started, removed %d temporary directories", len(r.killed), len(r.dirs))
	if r.killErr != nil {
		s += fmt.Sprintf("; could not kill them all within %v (`execconform reap --check` lists what is left)", Bound)
	}
	if r.dirErr != nil {
		s += "; " + r.dirErr.Error()
	}
	return s
}

// clean waits until the parent has exited, then kills what it started and
// removes its temporary directories.
func clean(ctx context.Context, par parent, table *proctable.Table) result {
	var res result
	if err := waitExited(ctx, par.pid); err != nil {
		// EOF, and the parent lives on: it exec'd, or closed the pipe.
		// Its processes are its own business still.
		return res
	}
	// Two consecutive scans find nothing: a process whose tags one scan
	// missed, or forked as the last was read, is seen by the next.
	for quiet := 0; quiet < 2; {
		killed, err := table.SweepServer(ctx, par.pid)
		res.killed = append(res.killed, killed...)
		if err != nil {
			res.killErr = err
			break
		}
		if len(killed) == 0 {
			quiet++
		} else {
			quiet = 1 // SweepServer returns on a scan that found none
		}
	}
	if reused(par) {
		// Another process has the PID (and may have made directories of
		// that name): what the parent left waits for the next sweep.
		return res
	}
	res.dirs, res.dirErr = proctable.RemoveTempDirs(par.pid)
	return res
}

// waitExited waits until the janitor's parent, pid, has exited: the kernel
// closes a dying process's files before it reparents its children (and
// sends its shells their Pdeathsig), so at EOF the parent may still be
// exiting, and its shells not yet orphans.
func waitExited(ctx context.Context, pid int) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for os.Getppid() == pid {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// reused reports whether par's PID names a live process other than par.
func reused(par parent) bool {
	p, err := readProc(par.pid)
	return err == nil && p.Live() && p.StartTime != par.start
}

// readProc reads one process's /proc/PID/stat.
func readProc(pid int) (proctable.Proc, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return proctable.Proc{}, err
	}
	return proctable.Parse(b, nil, nil)
}
