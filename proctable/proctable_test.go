package proctable

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// testSessionPrefix starts every session id this test binary uses, so that
// TestMain can find whatever it leaked.
var testSessionPrefix = fmt.Sprintf("proctable-test-%d-", os.Getpid())

var sessionSeq atomic.Int64

func newSession() string {
	return testSessionPrefix + strconv.FormatInt(sessionSeq.Add(1), 10)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if leaked := leftovers(); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: processes left alive by the tests (now killed): %s\n", describe(leaked))
		code = 1
	}
	select {
	case <-Default.scannerDone():
	case <-time.After(5 * time.Second):
		fmt.Fprintln(os.Stderr, "FAIL: Default's scanner goroutine outlived its waiters")
		code = 1
	}
	os.Exit(code)
}

// leftovers returns the live processes tagged by this test binary, after
// giving them a moment to die, and kills them.
func leftovers() []Proc {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ours := func(p Proc) bool { return p.Live() && strings.HasPrefix(p.Session, testSessionPrefix) }
	var leaked []Proc
	for {
		procs, err := Default.Snapshot(ctx)
		if err != nil {
			break
		}
		if leaked = filter(procs, ours); len(leaked) == 0 {
			return nil
		}
	}
	for _, p := range leaked {
		_, _, _ = signal(p, syscall.SIGKILL)
	}
	return leaked
}

// tagged is a process tree started by start.
type tagged struct {
	cmd     *exec.Cmd
	pid     int // also its session id and process group id
	session string
}

// start runs name with args in a new kernel session, tagged with a fresh
// exec session id and serverPID, and makes sure at cleanup, even on
// failure, that none of its tree is left alive and that it is reaped.
func start(t *testing.T, serverPID int, name string, args ...string) tagged {
	t.Helper()
	session := newSession()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), SessionEnv+"="+session, ServerPIDEnv+"="+strconv.Itoa(serverPID))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := Default.Kill(ctx, Match{Session: session, SID: pid}, syscall.SIGKILL)
		assert.NoError(t, err, "cleanup")
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return tagged{cmd, pid, session}
}

// startTree starts `sh -c script` with start.
func startTree(t *testing.T, serverPID int, script string) tagged {
	t.Helper()
	return start(t, serverPID, "sh", "-c", script)
}

// await scans until cond holds for the live processes matching m, and
// returns them; it fails the test after 10s.
func await(t *testing.T, m Match, what string, cond func([]Proc) bool) []Proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var live []Proc
	for {
		procs, err := Default.Live(ctx, m)
		if err != nil {
			t.Fatalf("waiting for %s: %v; last seen: %s", what, err, describe(live))
		}
		if live = procs; cond(live) {
			return live
		}
	}
}

// ids returns the identities of procs, which unlike their states do not
// change from scan to scan.
func ids(procs []Proc) []id {
	out := make([]id, len(procs))
	for i, p := range procs {
		out[i] = p.id()
	}
	return out
}

// allSleeping reports whether procs are n processes that all run sleep,
// that is, the shells have forked and exec'd everything.
func allSleeping(n int) func([]Proc) bool {
	return func(procs []Proc) bool {
		if len(procs) != n {
			return false
		}
		for _, p := range procs {
			if p.Comm != "sleep" {
				return false
			}
		}
		return true
	}
}

func TestScanSelf(t *testing.T) {
	procs, err := Scan()
	require.NoError(t, err)
	self, ok := byPID(procs)[os.Getpid()]
	require.True(t, ok, "the scan does not contain the test process")
	comm, err := os.ReadFile("/proc/self/comm")
	require.NoError(t, err)
	sid, err := unix.Getsid(0)
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(string(comm)), self.Comm)
	require.Equal(t, os.Getppid(), self.PPID)
	require.Equal(t, unix.Getpgrp(), self.PGID)
	require.Equal(t, sid, self.SID)
	require.Equal(t, os.Args, self.Cmdline)
	require.True(t, self.Live())
	require.NotZero(t, self.StartTime)
}

// pids lists the process directories of /proc.
func pids(t *testing.T) map[int]bool {
	d, err := os.Open("/proc")
	require.NoError(t, err)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	require.NoError(t, err)
	m := make(map[int]bool)
	for _, name := range names {
		if pid, err := strconv.Atoi(name); err == nil {
			m[pid] = true
		}
	}
	return m
}

