package janitor_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/execconform/execconform/internal/janitor"
	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/proctable"
)

// helperEnv makes the test binary the parent of a janitor instead (see
// helper): its value is what the parent does once it has started one.
const helperEnv = "JANITOR_TEST_HELPER"

func TestMain(m *testing.M) {
	janitor.RunIfJanitor()
	if mode := os.Getenv(helperEnv); mode != "" {
		helper(mode)
	}
	leakguard.Main(m)
}

// helper is a parent as the suite's are: it starts its janitor, then
// (unless mode is "idle") a shell with Pdeathsig whose two background
// sleeps outlive it, tagged with its PID as a fake API server's are, and
// a temporary directory of MkdirTemp. Once the sleeps run it prints what
// it made and then waits to be killed ("kill") or exits without cleaning
// up ("exit", "idle").
func helper(mode string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	if err := janitor.Start(); err != nil {
		fail(err)
	}
	// The write end must survive a collection: its finalizer would close it.
	runtime.GC()
	runtime.GC()
	session := fmt.Sprintf("janitor-test-%d", os.Getpid())
	dir := ""
	if mode != "idle" {
		sh := exec.Command("sh", "-c", "sleep 600 & sleep 600 & wait")
		sh.Env = []string{
			"PATH=" + os.Getenv("PATH"),
			proctable.SessionEnv + "=" + session,
			proctable.ServerPIDEnv + "=" + strconv.Itoa(os.Getpid()),
		}
		sh.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
		if err := sh.Start(); err != nil {
			fail(err)
		}
		var err error
		if dir, err = proctable.MkdirTemp("janitortest"); err != nil {
			fail(err)
		}
		// Before an exit, the sleeps must be up: a shell killed by its
		// Pdeathsig before it forks them leaves nothing to clean.
		if err := awaitSleeps(session); err != nil {
			fail(err)
		}
	}
	fmt.Printf("janitor=%d session=%s dir=%s\n", janitor.PID(), session, dir)
	if mode == "kill" {
		select {}
	}
	os.Exit(0)
}

// parent is a running helper.
type parent struct {
	cmd     *exec.Cmd
	janitor int
	session string
	dir     string
	// done is closed, and output set, when the helper's stderr reaches
	// EOF: the helper and its janitor (which writes there) have both ended.
	done   chan struct{}
	output string
}

// startHelper starts a helper in a process group of its own and waits
// for what it made to be up.
func startHelper(t *testing.T, mode string) *parent {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	// GORACE: a race-enabled helper would sleep 1 s at exit.
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "TMPDIR="+t.TempDir(), "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &parent{cmd: cmd, done: make(chan struct{})}
	go func() {
		b, _ := io.ReadAll(stderr)
		p.output = string(b)
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		// Whatever the janitor missed (a failing test) goes too.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = proctable.Default.Kill(ctx, proctable.Match{Session: p.session}, syscall.SIGKILL)
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "the helper printed nothing")
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "janitor":
			p.janitor, err = strconv.Atoi(v)
			require.NoError(t, err, "helper: %q", line)
		case "session":
			p.session = v
		case "dir":
			p.dir = v
		}
	}
	require.NotEmpty(t, p.session, "helper: %q", line)
	require.NotZero(t, p.janitor, "the helper started no janitor (%s=1?)", janitor.DisableEnv)
	return p
}

// awaitSleeps waits until the session's two sleeps run.
func awaitSleeps(session string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		live, err := proctable.Default.Live(ctx, proctable.Match{Session: session})
		if err != nil {
			return fmt.Errorf("the sleeps never ran: %v: %w", live, err)
		}
		n := 0
		for _, p := range live {
			if p.Comm == "sleep" {
				n++
			}
		}
		if n == 2 {
			return nil
		}
	}
}

// wait waits until the helper and its janitor have ended (the janitor
// within its bound).
func (p *parent) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(janitor.Bound + 5*time.Second):
		t.Fatalf("the janitor (PID %d) outlived its bound", p.janitor)
	}
	_ = p.cmd.Wait()
}

