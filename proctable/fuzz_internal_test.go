package proctable

// Fuzz tests of the /proc parsers: parseStat (/proc/PID/stat),
// parseEnviron (/proc/PID/environ) and parseCmdline (/proc/PID/cmdline).
// They read the kernel's text here and, through realapiserver, what a pod's
// sh printed of it, so they must not panic on any bytes and must never
// read a field that is not there.
//
//	go test -run '^$' -fuzz FuzzParseStat -fuzztime 60s -parallel 1 ./proctable/
//
// Without -fuzz, go test runs each target on its seeds only.

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Real stat lines of this kind of machine: init, a user process with its
// argument and environment addresses, a kernel thread, one in a pod whose
// session leader is outside its PID namespace, and a Linux 3.x line
// without the fields after 44.
var realStatLines = []string{
	"1 (process_api) S 0 0 0 0 -1 4194560 82423 319753262 0 74569 1930 11569 694154 407780 10 -10 14 0 24 44400640 2875 18446744073709551615 1 1 0 0 0 0 0 4096 1256 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
	"5623 (cat) R 5620 5620 25522 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0 4510078 3133440 413 18446744073709551615 94395057778688 94395057798569 140723225561024 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94395057814576 94395057816192 94395921805312 140723225561795 140723225561815 140723225561815 140723225563115 0\n",
	"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 1 0 0 20 0 1 0 24 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
	"7 (sh) Z 0 -1 -1 34816 -1 4227084 0 0 0 0 0 0 0 0 20 0 1 0 4510078 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
	"4194304 (a) (b)) S 1 4194304 4194304 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 18446744073709551615 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
}

// refField is one field of a stat line as refStat reads it.
type refField struct {
	num  int // field number, from 1 as in proc(5)
	text string
}

// refStat reads a stat line the plain way, independently of parseStat:
// the command name from the first '(' to the last ')', then fields
// separated by spaces or newlines. It returns the fields parseStat keeps,
// and false for a line that is not one: a missing (comm), a PID, parent,
// group or session that is not a pid_t (a 32-bit signed integer; the PID
// not negative), a state that is not one byte, fewer than 22 fields, or a
// kept numeric field that is not a decimal uint64.
func refStat(line string) (stat, bool) {
	var s stat
	open, end := strings.Index(line, "("), strings.LastIndex(line, ")")
	if open < 0 || end < open {
		return s, false
	}
	pid, err := strconv.ParseInt(strings.TrimSpace(line[:open]), 10, 32)
	if err != nil || pid < 0 {
		return s, false
	}
	s.pid, s.comm = int(pid), []byte(line[open+1:end])
	var fields []refField
	for i, f := range strings.FieldsFunc(line[end+1:], func(r rune) bool { return r == ' ' || r == '\n' }) {
		fields = append(fields, refField{num: 3 + i, text: f})
	}
	if len(fields) < fieldStartTime-2 {
		return s, false
	}
	for _, f := range fields {
		if f.num > fieldEnvEnd {
			break
		}
		var err error
		switch f.num {
		case fieldState:
			if len(f.text) != 1 {
				return s, false
			}
			s.state = f.text[0]
		case fieldPPID, fieldPGRP, fieldSession:
			var v int64
			v, err = strconv.ParseInt(f.text, 10, 32)
			switch f.num {
			case fieldPPID:
				s.ppid = int(v)
			case fieldPGRP:
				s.pgid = int(v)
			case fieldSession:
				s.sid = int(v)
			}
		case fieldFlags, fieldStartTime, fieldArgStart, fieldArgEnd, fieldEnvStart, fieldEnvEnd:
			var v uint64
			v, err = strconv.ParseUint(f.text, 10, 64)
			switch f.num {
			case fieldFlags:
				s.flags = v
			case fieldStartTime:
				s.startTime = v
			case fieldArgStart:
				s.argStart = v
			case fieldArgEnd:
				s.argEnd = v
			case fieldEnvStart:
				s.envStart = v
			case fieldEnvEnd:
				s.envEnd = v
			}
		}
		if err != nil {
			return s, false
		}
	}
	return s, true
}

// sameStat reports how a and b differ, "" if they do not.
func sameStat(a, b stat) string {
	if !bytes.Equal(a.comm, b.comm) {
		return fmt.Sprintf("comm %q, want %q", a.comm, b.comm)
	}
	a.comm, b.comm = nil, nil
	if !reflect.DeepEqual(a, b) {
		return fmt.Sprintf("%+v, want %+v", a, b)
	}
	return ""
}

