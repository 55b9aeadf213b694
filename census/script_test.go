package census

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/proctable"
)

// shells are the sh implementations the scripts must run on: dash (a
// Debian image's sh) and busybox's ash (busybox images), when installed.
func shells(t *testing.T) [][]string {
	var out [][]string
	for _, sh := range [][]string{{"dash"}, {"busybox", "sh"}} {
		if _, err := exec.LookPath(sh[0]); err == nil {
			out = append(out, sh)
		}
	}
	if len(out) == 0 {
		t.Skip("neither dash nor busybox")
	}
	return out
}

// startOnPTY starts sleep on a new pty, its controlling terminal; ended
// and waited for at cleanup.
func startOnPTY(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	master, err := pty.Start(cmd)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = master.Close()
	})
	dev, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", cmd.Process.Pid))
	require.NoError(t, err)
	return cmd, dev
}

// TestDumpScriptHere runs DumpScript on this machine with each sh: it
// finds its own shell, a process on a pty with that pty's number, and the
// pty's times as stat shows them.
func TestDumpScriptHere(t *testing.T) {
	sleep, dev := startOnPTY(t)
	fi, err := os.Stat(dev)
	require.NoError(t, err)
	for _, sh := range shells(t) {
		t.Run(strings.Join(sh, "-"), func(t *testing.T) {
			cmd := exec.Command(sh[0], append(sh[1:], "-c", DumpScript)...)
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			require.NoError(t, err)
			s, err := ParseDump(out)
			require.NoError(t, err)
			assert.Equal(t, cmd.Process.Pid, s.Self, "SELF is the script's $$")
			var found bool
			for _, p := range s.Procs {
				if p.PID != sleep.Process.Pid {
					continue
				}
				found = true
				n, ok := PTS(p.TTYNr)
				require.True(t, ok, "tty_nr %#x is a pts", p.TTYNr)
				assert.Equal(t, dev, "/dev/pts/"+strconv.Itoa(n))
				assert.Equal(t, "stat", s.TTYSource)
				require.Contains(t, s.TTYs, n)
				assert.Equal(t, fi.ModTime().Unix(), s.TTYs[n].Mtime)
			}
			assert.True(t, found, "the process on the pty is in the dump")

			// Here the census's shell is a child of this test: with that as
			// the root rule, its tree is its own and listed nowhere.
			root := func(p Proc) bool { return p.PPID == os.Getpid() }
			res := Rules{Idle: time.Hour}.Result(s, root)
			assert.Equal(t, s.Self, res.OwnPID)
			for _, r := range res.Roots {
				assert.NotEqual(t, s.Self, r.PID)
			}
		})
	}
}

// TestDumpScriptWithoutStat: an image without stat gets the ttys' times
// from ls --full-time (GNU's here), to the second; with neither, they are
// "none" and no tty shell is judged.
func TestDumpScriptWithoutStat(t *testing.T) {
	sleep, dev := startOnPTY(t)
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(dev, &st))
	n, err := strconv.Atoi(strings.TrimPrefix(dev, "/dev/pts/"))
	require.NoError(t, err)
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("no dash")
	}
	for _, c := range []struct {
		tools []string
		want  string
	}{{[]string{"cat", "ls"}, "ls"}, {[]string{"cat"}, "none"}} {
		bin := t.TempDir()
		for _, tool := range c.tools {
			p, err := exec.LookPath(tool)
			require.NoError(t, err)
			require.NoError(t, os.Symlink(p, bin+"/"+tool))
		}
		cmd := exec.Command(dash, "-c", DumpScript)
		cmd.Env = []string{"PATH=" + bin}
		out, err := cmd.Output()
		require.NoError(t, err)
		s, err := ParseDump(out)
		require.NoError(t, err)
		assert.Equal(t, c.want, s.TTYSource, "with %v", c.tools)
		if c.want == "ls" {
			require.Contains(t, s.TTYs, n)
			assert.Equal(t, TTYTimes{Atime: st.Atim.Sec, Mtime: st.Mtim.Sec, Ctime: min(st.Atim.Sec, st.Mtim.Sec)}, s.TTYs[n])
		}
		var found bool
		for _, p := range s.Procs {
			found = found || p.PID == sleep.Process.Pid
		}
		assert.True(t, found, "the table is read with cat alone")
	}
}

