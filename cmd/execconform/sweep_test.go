package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/proctable"
)

// TestKilledRunIsSwept: `execconform run` SIGKILLed at its worst moment,
// while the notty busy/foreground-sleep cases have their `sleep 600` up,
// leaves those sleeps alive under PID 1 (the shells die by Pdeathsig,
// their children do not) and its temporary directories. The next run's
// sweep (here with no minimum age) kills them and removes the directories.
func TestKilledRunIsSwept(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	self, err := os.Executable()
	require.NoError(t, err)
	child := exec.Command(self, "run", "--quiet", "--out", filepath.Join(tmp, "out"), "--run", `/notty/busy/foreground-sleep$`)
	child.Env = append(os.Environ(), "EXECCONFORM_TEST_AS_CLI=1")
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	pid := child.Process.Pid

	// The worst moment: the child's sleeps are up.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sleeps := func() []proctable.Proc {
		procs, err := proctable.Default.Tagged(ctx)
		require.NoError(t, err)
		var out []proctable.Proc
		for _, p := range procs {
			if p.ServerPID == pid && p.Comm == "sleep" {
				out = append(out, p)
			}
		}
		return out
	}
	for len(sleeps()) == 0 {
		require.NoError(t, ctx.Err(), "the child run's sleeps never came up")
	}
	require.NoError(t, child.Process.Kill())
	_ = child.Wait()

	// What it left: sleeps whose server is dead, its directories.
	owned := func() []string {
		m, err := filepath.Glob(filepath.Join(tmp, "execconform-*-"+strconv.Itoa(pid)+"-*"))
		require.NoError(t, err)
		return m
	}
	left, err := proctable.Default.Orphans(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, left, "a SIGKILLed run leaves its shells' children")
	require.NotEmpty(t, owned(), "and its temporary directories")

	killed, dirs, err := sweepDeadRuns(ctx, 0)
	require.NoError(t, err)
	assert.NotEmpty(t, killed)
	assert.NotEmpty(t, dirs)
	assert.Empty(t, sleeps(), "the sweep killed the dead run's sleeps")
	assert.Empty(t, owned(), "and removed its directories")
	for _, d := range dirs {
		assert.True(t, strings.HasPrefix(d, tmp), "only under TMPDIR: %s", d)
	}
}