// FuzzParseStat: on any bytes parseStat does not panic, fails only with
// errMalformedStat, and whatever it accepts refStat reads the same: the
// command name between the first '(' and the last ')', every field it
// keeps as the number written there (no wrap-around of a number too large
// for its type), a missing optional field as 0.
func FuzzParseStat(f *testing.F) {
	for _, l := range realStatLines {
		f.Add([]byte(l))
	}
	for _, comm := range []string{"sh", "a) (b", ") R 1 2 3", "a\nb", "", "((", "x y z"} {
		f.Add([]byte(statLine(42, comm, 'S', 7, 42, 40, 123456)))
	}
	f.Add([]byte(kthreadLine(3, "kworker/0:1")))
	f.Add([]byte(strings.Join(strings.Fields(statLine(9, "old", 'S', 1, 9, 9, 77))[:22], " "))) // a kernel before 3.5
	f.Add([]byte("42 (sh) S"))
	// Numbers that do not fit a pid_t: 2^64-1 read as an int was -1.
	f.Add([]byte(strings.Replace(statLine(1, "sh", 'S', 1, 1, 1, 5), "1", "18446744073709551615", 1)))
	f.Add([]byte(statLine(1, "sh", 'S', 2200000000, -2147483649, 1, 5)))
	f.Add([]byte("x (sh) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 10"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		s, err := parseStat(b)
		if !bytes.Equal(in, b) {
			t.Fatalf("parseStat changed its input: %q", in)
		}
		if err != nil {
			if !errors.Is(err, errMalformedStat) {
				t.Fatalf("error %v is not errMalformedStat", err)
			}
			return
		}
		want, ok := refStat(string(b))
		if !ok {
			t.Fatalf("accepted %q, which is not a stat line: %+v", b, s)
		}
		if d := sameStat(s, want); d != "" {
			t.Fatalf("%q: %s", b, d)
		}
	})
}

// kernelStates are the state letters of proc(5).
const kernelStates = "RSDZTtXxKWPI"

// FuzzStatRoundTrip: a stat line written as the kernel writes it, from
// any command name (spaces, parentheses, newlines, any bytes), any
// state letter, any pid_t values and any number of fields from 22 (old
// kernels) to 52, parses back to the values written.
func FuzzStatRoundTrip(f *testing.F) {
	f.Add(uint32(42), []byte("sh"), uint8(1), int32(7), int32(42), int32(40), uint64(0x400100), uint64(123456), uint64(94395057778688), uint8(52), false)
	f.Add(uint32(3), []byte("kworker/0:1"), uint8(11), int32(2), int32(0), int32(0), uint64(pfKthread|0x40), uint64(10), uint64(0), uint8(52), true)
	f.Add(uint32(7), []byte(") S 1 2 3 ("), uint8(3), int32(0), int32(-1), int32(-1), uint64(0), uint64(math.MaxUint64), uint64(1), uint8(22), true)
	f.Add(uint32(4194304), []byte("a) (b"), uint8(0), int32(math.MaxInt32), int32(math.MinInt32), int32(1), uint64(math.MaxUint64), uint64(0), uint64(math.MaxUint64), uint8(49), false)
	f.Add(uint32(1), []byte("\n(\n)\n"), uint8(5), int32(1), int32(1), int32(1), uint64(1), uint64(1), uint64(1), uint8(30), true)
	f.Fuzz(func(t *testing.T, pid uint32, comm []byte, st uint8, ppid, pgid, sid int32, flags, start, addr uint64, n uint8, newline bool) {
		nf := fieldStartTime + int(n)%(52-fieldStartTime+1) // 22..52 fields
		state := kernelStates[int(st)%len(kernelStates)]
		want := stat{
			pid: int(pid & math.MaxInt32), ppid: int(ppid), pgid: int(pgid), sid: int(sid),
			state: state, comm: comm, flags: flags, startTime: start,
		}
		fs := make([]string, nf+1) // fs[n] is field n
		for i := range fs {
			fs[i] = "0"
		}
		fs[1], fs[2], fs[3] = strconv.Itoa(want.pid), "("+string(comm)+")", string(state)
		fs[4], fs[5], fs[6] = strconv.Itoa(want.ppid), strconv.Itoa(want.pgid), strconv.Itoa(want.sid)
		fs[8] = "-1" // tpgid
		fs[fieldFlags] = strconv.FormatUint(flags, 10)
		fs[fieldStartTime] = strconv.FormatUint(start, 10)
		if nf >= 23 {
			fs[23] = strconv.FormatUint(addr, 10) // vsize: a large number parseStat skips
		}
		for i, p := range []*uint64{&want.argStart, &want.argEnd, &want.envStart, &want.envEnd} {
			if fieldArgStart+i <= nf {
				*p = addr + uint64(i)
				fs[fieldArgStart+i] = strconv.FormatUint(*p, 10)
			}
		}
		line := strings.Join(fs[1:], " ")
		if newline {
			line += "\n"
		}
		s, err := parseStat([]byte(line))
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if d := sameStat(s, want); d != "" {
			t.Fatalf("%q: %s", line, d)
		}
	})
}

