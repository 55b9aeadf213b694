package proctable

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// statLine builds a /proc/PID/stat line with all 52 fields, as Linux 6
// writes it.
func statLine(pid int, comm string, state byte, ppid, pgid, sid int, start uint64) string {
	f := make([]string, 53) // f[n] is field n
	for i := range f {
		f[i] = "0"
	}
	f[1], f[2], f[3] = fmt.Sprint(pid), "("+comm+")", string(state)
	f[4], f[5], f[6] = fmt.Sprint(ppid), fmt.Sprint(pgid), fmt.Sprint(sid)
	f[8] = "-1" // tpgid
	f[22] = fmt.Sprint(start)
	f[48], f[49], f[50], f[51] = "1000", "1010", "1010", "1100"
	return strings.Join(f[1:], " ") + "\n"
}

// kthreadLine builds the stat line of a kernel thread.
func kthreadLine(pid int, comm string) string {
	f := strings.Fields(statLine(pid, comm, 'I', 2, 0, 0, 10))
	f[8] = fmt.Sprint(pfKthread | 0x40)
	f[47], f[48], f[49], f[50] = "0", "0", "0", "0"
	return strings.Join(f, " ") + "\n"
}

func TestParseStat(t *testing.T) {
	for _, comm := range []string{"sh", "a) (b", "x y z", ")", "((", "()", ") R 1 2 3", "a\nb", ""} {
		t.Run(fmt.Sprintf("%q", comm), func(t *testing.T) {
			s, err := parseStat([]byte(statLine(42, comm, 'S', 7, 42, 40, 123456)))
			require.NoError(t, err)
			require.Equal(t, comm, string(s.comm))
			require.Equal(t, 42, s.pid)
			require.Equal(t, byte('S'), s.state)
			require.Equal(t, 7, s.ppid)
			require.Equal(t, 42, s.pgid)
			require.Equal(t, 40, s.sid)
			require.Equal(t, uint64(123456), s.startTime)
			require.Equal(t, [4]uint64{1000, 1010, 1010, 1100}, [4]uint64{s.argStart, s.argEnd, s.envStart, s.envEnd})
		})
	}
}

func TestParseStatKernelThread(t *testing.T) {
	s, err := parseStat([]byte(kthreadLine(3, "kworker/0:1")))
	require.NoError(t, err)
	require.True(t, s.kernelThread())
	s, err = parseStat([]byte(statLine(3, "sh", 'S', 1, 3, 3, 10)))
	require.NoError(t, err)
	require.False(t, s.kernelThread())
}

func TestParseStatShort(t *testing.T) {
	// Kernels before 3.5 stop at field 44; the image addresses stay 0.
	line := statLine(9, "old", 'R', 1, 9, 9, 77)
	f := strings.Fields(line)
	s, err := parseStat([]byte(strings.Join(f[:44], " ")))
	require.NoError(t, err)
	require.Equal(t, uint64(77), s.startTime)
	require.Zero(t, s.envStart)
}

func TestParseStatMalformed(t *testing.T) {
	for _, line := range []string{
		"",
		"12 sh S 1 2 3",
		"12 (sh S 1 2 3",
		"x (sh) S 1 2 3",
		"12 (sh) S 1 2 3 4 5", // too short for start time
		"12 (sh) SS" + strings.Repeat(" 1", 30),
		"12 (sh) S 1 x" + strings.Repeat(" 1", 30),
	} {
		_, err := parseStat([]byte(line))
		require.ErrorIs(t, err, errMalformedStat, "%q", line)
	}
}

func TestParseUint(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "7": 7, "18446744073709551615": 1<<64 - 1} {
		n, ok := parseUint([]byte(in))
		require.True(t, ok, in)
		require.Equal(t, want, n, in)
	}
	for _, in := range []string{"", "-1", "1a", "18446744073709551616", "99999999999999999999"} {
		_, ok := parseUint([]byte(in))
		require.False(t, ok, in)
	}
}

// TestMatchIgnoresAnotherSessionsTaggedProcessWithOurSID: after PID reuse a
// session leader of another session can carry the SID we look for.
func TestMatchIgnoresAnotherSessionsTaggedProcessWithOurSID(t *testing.T) {
	m := Match{Session: "ours", SID: 3080}
	if !m.Matches(Proc{SID: 3080, Session: "ours"}) {
		t.Error("our tagged process not matched")
	}
	if !m.Matches(Proc{SID: 3080}) {
		t.Error("an untagged process in our session (env cleared) not matched")
	}
	if m.Matches(Proc{SID: 3080, Session: "theirs"}) {
		t.Error("another session's process matched by a reused SID")
	}
	if !m.Matches(Proc{SID: 1, Session: "ours"}) {
		t.Error("our tagged process in another Unix session not matched")
	}
}

// TestStatNegativeIDs: the kernel prints ppid, pgrp and session with %d,
// and an exiting process can show -1 (seen: pgrp -1 while a shell died).
func TestStatNegativeIDs(t *testing.T) {
	line := []byte("2990 (sh) Z 2980 -1 -1 0 -1 4194564 0 0 0 0 0 0 0 0 20 0 1 0 123456 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n")
	s, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if s.pgid != -1 || s.sid != -1 || s.ppid != 2980 || s.startTime != 123456 {
		t.Errorf("got pgid=%d sid=%d ppid=%d start=%d", s.pgid, s.sid, s.ppid, s.startTime)
	}
}