func TestScanIsComplete(t *testing.T) {
	// Every process present both before and after the scan (kernel
	// threads, zombies, processes of other users) is in it.
	before := pids(t)
	procs, err := Scan()
	require.NoError(t, err)
	after := pids(t)
	got := byPID(procs)
	for pid := range before {
		if after[pid] {
			require.Contains(t, got, pid)
		}
	}
}

func TestLiveBySessionAndSID(t *testing.T) {
	t.Parallel()
	tr := startTree(t, os.Getpid(), "sleep 60 & exec sleep 60")

	bySession := await(t, Match{Session: tr.session}, "the tree", allSleeping(2))
	bySID := await(t, Match{SID: tr.pid}, "the tree by sid", allSleeping(2))
	require.ElementsMatch(t, ids(bySession), ids(bySID))

	m := byPID(bySession)
	child, ok := m[tr.pid]
	require.True(t, ok, "the child itself: %s", describe(bySession))
	require.Equal(t, []string{"sleep", "60"}, child.Cmdline)
	for _, p := range bySession {
		require.Equal(t, tr.pid, p.SID)
		require.Equal(t, tr.pid, p.PGID)
		require.Equal(t, tr.session, p.Session)
		require.Equal(t, os.Getpid(), p.ServerPID)
		if p.PID != tr.pid {
			require.Equal(t, tr.pid, p.PPID, "the grandchild")
		}
	}

	// Tagged sees them too, never the caller.
	all, err := Default.Tagged(t.Context())
	require.NoError(t, err)
	require.Subset(t, ids(all), ids(bySession))
	for _, p := range all {
		require.NotEqual(t, os.Getpid(), p.PID)
	}

	// Another session's processes do not match.
	other, err := Default.Live(t.Context(), Match{Session: newSession()})
	require.NoError(t, err)
	require.Empty(t, other)
	none, err := Default.Live(t.Context(), Match{})
	require.NoError(t, err)
	require.Empty(t, none)
}

func TestCommWithParentheses(t *testing.T) {
	t.Parallel()
	sleep, err := exec.LookPath("sleep")
	require.NoError(t, err)
	// A symlink, not a copy: writing an executable while another test forks
	// makes exec fail with ETXTBSY. comm comes from the name exec was given.
	odd := t.TempDir() + "/a) (b"
	require.NoError(t, os.Symlink(sleep, odd))

	tr := start(t, os.Getpid(), odd, "60")
	procs := await(t, Match{Session: tr.session}, "the process", func(p []Proc) bool { return len(p) == 1 && p[0].Comm == "a) (b" })
	require.Equal(t, tr.pid, procs[0].PID)
	require.Equal(t, []string{odd, "60"}, procs[0].Cmdline)
}

func TestZombieIsNotLive(t *testing.T) {
	t.Parallel()
	tr := start(t, os.Getpid(), "sleep", "60")
	m := Match{Session: tr.session}
	await(t, m, "the process", allSleeping(1))

	// Kill it without reaping it (the cleanup reaps it).
	require.NoError(t, tr.cmd.Process.Kill())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var zombie Proc
	for zombie.State != 'Z' {
		procs, err := Default.Snapshot(ctx)
		require.NoError(t, err, "waiting for the zombie")
		zombie = byPID(procs)[tr.pid]
		require.Equal(t, tr.pid, zombie.PID, "the zombie was reaped")
	}
	require.False(t, zombie.Live())
	require.Equal(t, tr.session, zombie.Session, "a zombie keeps the tags seen while alive")
	require.Contains(t, zombie.String(), "<defunct>")

	// A scan that never saw it alive still lists the zombie, untagged: the
	// kernel no longer shows a zombie's environment.
	procs, err := scan(procRoot, new(imageCache))
	require.NoError(t, err)
	fresh := byPID(procs)[tr.pid]
	require.Equal(t, zombie.id(), fresh.id())
	require.False(t, fresh.Live())
	require.Empty(t, fresh.Session)

	live, err := Default.Live(ctx, m)
	require.NoError(t, err)
	require.Empty(t, live)
	_, still, err := Default.WaitGone(ctx, m)
	require.NoError(t, err)
	require.Empty(t, still)
}