// assertCleaned checks that nothing the helper made is left.
func (p *parent) assertCleaned(t *testing.T) {
	t.Helper()
	live, err := proctable.Default.Live(context.Background(), proctable.Match{Session: p.session})
	require.NoError(t, err)
	assert.Empty(t, live, "the janitor left the parent's processes alive")
	_, err = os.Stat(p.dir)
	assert.True(t, os.IsNotExist(err), "the janitor left %s", p.dir)
	assert.Regexp(t, `^execconform janitor: PID \d+ ended: killed [1-9]\d* process\(es\) it started, removed 1 temporary directories\n$`, p.output)
}

// pipeOf returns what the janitor's fd 3 is: pipe:[INODE].
func pipeOf(t *testing.T, janitorPID int) string {
	t.Helper()
	target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", janitorPID))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(target, "pipe:"), "the janitor's fd 3 is %s", target)
	return target
}

// holds reports whether process pid has a descriptor open on target.
func holds(t *testing.T, pid int, target string) bool {
	t.Helper()
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	require.NoError(t, err)
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && l == target {
			return true
		}
	}
	return false
}

// TestKilledParentIsCleanedUp: a parent SIGKILLed, alone or with its
// process group, leaves nothing: its janitor kills the sleeps its shell
// left and removes its temporary directory. Before the kill the janitor
// is what reap --check must ignore (no tag) and in a session of its own,
// and the write end of its pipe is the parent's alone.
func TestKilledParentIsCleanedUp(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill func(pid int) error
	}{
		{"process", func(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }},
		{"process-group", func(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startHelper(t, "kill")
			pid := p.cmd.Process.Pid

			tagged, err := proctable.Default.Tagged(context.Background())
			require.NoError(t, err)
			var mine []proctable.Proc
			for _, q := range tagged {
				assert.NotEqual(t, p.janitor, q.PID, "the janitor carries a tag: %s", q)
				if q.Session == p.session {
					mine = append(mine, q)
				}
			}
			require.NotEmpty(t, mine)
			sid, err := unix.Getsid(p.janitor)
			require.NoError(t, err)
			assert.Equal(t, p.janitor, sid, "the janitor leads a session of its own")
			pipe := pipeOf(t, p.janitor)
			assert.True(t, holds(t, pid, pipe), "the parent holds the write end of %s, after two collections", pipe)
			for _, q := range mine {
				assert.False(t, holds(t, q.PID, pipe), "%s inherited the janitor's pipe", q)
			}

			require.NoError(t, tc.kill(pid))
			p.wait(t)
			p.assertCleaned(t)
		})
	}
}

// TestExitedParentIsCleanedUp: a parent that exits without cleaning up
// is cleaned up after too.
func TestExitedParentIsCleanedUp(t *testing.T) {
	p := startHelper(t, "exit")
	p.wait(t)
	p.assertCleaned(t)
}

// TestNothingToDoIsSilent: after a parent that left nothing the janitor
// prints nothing.
func TestNothingToDoIsSilent(t *testing.T) {
	p := startHelper(t, "idle")
	p.wait(t)
	assert.Empty(t, p.output)
}

// TestOthersAreSpared: the janitor kills only what its own parent
// started: not the processes of a live server, nor the orphans of
// another dead one (the next run's sweep, or reap, is for those).
func TestOthersAreSpared(t *testing.T) {
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	others := map[string]int{
		fmt.Sprintf("janitor-test-live-%d", os.Getpid()): os.Getpid(),
		fmt.Sprintf("janitor-test-dead-%d", os.Getpid()): dead.ProcessState.Pid(),
	}
	for session, server := range others {
		cmd := exec.Command("sleep", "600")
		cmd.Env = []string{proctable.SessionEnv + "=" + session, proctable.ServerPIDEnv + "=" + strconv.Itoa(server)}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}

	p := startHelper(t, "kill")
	require.NoError(t, p.cmd.Process.Kill())
	p.wait(t)
	p.assertCleaned(t)
	for session := range others {
		live, err := proctable.Default.Live(context.Background(), proctable.Match{Session: session})
		require.NoError(t, err)
		assert.Len(t, live, 1, "the janitor killed %s", session)
	}
}
