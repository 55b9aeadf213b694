package census

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/execconform/execconform/proctable"
)

// DumpScript is what one exec runs in the container (`sh -c DumpScript`):
// it prints the container's process table and the times of its ttys. It
// needs sh and cat only: read, printf, echo, command and for are builtins
// of every sh (dash, busybox ash, bash), and cat is one fork per process.
// The times of /dev/pts/N come from `stat -c` (GNU or busybox) when the
// image has it, else from `ls --full-time` (GNU or busybox), else they are
// reported as unknown (and no shell is flagged).
//
// Records start with \036 (ASCII RS) at the start of a line, a tag and a
// PID: "P pid" is followed by the stat line and, after "C pid", the raw
// command line (NUL-separated, as the kernel keeps it). The census's own
// shell is $$: its tree is never counted.
const DumpScript = `echo "` + dumpMagic + `"
printf 'SELF %s\n' "$$"
read -r u _ </proc/uptime && printf 'UPTIME %s\n' "$u"
while read -r k v; do [ "$k" = btime ] && printf 'BTIME %s\n' "$v" && break; done </proc/stat
for d in /proc/[0-9]*; do
read -r s 2>/dev/null <$d/stat || continue
printf '\036P %s\n%s\n\036C %s\n' "${d#/proc/}" "$s" "${d#/proc/}"
cat $d/cmdline 2>/dev/null
echo
done
set -- /dev/pts/[0-9]*
if [ -e "$1" ]; then
if command -v stat >/dev/null 2>&1; then
printf '\036T stat\n'; stat -c '%n %X %Y %Z' "$@" 2>/dev/null
elif command -v ls >/dev/null 2>&1; then
printf '\036T ls-atime\n'; ls -lu --full-time "$@" 2>/dev/null
printf '\036T ls-mtime\n'; ls -l --full-time "$@" 2>/dev/null
else
printf '\036T none\n'
fi
fi
printf '\036END\n'`

// dumpMagic is the first line of a dump: a format version.
const dumpMagic = "EXECCONFORM-CENSUS 1"

// ClockTicks is the kernel's USER_HZ (sysconf(_SC_CLK_TCK)), the unit of a
// process's start time in /proc/PID/stat. It is 100 on every Linux
// architecture Kubernetes runs on.
const ClockTicks = 100

// Proc is one process of a container's table.
type Proc struct {
	proctable.Proc
	// TTYNr is field 7 of /proc/PID/stat, the controlling terminal's
	// device number (0: none).
	TTYNr int
}

// TTYTimes are the inode times of /dev/pts/N, in seconds since the epoch.
// For a pty the kernel sets Atime when a process reads the slave (the
// terminal's input reaches a program) and Mtime when one writes it (its
// output), but only when the new time falls into another 8-second window
// than the stored one (tty_update_time, drivers/tty/tty_io.c): each is
// the start of an activity no older than 8 s.
type TTYTimes struct {
	Atime, Mtime, Ctime int64
}

// Snapshot is one container's process table, as DumpScript saw it.
type Snapshot struct {
	Self     int     // the PID of the census's own shell ($$)
	Uptime   float64 // seconds since boot (/proc/uptime)
	BootTime int64   // the epoch second of boot (btime of /proc/stat)
	Procs    []Proc
	// TTYs are the times of /dev/pts/N by N; nil when TTYSource is "" or
	// "none".
	TTYs map[int]TTYTimes
	// TTYSource is what read the tty times: "stat", "ls", "none" (the
	// image has neither), "" (there was no /dev/pts/N).
	TTYSource string
}

// Now is the container's time when the dump was taken: boot time plus
// uptime (the node's clock, not this machine's).
func (s *Snapshot) Now() time.Time {
	return time.Unix(s.BootTime, 0).Add(time.Duration(s.Uptime * float64(time.Second)))
}

// Age is how long p had run when the dump was taken.
func (s *Snapshot) Age(p Proc) time.Duration {
	started := float64(p.StartTime) / ClockTicks
	return max(0, time.Duration((s.Uptime-started)*float64(time.Second)))
}

// Started is when p started, on the node's clock.
func (s *Snapshot) Started(p Proc) time.Time {
	return time.Unix(s.BootTime, 0).Add(time.Duration(p.StartTime) * time.Second / ClockTicks)
}

// ErrCutShort is the error of a dump that did not run to its end (the exec
// was cut, the script was killed): it must not read as "no processes".
var ErrCutShort = errors.New("census: the dump is cut short")