func TestWaitGone(t *testing.T) {
	t.Parallel()
	tr := startTree(t, os.Getpid(), "sleep 60 & exec sleep 60")
	m := Match{Session: tr.session}
	await(t, m, "the tree", allSleeping(2))

	// Nothing kills them: WaitGone times out and says who is still there.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	took, live, err := Default.WaitGone(ctx, m)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Len(t, live, 2)
	require.Greater(t, took, 100*time.Millisecond, "returned before the deadline")
	require.Contains(t, err.Error(), "proctable: still live after ")
	require.Contains(t, err.Error(), fmt.Sprintf("pid=%d sid=%d state=", tr.pid, tr.pid))
	t.Log(err)

	// Kill the whole group behind the package's back.
	require.NoError(t, syscall.Kill(-tr.pid, syscall.SIGKILL))
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	took, live, err = Default.WaitGone(ctx, m)
	require.NoError(t, err)
	require.Empty(t, live)
	t.Logf("gone %v after the kill", took)
}

func TestKillTree(t *testing.T) {
	t.Parallel()
	// Three tagged levels, plus a member of the group that dropped the tags
	// and is reached only through the process group.
	tr := startTree(t, os.Getpid(),
		`sh -c "sleep 60 & exec sleep 60" & `+
			`env -u EXECCONFORM_SESSION -u EXECCONFORM_SERVER_PID sleep 60 & `+
			`exec sleep 60`)
	m := Match{Session: tr.session}
	await(t, m, "the tagged tree", allSleeping(3))
	bySID := await(t, Match{SID: tr.pid}, "the whole tree", allSleeping(4))
	var untagged Proc
	for _, p := range bySID {
		if p.Session == "" {
			untagged = p
		}
	}
	require.NotZero(t, untagged.PID, "the untagged member: %s", describe(bySID))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	n, err := Default.Kill(ctx, m, syscall.SIGKILL)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	live, err := Default.Live(ctx, m)
	require.NoError(t, err)
	require.Empty(t, live)
	_, live, err = Default.WaitGone(ctx, Match{SID: tr.pid})
	require.NoError(t, err, "the untagged group member survived")
	require.Empty(t, live)

	// Nothing left: nothing to signal.
	n, err = Default.Kill(ctx, m, syscall.SIGKILL)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestKillTimesOut(t *testing.T) {
	t.Parallel()
	// The shell ignores SIGTERM once it has started, and waits forever.
	tr := startTree(t, os.Getpid(), `trap "" TERM; sleep 60 & wait`)
	m := Match{Session: tr.session}
	await(t, m, "the tree", func(p []Proc) bool { return len(p) == 2 && byPID(p)[tr.pid].Comm == "sh" })

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	n, err := Default.Kill(ctx, m, syscall.SIGTERM)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, 2, n)
	require.Contains(t, err.Error(), fmt.Sprintf("pid=%d ", tr.pid), "the survivor is named")
	t.Log(err)
}

// deadPID returns the PID of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	return cmd.ProcessState.Pid()
}

func TestOrphans(t *testing.T) {
	t.Parallel()
	orphan := startTree(t, deadPID(t), "sleep 60 & exec sleep 60")
	kept := startTree(t, os.Getpid(), "exec sleep 60")
	orphaned := await(t, Match{Session: orphan.session}, "the orphans", allSleeping(2))
	await(t, Match{Session: kept.session}, "the kept process", allSleeping(1))

	orphans, err := Default.Orphans(t.Context())
	require.NoError(t, err)
	require.Subset(t, ids(orphans), ids(orphaned))
	for _, p := range orphans {
		require.NotEqual(t, kept.session, p.Session, "its server is alive")
	}

	// Sweep only our own orphans: other packages' tests run alongside.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	killed, err := Default.sweep(ctx, func(p Proc) bool { return p.Session == orphan.session })
	require.NoError(t, err)
	require.ElementsMatch(t, ids(orphaned), ids(killed))
	live, err := Default.Live(ctx, Match{Session: orphan.session})
	require.NoError(t, err)
	require.Empty(t, live)
	live, err = Default.Live(ctx, Match{Session: kept.session})
	require.NoError(t, err)
	require.Len(t, live, 1, "a process whose server lives was swept")
}

