package fakeapiserver

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/execconform/execconform/proctable"
)

// AllowCommand decides whether the server may run argv. It returns a
// non-nil error (shown to the client) to refuse.
type AllowCommand func(argv []string) error

// DefaultAllow permits the shells and the few programs the scenarios use:
// sh, bash, dash, busybox sh, sleep and cat, with any arguments.
func DefaultAllow(argv []string) error {
	if len(argv) == 0 {
		return errors.New("empty command")
	}
	switch filepath.Base(argv[0]) {
	case "sh", "bash", "dash", "sleep", "cat":
		return nil
	case "busybox":
		if len(argv) > 1 && (argv[1] == "sh" || argv[1] == "ash") {
			return nil
		}
	}
	return fmt.Errorf("command %q is not in the fake API server's allowlist", argv[0])
}

// process is one real process started for a session: on a pty when tty is
// set, on pipes otherwise; always the leader of its own session and process
// group, killed with SIGKILL should the server die (Pdeathsig).
type process struct {
	cmd *exec.Cmd
	tty bool

	pty    *os.File       // tty: the master; the server keeps it open after a disconnect
	stdin  io.WriteCloser // stdin (the master, or the pipe's write end)
	stdout *os.File       // output: the master, or the stdout pipe's read end
	stderr *os.File       // non-tty only

	stdinOnce sync.Once
	done      chan struct{} // closed when the process has been waited for
	exitCode  int
	waitErr   error
}

// startProcess starts argv with the env tags that let anyone attribute it.
func startProcess(argv []string, tty bool, size *pty.Winsize, dir string, env []string) (*process, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Dir = dir
	cmd.Env = env
	p := &process{cmd: cmd, tty: tty, done: make(chan struct{})}
	attrs := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if tty {
		attrs.Setctty = true
		attrs.Ctty = 0
		master, err := pty.StartWithAttrs(cmd, size, attrs)
		if err != nil {
			return nil, err
		}
		if master, err = pollable(master); err != nil {
			_ = cmd.Process.Kill()
			return nil, err
		}
		p.pty, p.stdin, p.stdout = master, master, master
	} else {
		cmd.SysProcAttr = attrs
		inR, inW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			closeAll(inR, inW)
			return nil, err
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			closeAll(inR, inW, outR, outW)
			return nil, err
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
		if err := cmd.Start(); err != nil {
			closeAll(inR, inW, outR, outW, errR, errW)
			return nil, err
		}
		closeAll(inR, outW, errW)
		p.stdin, p.stdout, p.stderr = inW, outR, errR
	}
	go p.wait()
	return p, nil
}

// pollable returns the pty master as a non-blocking *os.File in Go's
// poller. creack/pty's ioctls call Fd(), which puts the file in blocking
// mode: then deadlines do not work and Close waits for a pending Read, so
// closing the master would never hang up the shell.
func pollable(f *os.File) (*os.File, error) {
	fd, err := unix.Dup(int(f.Fd()))
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("fakeapiserver: dup pty master: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("fakeapiserver: pty master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), nil
}

// setSize sets the terminal size of the pty without calling Fd() (see pollable).
func setSize(f *os.File, cols, rows uint16) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = sc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	})
	if err != nil {
		return err
	}
	return ioErr
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

func (p *process) wait() {
	err := p.cmd.Wait()
	p.waitErr = err
	p.exitCode = 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.exitCode = 128 + int(ws.Signal())
		} else {
			p.exitCode = ee.ExitCode()
		}
	}
	close(p.done)
}

// pid is the process's PID, which is also its session and process group ID.
func (p *process) pid() int { return p.cmd.Process.Pid }

// closeStdin ends the process's input: EOF on a pipe. For a tty it only
// stops the server's writes: the master stays open, as a container
// runtime keeps it, so the shell sees nothing.
func (p *process) closeStdin() {
	p.stdinOnce.Do(func() {
		if !p.tty {
			_ = p.stdin.Close()
		}
	})
}

// hangup closes the pty master (the kernel sends SIGHUP to the session) or,
// without a tty, closes stdin and sends SIGHUP to the process group.
func (p *process) hangup() {
	if p.tty {
		_ = p.pty.Close()
		return
	}
	p.closeStdin()
	_ = syscall.Kill(-p.pid(), syscall.SIGHUP)
}

// release closes the server's ends of the process's I/O.
func (p *process) release() {
	if p.tty {
		_ = p.pty.Close()
		return
	}
	p.closeStdin()
	_ = p.stdout.Close()
	_ = p.stderr.Close()
}

// sessionEnv is the environment of a session's process.
func sessionEnv(id, home string, extra []string) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"HOSTNAME=fakepod",
		proctable.SessionEnv + "=" + id,
		proctable.ServerPIDEnv + "=" + strconv.Itoa(os.Getpid()),
	}
	return append(env, extra...)
}