// ParseDump parses DumpScript's output. A process that vanished between
// two reads (no stat line, or a malformed one) is skipped.
func ParseDump(out []byte) (*Snapshot, error) {
	if !bytes.HasPrefix(out, []byte(dumpMagic+"\n")) {
		return nil, fmt.Errorf("census: not a dump (want %q first): %q", dumpMagic, head(out, 120))
	}
	if !bytes.HasSuffix(bytes.TrimRight(out, "\n"), []byte("\036END")) {
		return nil, fmt.Errorf("%w: %q", ErrCutShort, tail(out, 120))
	}
	recs := bytes.Split(out, []byte("\n\036"))
	s := &Snapshot{}
	for line := range strings.Lines(string(recs[0])) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		var err error
		switch k {
		case "SELF":
			s.Self, err = strconv.Atoi(v)
		case "UPTIME":
			s.Uptime, err = strconv.ParseFloat(v, 64)
		case "BTIME":
			s.BootTime, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("census: dump header %q: %w", line, err)
		}
	}
	if s.Self == 0 || s.BootTime == 0 || s.Uptime == 0 {
		return nil, fmt.Errorf("census: dump header lacks SELF, UPTIME or BTIME: %q", head(recs[0], 200))
	}
	var cur *Proc
	var curStat []byte
	var atimes map[int]int64
	for _, r := range recs[1:] {
		tag, body, _ := bytes.Cut(r, []byte("\n"))
		kind, arg, _ := strings.Cut(string(tag), " ")
		switch kind {
		case "P":
			cur = nil
			st, _, _ := bytes.Cut(body, []byte("\n"))
			pr, err := proctable.Parse(st, nil, nil)
			if err != nil || strconv.Itoa(pr.PID) != arg {
				continue // vanished or torn: skipped
			}
			tty, ok := statField(st, 7)
			if !ok {
				continue
			}
			s.Procs = append(s.Procs, Proc{Proc: pr, TTYNr: int(int32(tty))})
			cur, curStat = &s.Procs[len(s.Procs)-1], st
		case "C":
			if cur == nil || strconv.Itoa(cur.PID) != arg {
				continue
			}
			if pr, err := proctable.Parse(curStat, body, nil); err == nil {
				cur.Cmdline = pr.Cmdline
			}
			cur = nil
		case "T":
			switch arg {
			case "stat":
				s.TTYSource, s.TTYs = "stat", parseStatTimes(body)
			case "ls-atime":
				atimes = parseLsTimes(body)
			case "ls-mtime":
				s.TTYSource, s.TTYs = "ls", map[int]TTYTimes{}
				for n, m := range parseLsTimes(body) {
					if a, ok := atimes[n]; ok {
						// ls shows no ctime beside: the earlier of the
						// two stands in for it.
						s.TTYs[n] = TTYTimes{Atime: a, Mtime: m, Ctime: min(a, m)}
					}
				}
			default:
				s.TTYSource = "none"
			}
		}
	}
	return s, nil
}

// statField returns field n (counted from 1, as in proc(5), n > 2) of a
// stat line: the fields after the command name, which runs to the last ')'.
func statField(st []byte, n int) (int64, bool) {
	end := bytes.LastIndexByte(st, ')')
	if end < 0 {
		return 0, false
	}
	f := strings.Fields(string(st[end+1:]))
	if len(f) < n-2 {
		return 0, false
	}
	v, err := strconv.ParseInt(f[n-3], 10, 64)
	return v, err == nil
}

// parseStatTimes parses `stat -c '%n %X %Y %Z'` lines.
func parseStatTimes(b []byte) map[int]TTYTimes {
	m := map[int]TTYTimes{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		n, ok := ptsNumber(f[0])
		var t [3]int64
		for i := range t {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			ok = ok && err == nil
			t[i] = v
		}
		if ok {
			m[n] = TTYTimes{Atime: t[0], Mtime: t[1], Ctime: t[2]}
		}
	}
	return m
}

// parseLsTimes parses `ls -l --full-time` lines, GNU's
// ("... 2026-12-07 13:01:59.570106040 +0000 /dev/pts/0") or busybox's
// (the same without the fraction): the time of each /dev/pts/N.
func parseLsTimes(b []byte) map[int]int64 {
	m := map[int]int64{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		n, ok := ptsNumber(f[len(f)-1])
		if !ok {
			continue
		}
		t, err := time.Parse("2006-01-02 15:04:05.999999999 -0700", strings.Join(f[len(f)-4:len(f)-1], " "))
		if err == nil {
			m[n] = t.Unix()
		}
	}
	return m
}

// ptsNumber is N of "/dev/pts/N".
func ptsNumber(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "/dev/pts/")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}

// PTS returns N when the device number ttyNr (field 7 of /proc/PID/stat)
// is /dev/pts/N: the Unix98 pty slaves have majors 136 to 143, 256 minors
// each (a kernel with more ptys keeps major 136 and a 20-bit minor). The
// number is encoded as in the kernel's new_encode_dev: minor's low byte in
// bits 0-7, the major in bits 8-19, the rest of the minor in bits 20-31.
func PTS(ttyNr int) (int, bool) {
	u := uint32(ttyNr)
	major := (u >> 8) & 0xfff
	minor := u&0xff | (u>>12)&0xfff00
	if ttyNr == 0 || major < 136 || major > 143 {
		return 0, false
	}
	return int((major-136)*256 + minor), true
}

func head(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		return "..." + string(b[len(b)-n:])
	}
	return string(b)
}
