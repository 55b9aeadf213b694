package proctable

import (
	"bytes"
	"errors"
	"fmt"
	"math"
)

// Field numbers of /proc/PID/stat, counted from 1 as in proc(5).
const (
	fieldState     = 3
	fieldPPID      = 4
	fieldPGRP      = 5
	fieldSession   = 6
	fieldFlags     = 9
	fieldStartTime = 22
	fieldArgStart  = 48 // since Linux 3.5; 0 without ptrace access
	fieldArgEnd    = 49
	fieldEnvStart  = 50
	fieldEnvEnd    = 51
)

// stat holds the fields of /proc/PID/stat this package uses.
type stat struct {
	pid, ppid, pgid, sid int
	state                byte
	comm                 []byte // aliases the parsed buffer
	flags                uint64 // PF_* flags of the task
	startTime            uint64
	// Addresses of the argument and environment blocks. execve moves
	// them, so they tell a process image from the one it replaced.
	argStart, argEnd, envStart, envEnd uint64
}

// pfKthread is PF_KTHREAD, the flag of kernel threads.
const pfKthread = 0x00200000

// kernelThread reports whether s describes a kernel thread, which has no
// command line or environment.
func (s *stat) kernelThread() bool { return s.flags&pfKthread != 0 }

var errMalformedStat = errors.New("proctable: malformed stat line")

// parseStat parses the contents of /proc/PID/stat. The command name may
// contain spaces and parentheses: it runs from the first '(' to the last ')'.
// Fields after start time are optional (older kernels lack some).
func parseStat(b []byte) (stat, error) {
	var s stat
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return s, fmt.Errorf("%w: no (comm)", errMalformedStat)
	}
	pid, ok := parseUint(bytes.TrimSpace(b[:open]))
	if !ok || !fitsPID(pid, false) {
		return s, fmt.Errorf("%w: bad pid", errMalformedStat)
	}
	s.pid = int(pid)
	s.comm = b[open+1 : end]

	rest := b[end+1:]
	field := 2
	for field < fieldEnvEnd {
		rest = bytes.TrimLeft(rest, " \n")
		if len(rest) == 0 {
			break
		}
		tok := rest
		if i := bytes.IndexAny(rest, " \n"); i >= 0 {
			tok, rest = rest[:i], rest[i:]
		} else {
			rest = nil
		}
		field++
		switch field {
		case fieldState:
			if len(tok) != 1 {
				return s, fmt.Errorf("%w: bad state %q", errMalformedStat, tok)
			}
			s.state = tok[0]
			continue
		case fieldPPID, fieldPGRP, fieldSession, fieldFlags, fieldStartTime,
			fieldArgStart, fieldArgEnd, fieldEnvStart, fieldEnvEnd:
		default:
			continue
		}
		// ppid, pgrp and session are pid_t, printed with %d: a process
		// that is exiting can show -1 (seen here as pgrp -1 while a shell
		// died).
		id := field == fieldPPID || field == fieldPGRP || field == fieldSession
		neg := false
		if id {
			tok, neg = bytes.CutPrefix(tok, []byte("-"))
		}
		v, ok := parseUint(tok)
		if !ok || id && !fitsPID(v, neg) {
			return s, fmt.Errorf("%w: field %d is %q", errMalformedStat, field, tok)
		}
		sv := int(v)
		if neg {
			sv = -sv
		}
		switch field {
		case fieldPPID:
			s.ppid = sv
		case fieldPGRP:
			s.pgid = sv
		case fieldSession:
			s.sid = sv
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
	if field < fieldStartTime {
		return s, fmt.Errorf("%w: only %d fields", errMalformedStat, field)
	}
	return s, nil
}

// fitsPID reports whether the number of magnitude v, negative if neg, is a
// pid_t (a 32-bit signed integer): anything larger is no process ID, and
// would wrap around in an int (to -1 for 18446744073709551615).
func fitsPID(v uint64, neg bool) bool {
	if neg {
		return v <= -math.MinInt32
	}
	return v <= math.MaxInt32
}

// parseUint parses a decimal number without allocating.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