func TestOrphansRules(t *testing.T) {
	const self = 50
	procs := []Proc{
		{PID: 1, State: 'S', StartTime: 1},
		{PID: 10, PPID: 1, State: 'S', StartTime: 100},                                        // server
		{PID: 11, PPID: 10, State: 'S', StartTime: 200, Session: "a", ServerPID: 10},          // server alive
		{PID: 12, PPID: 1, State: 'S', StartTime: 50, Session: "b", ServerPID: 10},            // PID 10 reused after it started
		{PID: 13, PPID: 1, State: 'S', StartTime: 200, Session: "c", ServerPID: 99},           // server gone
		{PID: 14, PPID: 1, State: 'S', StartTime: 200, Session: "d", ServerPID: 20},           // server a zombie
		{PID: 20, PPID: 1, State: 'Z', StartTime: 100},                                        // zombie server
		{PID: 15, PPID: 1, State: 'S', StartTime: 200, Session: "e"},                          // no server PID
		{PID: 16, PPID: 1, State: 'Z', StartTime: 200, Session: "f", ServerPID: 99},           // dead itself
		{PID: 17, PPID: 1, State: 'S', StartTime: 200, ServerPID: 99},                         // untagged
		{PID: 40, PPID: 1, State: 'S', StartTime: 200, Session: "g", ServerPID: 99},           // ancestor of self
		{PID: self, PPID: 40, State: 'R', StartTime: 300, Session: "g", ServerPID: 99},        // self
		{PID: 10 + self, PPID: self, State: 'S', StartTime: 400, Session: "g", ServerPID: 99}, // child of self
	}
	var pids []int
	for _, p := range orphans(procs, self) {
		pids = append(pids, p.PID)
	}
	require.ElementsMatch(t, []int{12, 13, 14, 15, 10 + self}, pids)
}

func TestKillSparesCaller(t *testing.T) {
	// Signal 0 only checks for existence, so matching the test's own
	// session harms nothing; the caller must not even be counted.
	sid, err := unix.Getsid(0)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err = Default.Kill(ctx, Match{SID: sid}, 0)
	if err != nil {
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NotContains(t, err.Error(), fmt.Sprintf("pid=%d ", os.Getpid()))
	}
}

// TestSweepServer: only the orphans of the server named go, not those of
// another dead server, nor those of a live one.
func TestSweepServer(t *testing.T) {
	t.Parallel()
	server, other := deadPID(t), deadPID(t)
	mine := startTree(t, server, "sleep 60 & exec sleep 60")
	theirs := startTree(t, other, "exec sleep 60")
	kept := startTree(t, os.Getpid(), "exec sleep 60")
	orphaned := await(t, Match{Session: mine.session}, "the orphans", allSleeping(2))
	await(t, Match{Session: theirs.session}, "another server's orphan", allSleeping(1))
	await(t, Match{Session: kept.session}, "the kept process", allSleeping(1))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	killed, err := Default.SweepServer(ctx, server)
	require.NoError(t, err)
	require.ElementsMatch(t, ids(orphaned), ids(killed))
	for _, tr := range []tagged{theirs, kept} {
		live, err := Default.Live(ctx, Match{Session: tr.session})
		require.NoError(t, err)
		require.Len(t, live, 1, "swept %s", tr.session)
	}
}

func TestRemoveTempDirs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	for _, name := range []string{
		"execconform-fakeapiserver-4242-1", "execconform-proxy-4242-2", // its own
		"execconform-proxy-42420-3", "execconform-proxy-424-4", // other PIDs
		"execconform-a-b-4242-5", "other-proxy-4242-6", // not MkdirTemp's names
	} {
		require.NoError(t, os.Mkdir(filepath.Join(tmp, name), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "execconform-proxy-4242-2", "token"), nil, 0o600))
	removed, err := RemoveTempDirs(4242)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{filepath.Join(tmp, "execconform-fakeapiserver-4242-1"), filepath.Join(tmp, "execconform-proxy-4242-2")}, removed)
	left, err := filepath.Glob(filepath.Join(tmp, "*"))
	require.NoError(t, err)
	require.Len(t, left, 4)
}
