package census

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// container.dump is a container's table as DumpScript prints it, made to
// hold one of each kind of tree (times: boot 1796680000, uptime 10000 s,
// so "now" is 1796690000):
//
//	pid 1   sleep            the container's main process
//	pid 20  sh -i   pts/0    no input for 2 h                  -> orphan
//	pid 30  sh -i   pts/1    input 3 s ago                     -> live
//	pid 40  sleep 600        no tty                            -> a non-interactive exec
//	pid 50  sh      pts/2    no input for 2.5 h, top writing   -> busy
//	pid 60  -bash   pts/3    input never (atime = ctime), 1.4 h; a zombie
//	                         and a child with parentheses in its name -> orphan
//	pid 70  sh -c DUMP       SELF: the census's own exec, with its cat
//	pid 80  sh -c worker     PPID 1: the workload's, no exec's
//	pid 90  vi      pts/4    not a shell
//	pid 100 ash     pts/9    no times for pts/9
//	pid 110                  torn stat line (vanished): skipped
func loadDump(t *testing.T) *Snapshot {
	t.Helper()
	b, err := os.ReadFile("testdata/container.dump")
	require.NoError(t, err)
	s, err := ParseDump(b)
	require.NoError(t, err)
	return s
}

func TestParseDump(t *testing.T) {
	s := loadDump(t)
	assert.Equal(t, 70, s.Self)
	assert.Equal(t, time.Unix(1796690000, 0), s.Now())
	assert.Len(t, s.Procs, 14, "every process but the torn one")
	byPID := map[int]Proc{}
	for _, p := range s.Procs {
		byPID[p.PID] = p
	}
	assert.Equal(t, []string{"sh", "-i"}, byPID[20].Cmdline)
	assert.Equal(t, 34816, byPID[20].TTYNr)
	assert.Equal(t, "my (odd) name", byPID[62].Comm)
	assert.Equal(t, 34819, byPID[62].TTYNr, "the tty field counts from the last ')'")
	assert.Equal(t, []string{"python3", "-c", "pass"}, byPID[62].Cmdline)
	assert.False(t, byPID[61].Live(), "a zombie")
	assert.Equal(t, "stat", s.TTYSource)
	assert.Equal(t, TTYTimes{1796682800, 1796682800, 1796682000}, s.TTYs[0])
	assert.Len(t, s.TTYs, 5)
	assert.Equal(t, 8000*time.Second, s.Age(byPID[20]))

	b, _ := os.ReadFile("testdata/container.dump")
	_, err := ParseDump(b[:len(b)-20])
	assert.ErrorIs(t, err, ErrCutShort, "a dump cut short must not read as fewer processes")
	_, err = ParseDump([]byte("sh: /proc: not found\n"))
	assert.ErrorContains(t, err, "not a dump")
}

func TestTreesAndOwnExec(t *testing.T) {
	s := loadDump(t)
	trees := Trees(s, ExecRoot)
	var roots []int
	for _, tr := range trees {
		roots = append(roots, tr.Root.PID)
	}
	assert.Equal(t, []int{20, 30, 40, 50, 60, 70, 90, 100}, roots, "PPID 0 and not PID 1; the workload's sh (PPID 1) is no root")
	for _, tr := range trees {
		switch tr.Root.PID {
		case 50:
			require.Len(t, tr.Descendants, 1)
			assert.Equal(t, "top", tr.Descendants[0].Comm)
		case 60:
			require.Len(t, tr.Descendants, 1, "the zombie is no descendant")
			assert.Equal(t, 62, tr.Descendants[0].PID)
		case 70:
			assert.True(t, tr.Own, "the tree of SELF is the census's own")
		}
		assert.Equal(t, tr.Root.PID == 70, tr.Own)
	}

	// SELF a child of its exec's root (sh -c running a pipeline): still own.
	s.Self = 71
	for _, tr := range Trees(s, ExecRoot) {
		assert.Equal(t, tr.Root.PID == 70, tr.Own)
	}
}

