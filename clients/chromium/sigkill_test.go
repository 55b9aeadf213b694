package chromium_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients/chromium"
	"github.com/execconform/execconform/internal/janitor"
	"github.com/execconform/execconform/proctable"
	"github.com/execconform/execconform/scenarios"
)

// helperEnv makes the test binary TestSIGKILLHelper's process.
const helperEnv = "EXECCONFORM_CHROMIUM_HELPER"

// TestSIGKILLHelper is the process TestSIGKILLLeavesNothing kills: a
// Dialer (the shared browser) and a session in a browser of its own,
// through a fake API server. It prints the two browsers' PIDs and waits
// to be killed.
func TestSIGKILLHelper(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("the helper of TestSIGKILLLeavesNothing")
	}
	d, err := chromium.New(chromium.Options{ExecPath: needBrowser(t)})
	require.NoError(t, err)
	fake := newFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := request(fake.URL(), fake.Token(), true, own(scenarios.OwnBrowserKill), nil)
	s, err := d.DialSession(ctx, req)
	require.NoError(t, err)
	require.NoError(t, s.Type("echo $((40+2))\r"))
	require.NoError(t, s.Expect(ctx, "42"))
	fmt.Printf("READY %d %d\n", d.SharedPID(), s.BrowserPID())
	select {} // until killed
}

// TestSIGKILLLeavesNothing kills a process that runs browsers with SIGKILL
// and checks that none of their processes outlives it (the main
// processes die by Pdeathsig, their children after them), that nothing
// tagged by it is left for `execconform reap` to find, and that the user
// data directories go: with the janitor at once, without it by the next
// sweep (their names carry the dead owner's PID).
func TestSIGKILLLeavesNothing(t *testing.T) {
	needBrowser(t)
	for _, withJanitor := range []bool{false, true} {
		t.Run(fmt.Sprintf("janitor=%v", withJanitor), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILLHelper$", "-test.v")
			cmd.Env = append(os.Environ(), helperEnv+"=1")
			if !withJanitor {
				cmd.Env = append(cmd.Env, janitor.DisableEnv+"=1")
			}
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			killed := false
			t.Cleanup(func() {
				if !killed {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
				}
			})
			pids := readReady(t, out)
			helper := cmd.Process.Pid
			before := browserProcs(t, context.Background(), helper, pids)
			t.Logf("the helper %d runs %d browser processes (browsers %v)", helper, len(before), pids)
			require.NotEmpty(t, before)

			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			_ = cmd.Wait()
			killed = true
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var left []proctable.Proc
			// Each round waits for a fresh scan of the process table.
			for left = browserProcs(t, ctx, helper, pids); len(left) > 0 && ctx.Err() == nil; {
				left = browserProcs(t, ctx, helper, pids)
			}
			for _, p := range left {
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
			}
			require.Empty(t, left, "processes outlived the SIGKILLed helper")
			t.Logf("every process gone %v after the SIGKILL", time.Since(start).Round(time.Millisecond))

			dirs := func() []string {
				m, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("execconform-chromium-%d-*", helper)))
				return m
			}
			if withJanitor {
				// The janitor removes them once its sweep is done; measured,
				// it can lose a race with a browser child that its group
				// kill has not finished off yet ("directory not empty": the
				// sweep waits for the tagged processes, not for their
				// untagged group). The next sweep removes what it left.
				deadline := time.Now().Add(janitor.Bound)
				for len(dirs()) > 0 && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond) // a directory's removal has no event
				}
				if left := dirs(); len(left) > 0 {
					t.Logf("the janitor left %v: the next sweep's", left)
				}
			} else {
				assert.Len(t, dirs(), 2, "the user data directories, named for the dead owner")
			}
			_, err = proctable.SweepTempDirs()
			require.NoError(t, err)
			assert.Empty(t, dirs(), "the sweep left the user data directories")
		})
	}
}

// readReady reads the helper's READY line: the browsers' main PIDs.
func readReady(t *testing.T, out interface{ Read([]byte) (int, error) }) []int {
	t.Helper()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				lines <- f
				break
			}
		}
		close(lines)
		for sc.Scan() { // the rest, so the helper never blocks on a write
		}
	}()
	select {
	case l, ok := <-lines:
		require.True(t, ok, "the helper ended before it was ready")
		var pids []int
		for _, f := range strings.Fields(l) {
			n, err := strconv.Atoi(f)
			require.NoError(t, err)
			pids = append(pids, n)
		}
		return pids
	case <-time.After(60 * time.Second):
		t.Fatal("the helper was not ready within 60 s")
		return nil
	}
}

// browserProcs are the live processes the helper left: tagged with its
// PID, or in the session of one of its browsers (the children the
// browsers fork carry no tags).
func browserProcs(t *testing.T, ctx context.Context, helper int, browsers []int) []proctable.Proc {
	t.Helper()
	procs, err := proctable.Default.Snapshot(ctx)
	if ctx.Err() != nil {
		return nil
	}
	require.NoError(t, err)
	var out []proctable.Proc
	for _, p := range procs {
		if !p.Live() {
			continue
		}
		inBrowser := false
		for _, b := range browsers {
			if p.SID == b {
				inBrowser = true
			}
		}
		if p.ServerPID == helper || inBrowser {
			out = append(out, p)
		}
	}
	return out
}