// TestPTSTimes checks on this kernel what the rules rely on: reading a
// pty's slave sets its atime, writing it its mtime, each only when the
// second leaves the stored one's 8-second window; stat reads neither.
func TestPTSTimes(t *testing.T) {
	master, slave, err := pty.Open()
	require.NoError(t, err)
	defer master.Close()
	defer slave.Close()
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	require.NoError(t, os.Chtimes(slave.Name(), past, past))
	times := func() (int64, int64) {
		var st syscall.Stat_t
		require.NoError(t, syscall.Stat(slave.Name(), &st))
		return st.Atim.Sec, st.Mtim.Sec
	}
	a, m := times()
	require.Equal(t, past.Unix(), a)
	require.Equal(t, past.Unix(), m)

	_, err = master.Write([]byte("x\n"))
	require.NoError(t, err)
	a, m = times()
	assert.Equal(t, past.Unix(), a, "input waiting unread is no input yet")
	buf := make([]byte, 8)
	_, err = slave.Read(buf)
	require.NoError(t, err)
	a, m = times()
	assert.GreaterOrEqual(t, a, time.Now().Unix()-1, "a read of the slave (the shell taking input) sets atime")
	assert.Equal(t, past.Unix(), m, "a read leaves mtime")

	_, err = slave.Write([]byte("out"))
	require.NoError(t, err)
	_, m = times()
	assert.GreaterOrEqual(t, m, time.Now().Unix()-1, "a write of the slave (output) sets mtime")
}

// TestReapScript: the reap script signals a process only while its PID
// still names the process the census saw (start time, and for a root its
// parent), never PID 1; SIG 0 only checks.
func TestReapScript(t *testing.T) {
	for _, sh := range shells(t) {
		t.Run(strings.Join(sh, "-"), func(t *testing.T) {
			start := func() (*exec.Cmd, uint64) {
				cmd := exec.Command("sleep", "60")
				require.NoError(t, cmd.Start())
				t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
				require.NoError(t, err)
				p, err := proctable.Parse(b, nil, nil)
				require.NoError(t, err)
				return cmd, p.StartTime
			}
			target, st := start()
			reused, rst := start()
			wrongParent, wst := start()
			rootOK, ost := start()
			run := func(sig string, args ...string) map[int]string {
				cmd := exec.Command(sh[0], append(append(sh[1:], "-c", ReapScript, "census-reap", sig), args...)...)
				out, err := cmd.Output()
				require.NoError(t, err)
				m, err := parseReap(string(out))
				require.NoError(t, err)
				return m
			}
			arg := func(c *exec.Cmd, st uint64, pp string) string {
				return fmt.Sprintf("%d:%d:%s", c.Process.Pid, st, pp)
			}
			me := strconv.Itoa(os.Getpid())
			all := []string{arg(target, st, "-"), arg(reused, rst+1, "-"), arg(wrongParent, wst, "0"), arg(rootOK, ost, me), "1:1:0", "999999999:5:-"}
			got := run("0", all...)
			assert.Equal(t, map[int]string{target.Process.Pid: "ALIVE", reused.Process.Pid: "REUSED", wrongParent.Process.Pid: "REUSED",
				rootOK.Process.Pid: "ALIVE", 1: "REFUSED", 999999999: "GONE"}, got)

			got = run("TERM", all...)
			assert.Equal(t, "SENT", got[target.Process.Pid])
			assert.Equal(t, "SENT", got[rootOK.Process.Pid])
			assert.Equal(t, "REUSED", got[reused.Process.Pid], "another start time: a reused PID is left alone")
			assert.Equal(t, "REUSED", got[wrongParent.Process.Pid], "a root must still have its parent")
			assert.Equal(t, "REFUSED", got[1])
			assert.Error(t, target.Wait(), "signalled")
			assert.Error(t, rootOK.Wait(), "signalled")
			for _, c := range []*exec.Cmd{reused, wrongParent} {
				assert.NoError(t, c.Process.Signal(syscall.Signal(0)), "left alive")
			}
			got = run("0", arg(target, st, "-"))
			assert.Equal(t, "GONE", got[target.Process.Pid])
		})
	}
}

func TestParseReapCutShort(t *testing.T) {
	_, err := parseReap("SENT 5\n")
	assert.Error(t, err)
}
