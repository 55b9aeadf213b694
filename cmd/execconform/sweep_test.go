package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/internal/janitor"
	"github.com/execconform/execconform/proctable"
)

// childRun is `execconform run` of the notty busy/foreground-sleep cases
// (the test binary as the CLI), in a process group of its own, its
// temporary directories under tmp.
type childRun struct {
	cmd *exec.Cmd
	pid int
	tmp string
}

// startRun starts a childRun with extra environment and waits for its
// worst moment: the cases' `sleep 600` are up.
func startRun(t *testing.T, tmp string, env ...string) *childRun {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(self, "run", "--quiet", "--out", filepath.Join(tmp, "out"), "--run", `/notty/busy/foreground-sleep$`)
	cmd.Env = append(os.Environ(), append([]string{"EXECCONFORM_TEST_AS_CLI=1", "TMPDIR=" + tmp}, env...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A file, not a pipe: Wait must not wait for the janitor, which
	// writes there too.
	out, err := os.Create(filepath.Join(t.TempDir(), "output"))
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(out.Name())
			t.Logf("the child run's output:\n%s", b)
		}
		_ = out.Close()
	})
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	r := &childRun{cmd: cmd, pid: cmd.Process.Pid, tmp: tmp}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		// What a failing test left goes too.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = proctable.Default.SweepServer(ctx, r.pid)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		procs, err := r.procs(ctx)
		require.NoError(t, err, "the child run's sleeps never came up")
		if slices.ContainsFunc(procs, func(p proctable.Proc) bool { return p.Comm == "sleep" }) {
			return r
		}
	}
}

// procs returns the live processes the run's server started.
func (r *childRun) procs(ctx context.Context) ([]proctable.Proc, error) {
	procs, err := proctable.Default.Tagged(ctx)
	return slices.DeleteFunc(procs, func(p proctable.Proc) bool { return p.ServerPID != r.pid }), err
}

// dirs returns the run's temporary directories.
func (r *childRun) dirs(t *testing.T) []string {
	m, err := filepath.Glob(filepath.Join(r.tmp, "execconform-*-"+strconv.Itoa(r.pid)+"-*"))
	require.NoError(t, err)
	return m
}

// TestKilledRunHealsItself: `execconform run` SIGKILLed at its worst
// moment, alone or with its whole process group, leaves nothing for long:
// its janitor kills its shells' sleeps and removes its temporary
// directories at once. Nobody runs reap, nor another run.
func TestKilledRunHealsItself(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill func(pid int) error
	}{
		{"process", func(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }},
		{"process-group", func(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRun(t, t.TempDir())
			require.NotEmpty(t, r.dirs(t))
			require.NoError(t, tc.kill(r.pid))
			_ = r.cmd.Wait()

			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			var live []proctable.Proc
			for {
				procs, err := r.procs(ctx)
				if err != nil {
					t.Fatalf("15 s after the kill, the run's processes are alive: %v, and its directories remain: %v", live, r.dirs(t))
				}
				if live = procs; len(live) == 0 && len(r.dirs(t)) == 0 {
					return
				}
			}
		})
	}
}

// TestKilledRunIsSwept: `execconform run` SIGKILLed at its worst moment
// without a janitor (it was killed too, say) leaves its shells' sleeps
// alive under PID 1 (the shells die by Pdeathsig, their children do not)
// and its temporary directories. The next run's sweep (here with no
// minimum age) kills them and removes the directories.
func TestKilledRunIsSwept(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where sweepDeadRuns looks
	r := startRun(t, tmp, janitor.DisableEnv+"=1")
	require.NoError(t, r.cmd.Process.Kill())
	_ = r.cmd.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sleeps := func() []proctable.Proc {
		procs, err := r.procs(ctx)
		require.NoError(t, err)
		return slices.DeleteFunc(procs, func(p proctable.Proc) bool { return p.Comm != "sleep" })
	}

	// What it left: sleeps whose server is dead, its directories.
	left, err := proctable.Default.Orphans(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, left, "a SIGKILLed run leaves its shells' children")
	require.NotEmpty(t, r.dirs(t), "and its temporary directories")

	killed, dirs, err := sweepDeadRuns(ctx, 0)
	require.NoError(t, err)
	assert.NotEmpty(t, killed)
	assert.NotEmpty(t, dirs)
	assert.Empty(t, sleeps(), "the sweep killed the dead run's sleeps")
	assert.Empty(t, r.dirs(t), "and removed its directories")
	for _, d := range dirs {
		assert.True(t, strings.HasPrefix(d, tmp), "only under TMPDIR: %s", d)
	}
}