// refEnviron reads the two tags the plain way: split on NUL, the first
// entry of each name wins.
func refEnviron(b []byte) (session string, serverPID int) {
	var seenSession, seenPID bool
	for _, e := range strings.Split(string(b), "\x00") {
		name, value, ok := strings.Cut(e, "=")
		switch {
		case !ok:
		case name == SessionEnv && !seenSession:
			session, seenSession = value, true
		case name == ServerPIDEnv && !seenPID:
			seenPID = true
			if n, err := strconv.Atoi(value); err == nil && n > 0 {
				serverPID = n
			}
		}
	}
	return session, serverPID
}

// FuzzParseEnviron: on any bytes parseEnviron does not panic and reads
// what refEnviron reads; a session it returns is the value of an entry
// EXECCONFORM_SESSION=... of the input (never made up or cut from another
// entry), and a server PID is positive.
func FuzzParseEnviron(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("PATH=/usr/bin:/bin\x00HOME=/root\x00" + SessionEnv + "=s-123\x00" + ServerPIDEnv + "=4567\x00TERM=xterm\x00"))
	f.Add([]byte(ServerPIDEnv + "=12\x00" + SessionEnv + "=s1")) // no final NUL
	f.Add([]byte(SessionEnv + "=first\x00" + SessionEnv + "=second\x00" + ServerPIDEnv + "=abc\x00" + ServerPIDEnv + "=9\x00"))
	f.Add([]byte("X" + SessionEnv + "=no\x00" + SessionEnv + "X=no\x00" + SessionEnv + "\x00" + ServerPIDEnv + "=-5\x00"))
	f.Add([]byte(SessionEnv + "=a=b c\x00\x00\x00" + ServerPIDEnv + "=+0012\x00"))
	f.Add([]byte(SessionEnv + "=\xff\xfe\x00" + ServerPIDEnv + "=99999999999999999999\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		session, pid := parseEnviron(b)
		if !bytes.Equal(in, b) {
			t.Fatalf("parseEnviron changed its input: %q", in)
		}
		wantSession, wantPID := refEnviron(b)
		if session != wantSession || pid != wantPID {
			t.Fatalf("%q: session %q, server PID %d; want %q, %d", b, session, pid, wantSession, wantPID)
		}
		if session != "" {
			entry := "\x00" + SessionEnv + "=" + session + "\x00"
			if !strings.Contains("\x00"+string(b)+"\x00", entry) {
				t.Fatalf("%q: session %q is not an entry of the input", b, session)
			}
		}
		if pid < 0 {
			t.Fatalf("%q: server PID %d", b, pid)
		}
	})
}

// FuzzParseCmdline: on any bytes parseCmdline does not panic; it returns
// nil for an empty command line (nothing, or a lone NUL), and otherwise
// the arguments that, joined with NUL, give back the input without its
// final NUL.
func FuzzParseCmdline(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("\x00"))
	f.Add([]byte("sh\x00-c\x00a b\x00\x00"))
	f.Add([]byte("/bin/sh\x00-i\x00"))
	f.Add([]byte("rewritten title"))
	f.Add([]byte("\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		args := parseCmdline(b)
		if !bytes.Equal(in, b) {
			t.Fatalf("parseCmdline changed its input: %q", in)
		}
		trimmed := strings.TrimSuffix(string(b), "\x00")
		if trimmed == "" {
			if args != nil {
				t.Fatalf("%q: %q, want nil", b, args)
			}
			return
		}
		if got := strings.Join(args, "\x00"); got != trimmed {
			t.Fatalf("%q: arguments %q join to %q", b, args, got)
		}
		if len(args) != strings.Count(trimmed, "\x00")+1 {
			t.Fatalf("%q: %d arguments", b, len(args))
		}
	})
}
