package proctable

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseEnviron(t *testing.T) {
	for _, tc := range []struct {
		env     string
		session string
		server  int
	}{
		{"", "", 0},
		{"PATH=/bin\x00", "", 0},
		{"A=1\x00EXECCONFORM_SESSION=s1\x00EXECCONFORM_SERVER_PID=12\x00", "s1", 12},
		{"EXECCONFORM_SERVER_PID=12\x00EXECCONFORM_SESSION=s1", "s1", 12}, // no final NUL
		{"EXECCONFORM_SESSION=first\x00EXECCONFORM_SESSION=second\x00", "first", 0},
		{"EXECCONFORM_SESSIONX=no\x00XEXECCONFORM_SESSION=no\x00", "", 0},
		{"EXECCONFORM_SESSION=\x00EXECCONFORM_SERVER_PID=abc\x00", "", 0},
		{"EXECCONFORM_SESSION=a=b c\x00EXECCONFORM_SERVER_PID=-5\x00", "a=b c", 0},
	} {
		session, server := parseEnviron([]byte(tc.env))
		require.Equal(t, tc.session, session, "%q", tc.env)
		require.Equal(t, tc.server, server, "%q", tc.env)
	}
}

func TestParseCmdline(t *testing.T) {
	require.Nil(t, parseCmdline(nil))
	require.Nil(t, parseCmdline([]byte{0}))
	require.Equal(t, []string{"sh", "-c", "a b", ""}, parseCmdline([]byte("sh\x00-c\x00a b\x00\x00")))
	require.Equal(t, []string{"rewritten title"}, parseCmdline([]byte("rewritten title")))
}

// fakeProc is a directory tree shaped like /proc.
type fakeProc struct {
	t    *testing.T
	root string
}

func (f fakeProc) write(pid int, file, content string) {
	dir := filepath.Join(f.root, strconv.Itoa(pid))
	require.NoError(f.t, os.MkdirAll(dir, 0o755))
	require.NoError(f.t, os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644))
}

func (f fakeProc) proc(pid int, stat, cmdline, environ string) {
	f.write(pid, "stat", stat)
	f.write(pid, "cmdline", cmdline)
	f.write(pid, "environ", environ)
}

func byPID(procs []Proc) map[int]Proc {
	m := make(map[int]Proc, len(procs))
	for _, p := range procs {
		m[p.PID] = p
	}
	return m
}

func TestScanFakeProc(t *testing.T) {
	f := fakeProc{t, t.TempDir()}
	var c imageCache
	f.proc(100, statLine(100, "a) (b", 'S', 1, 100, 100, 5000), "sh\x00-i\x00",
		"EXECCONFORM_SESSION=s1\x00EXECCONFORM_SERVER_PID=7\x00")
	f.write(101, "stat", kthreadLine(101, "kworker/0:1")) // no cmdline or environ to read
	f.write(102, "cmdline", "gone\x00")                   // vanished: no stat
	f.write(103, "stat", statLine(103, "dying", 'R', 1, 103, 103, 20))
	require.NoError(t, os.WriteFile(filepath.Join(f.root, "self"), nil, 0o644))

	procs, err := scan(f.root, &c)
	require.NoError(t, err)
	require.Len(t, procs, 2, "102 and 103 vanished while being read")
	m := byPID(procs)
	require.Equal(t, Proc{PID: 100, PPID: 1, PGID: 100, SID: 100, State: 'S', StartTime: 5000,
		Comm: "a) (b", Cmdline: []string{"sh", "-i"}, Session: "s1", ServerPID: 7}, m[100])
	require.Equal(t, "pid=100 sid=100 state=S sh -i", m[100].String())
	require.Equal(t, "pid=101 sid=0 state=I [kworker/0:1]", m[101].String())
	require.True(t, m[100].Live())

	// The environment of an unchanged image is not read again.
	f.write(100, "environ", "EXECCONFORM_SESSION=s2\x00")
	procs, err = scan(f.root, &c)
	require.NoError(t, err)
	require.Equal(t, "s1", byPID(procs)[100].Session)

	// execve changes the command name or the block addresses: re-read.
	f.write(100, "stat", statLine(100, "sleep", 'S', 1, 100, 100, 5000))
	procs, err = scan(f.root, &c)
	require.NoError(t, err)
	require.Equal(t, "s2", byPID(procs)[100].Session)
	require.Zero(t, byPID(procs)[100].ServerPID)

	// An exiting process has lost its memory, and not yet become a zombie.
	exiting := strings.Fields(statLine(100, "sleep", 'R', 1, 100, 100, 5000))
	exiting[47], exiting[48], exiting[49], exiting[50] = "0", "0", "0", "0"
	f.proc(100, strings.Join(exiting, " "), "", "") // environ would be ESRCH
	procs, err = scan(f.root, &c)
	require.NoError(t, err)
	require.Equal(t, "s2", byPID(procs)[100].Session)

	// A zombie keeps the tags seen while it was alive, but no command line.
	f.proc(100, statLine(100, "sleep", 'Z', 1, 100, 100, 5000), "", "")
	procs, err = scan(f.root, &c)
	require.NoError(t, err)
	z := byPID(procs)[100]
	require.False(t, z.Live())
	require.Equal(t, "s2", z.Session)
	require.Nil(t, z.Cmdline)
	require.Equal(t, "pid=100 sid=100 state=Z [sleep] <defunct>", z.String())

	// A new process with a reused PID is read afresh.
	f.proc(100, statLine(100, "sleep", 'S', 1, 100, 100, 6000), "sleep\x00", "")
	procs, err = scan(f.root, &c)
	require.NoError(t, err)
	require.Equal(t, "", byPID(procs)[100].Session)

	// Processes that disappear are forgotten.
	require.NoError(t, os.RemoveAll(filepath.Join(f.root, "100")))
	_, err = scan(f.root, &c)
	require.NoError(t, err)
	require.NotContains(t, c.m, 100)
	require.Contains(t, c.m, 101)
}

func TestScanMalformedIsError(t *testing.T) {
	f := fakeProc{t, t.TempDir()}
	f.proc(5, "5 (x) S 1", "", "")
	_, err := scan(f.root, new(imageCache))
	require.ErrorIs(t, err, errMalformedStat)
}