func verdicts(t *testing.T, r Rules) map[int]Root {
	t.Helper()
	res := r.Result(loadDump(t), ExecRoot)
	m := map[int]Root{}
	for _, rt := range res.Roots {
		m[rt.PID] = rt
	}
	assert.NotContains(t, m, 70, "the census's own exec is never listed")
	assert.Equal(t, 70, res.OwnPID)
	return m
}

func flaggedPIDs(m map[int]Root) []int {
	var out []int
	for _, pid := range []int{20, 30, 40, 50, 60, 90, 100} {
		if m[pid].Flagged {
			out = append(out, pid)
		}
	}
	return out
}

func TestRules(t *testing.T) {
	m := verdicts(t, Rules{Idle: time.Hour})
	assert.Equal(t, []int{20, 60}, flaggedPIDs(m), "the idle tty shells, and nothing else")
	assert.Contains(t, m[30].Reason, "input within")
	assert.Contains(t, m[40].Reason, "no tty")
	assert.Contains(t, m[50].Reason, "busy")
	assert.Contains(t, m[60].Reason, "no input after its first seconds")
	assert.False(t, m[60].InputSeen)
	assert.True(t, m[20].InputSeen)
	assert.Contains(t, m[90].Reason, "not a shell")
	assert.Contains(t, m[100].Reason, "unknown")
	assert.Equal(t, "pts/0", m[20].TTY)
	assert.Equal(t, "2026-12-07T22:33:20Z", m[20].LastInput)
	assert.Len(t, m[60].Children, 1)

	assert.Equal(t, []int{20, 50, 60}, flaggedPIDs(verdicts(t, Rules{Idle: time.Hour, IncludeBusy: true})), "--include-busy")
	assert.Equal(t, []int{20, 60}, flaggedPIDs(verdicts(t, Rules{Idle: time.Hour, IncludeNoTTY: true})), "sleep 600 is younger than 1 h")
	assert.Equal(t, []int{20, 40, 60}, flaggedPIDs(verdicts(t, Rules{Idle: 400 * time.Second, IncludeNoTTY: true})), "--include-notty")
	assert.Equal(t, []int{20}, flaggedPIDs(verdicts(t, Rules{Idle: 90 * time.Minute})), "pts/3 had its last input 1.4 h ago")
	assert.Empty(t, flaggedPIDs(verdicts(t, Rules{Idle: 2 * time.Hour})), "pts/0 had its last input 2 h ago")
}

// TestRulesSharedPIDNamespace: with a pause process as PID 1 every
// container's main process has PPID 0: nothing is flagged.
func TestRulesSharedPIDNamespace(t *testing.T) {
	s := loadDump(t)
	s.Procs[0].Comm = "pause"
	res := Rules{Idle: time.Hour}.Result(s, ExecRoot)
	assert.True(t, res.SharedPIDNamespace)
	assert.Zero(t, res.Flagged)
	assert.NotEmpty(t, res.Roots)
}

// TestWindowIdle: the kernel keeps a pty's time only to its 8-second
// window, so the idle time the rules use is never more than the truth: a
// session typed into at any second of a window is never called idle for
// longer than it was.
func TestWindowIdle(t *testing.T) {
	const now = 1796690000
	for last := int64(now - 40); last <= now; last++ {
		for stored := last &^ 7; stored <= last; stored++ { // what the kernel may show for an input at last
			idle := windowIdle(now, stored)
			assert.LessOrEqual(t, idle, time.Duration(now-last)*time.Second, "input at %d, stored %d", last, stored)
			assert.Greater(t, idle+9*time.Second, time.Duration(now-last)*time.Second, "at most one window short")
		}
	}
	assert.Equal(t, time.Duration(0), windowIdle(now, now))
}

func TestPTS(t *testing.T) {
	for _, c := range []struct {
		nr int
		n  int
		ok bool
	}{
		{34816, 0, true},               // 136:0
		{34817 + 2, 3, true},           // 136:3
		{0x10882c, 300, true},          // 136:300, 20-bit minor
		{137<<8 | 5, 256 + 5, true},    // legacy second major
		{143<<8 | 255, 2047, true},     // last legacy
		{0, 0, false},                  // no tty
		{4<<8 | 1, 0, false},           // /dev/tty1
		{5<<8 | 1, 0, false},           // /dev/console
		{144 << 8, 0, false},           // past the pts majors
		{3<<8 | 0x10, 0, false},        // a BSD pty
		{136<<8 | 0xff, 255, true},     // 136:255
		{0x100000 | 136<<8, 256, true}, // 136:256
	} {
		n, ok := PTS(c.nr)
		assert.Equal(t, c.ok, ok, "tty_nr %#x", c.nr)
		assert.Equal(t, c.n, n, "tty_nr %#x", c.nr)
	}
}

func TestParseLsTimes(t *testing.T) {
	m := parseLsTimes([]byte("crw--w----    1 root     tty      136,   0 2026-12-07 13:01:59 +0000 /dev/pts/0\n" +
		"crw--w---- 1 root tty 136, 3 2026-12-07 14:01:59.570106040 +0100 /dev/pts/3\n" +
		"c--------- 1 root root 5, 2 2026-12-07 13:01:59 +0000 /dev/pts/ptmx\n"))
	assert.Equal(t, map[int]int64{0: 1796648519, 3: 1796648519}, m)
}

// TestRecordedE2ELocal: a dump recorded by e2e/census_test.go in the
// e2e-local cluster's busybox pod (e2e-report/local/census.dump), with
// what the test made: orphans 27, 33 and 38 (tty sessions dropped without
// a proxy), 45 a live tty session typing every 400 ms, 50 `sleep 600`
// exec'd without a tty, 522 the census's own sh.
func TestRecordedE2ELocal(t *testing.T) {
	b, err := os.ReadFile("testdata/e2e-local.dump")
	require.NoError(t, err)
	s, err := ParseDump(b)
	require.NoError(t, err)
	res := Rules{Idle: 2 * time.Second}.Result(s, ExecRoot)
	var roots, flagged []int
	for _, r := range res.Roots {
		roots = append(roots, r.PID)
		if r.Flagged {
			flagged = append(flagged, r.PID)
		}
	}
	assert.Equal(t, []int{27, 33, 38, 45, 50}, roots, "runc exec'd processes show PPID 0 in the pod; the census's own is left out")
	assert.Equal(t, []int{27, 33, 38}, flagged)
	assert.Equal(t, 522, res.OwnPID)
	assert.Equal(t, "sleep", res.PID1)
	assert.False(t, res.SharedPIDNamespace)

	// The orphans' ttys show 1796686690 and ...691 (their window ends at
	// ...696); the dump was taken at 1796686708.6: idle for at least 12 s,
	// flagged by --idle 11s, not by 12s.
	assert.Equal(t, 3, Rules{Idle: 11 * time.Second}.Result(s, ExecRoot).Flagged)
	assert.Equal(t, 0, Rules{Idle: 12 * time.Second}.Result(s, ExecRoot).Flagged)
}

func TestLimitedBuffer(t *testing.T) {
	b := limitedBuffer{max: 4}
	_, err := b.Write([]byte("12345"))
	assert.Error(t, err, "a dump past the bound fails the exec")
	tb := limitedBuffer{max: 4, truncate: true}
	n, err := tb.Write([]byte("123456"))
	assert.NoError(t, err)
	assert.Equal(t, 6, n)
	assert.Equal(t, "1234", tb.String(), "stderr is kept to its first bytes")
}

func TestMillisOf(t *testing.T) {
	assert.Equal(t, Millis(150.6), MillisOf(150600*time.Microsecond+30*time.Microsecond))
	assert.Equal(t, Millis(0.1), MillisOf(120*time.Microsecond))
}
