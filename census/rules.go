package census

import (
	"fmt"
	"path"
	"slices"
	"time"
)

// Tree is one exec'd process tree: a root (a process an exec started) and
// its descendants, parents before children.
type Tree struct {
	Root        Proc
	Descendants []Proc
	// Own is set on the census's own exec (the tree holding its $$).
	Own bool
}

// RootFunc says whether p is the root of an exec'd tree.
type RootFunc func(p Proc) bool

// ExecRoot is the rule of a container's own PID namespace: a process that
// runc exec (or any runtime's exec) starts has its parent outside the
// namespace, so its PPID reads 0; PID 1 is the container's main process,
// whose parent is outside too.
func ExecRoot(p Proc) bool { return p.PPID == 0 && p.PID != 1 }

// Trees groups the live processes of s into exec'd trees: one per process
// that root says is one. The tree holding s.Self is marked Own. A process
// whose chain of parents leads to no root (PID 1's descendants, the
// container's own workload) is in no tree.
func Trees(s *Snapshot, root RootFunc) []Tree {
	children := map[int][]Proc{}
	byPID := map[int]Proc{}
	for _, p := range s.Procs {
		if !p.Live() {
			continue
		}
		byPID[p.PID] = p
		if !root(p) {
			children[p.PPID] = append(children[p.PPID], p)
		}
	}
	ownRoot := -1
	for pid, seen := s.Self, 0; seen < len(byPID)+1; seen++ { // bounded: a cycle of PPIDs cannot loop
		p, ok := byPID[pid]
		if !ok {
			break
		}
		if root(p) {
			ownRoot = p.PID
			break
		}
		pid = p.PPID
	}
	var trees []Tree
	for _, p := range s.Procs {
		if !p.Live() || !root(p) {
			continue
		}
		t := Tree{Root: p, Own: p.PID == ownRoot}
		queue := []int{p.PID}
		seen := map[int]bool{p.PID: true}
		for len(queue) > 0 {
			pid := queue[0]
			queue = queue[1:]
			kids := slices.Clone(children[pid])
			slices.SortFunc(kids, func(a, b Proc) int { return a.PID - b.PID })
			for _, k := range kids {
				if !seen[k.PID] {
					seen[k.PID] = true
					t.Descendants = append(t.Descendants, k)
					queue = append(queue, k.PID)
				}
			}
		}
		trees = append(trees, t)
	}
	slices.SortFunc(trees, func(a, b Tree) int { return a.Root.PID - b.Root.PID })
	return trees
}

// DefaultIdle is the default of Rules.Idle.
const DefaultIdle = time.Hour

// ttyWindow is the granularity of a pty's inode times: the kernel updates
// them only when the new second differs from the stored one in more than
// its lowest 3 bits (tty_update_time), so the last activity lies in the
// 8-second window that starts at the stored time's window.
const ttyWindow = 8

// Shells are the command names (comm, or argv[0]'s base) that count as an
// interactive shell.
var Shells = []string{"sh", "ash", "bash", "dash", "zsh", "ksh", "mksh", "yash", "fish", "tcsh", "csh", "busybox"}

// Rules flag likely orphans (docs/census.md).
type Rules struct {
	// Idle is how long a tty shell's terminal must have had no input (and,
	// unless IncludeBusy, no output) to be flagged.
	Idle time.Duration
	// IncludeBusy flags a tty shell whose terminal had output within Idle
	// (a program writing to a terminal nobody reads: top, tail -f, a
	// build) on its input alone.
	IncludeBusy bool
	// IncludeNoTTY flags exec'd trees without a tty older than Idle
	// (kubectl exec POD -- sleep 1d, started and forgotten).
	IncludeNoTTY bool
}

// Verdict is what the rules say of one tree.
type Verdict struct {
	Flagged bool
	// Reason says why, in words: "tty idle 2h (no input since ...)", or
	// why not: "input 3s ago".
	Reason string
	// TTY is "pts/N", "" without one.
	TTY string
	// InputIdle and OutputIdle are the least time since the tty's last
	// input and output can have been (the end of the 8 s window of its
	// times); -1 when unknown.
	InputIdle, OutputIdle time.Duration
	// InputSeen is false when the tty's atime is still its ctime (no
	// input read after its first window).
	InputSeen bool
	Times     *TTYTimes
}

// Judge applies the rules to t, a tree of s.
func (r Rules) Judge(s *Snapshot, t Tree) Verdict {
	v := Verdict{InputIdle: -1, OutputIdle: -1}
	if t.Own {
		v.Reason = "the census's own exec"
		return v
	}
	n, onTTY := PTS(t.Root.TTYNr)
	age := s.Age(t.Root)
	if !onTTY {
		if t.Root.TTYNr != 0 {
			v.TTY = fmt.Sprintf("dev %d:%d", (uint32(t.Root.TTYNr)>>8)&0xfff, t.Root.TTYNr&0xff)
		}
		if r.IncludeNoTTY && age > r.Idle {
			v.Flagged, v.Reason = true, fmt.Sprintf("no tty, running %s (> %s, --include-notty)", round(age), r.Idle)
			return v
		}
		v.Reason = "no tty (a non-interactive exec)"
		return v
	}
	v.TTY = fmt.Sprintf("pts/%d", n)
	if !isShell(t.Root) {
		v.Reason = fmt.Sprintf("on %s but not a shell (%s)", v.TTY, t.Root.Comm)
		return v
	}
	tt, ok := s.TTYs[n]
	if !ok {
		v.Reason = fmt.Sprintf("the times of /dev/%s are unknown (tty times: %q)", v.TTY, s.TTYSource)
		return v
	}
	v.Times = &tt
	now := s.Now().Unix()
	v.InputIdle = windowIdle(now, tt.Atime)
	v.OutputIdle = windowIdle(now, tt.Mtime)
	v.InputSeen = tt.Atime != tt.Ctime
	switch {
	case v.InputIdle <= r.Idle:
		v.Reason = fmt.Sprintf("input within %s", round(v.InputIdle+ttyWindow*time.Second))
	case v.OutputIdle <= r.Idle && !r.IncludeBusy:
		v.Reason = fmt.Sprintf("no input for %s, but output within %s (busy: --include-busy flags it)", round(v.InputIdle), round(v.OutputIdle+ttyWindow*time.Second))
	default:
		v.Flagged = true
		what := "no input for " + round(v.InputIdle).String()
		if !v.InputSeen {
			what = "no input after its first seconds (the tty opened " + round(time.Duration(now-tt.Ctime)*time.Second).String() + " ago)"
		}
		v.Reason = fmt.Sprintf("interactive shell on %s, %s (> %s)", v.TTY, what, r.Idle)
	}
	return v
}

// windowIdle is the least time since an activity whose tty time is t
// (seconds) can have happened, at now: the stored time's 8 s window may
// hold later activity that did not move it.
func windowIdle(now, t int64) time.Duration {
	end := t&^(ttyWindow-1) + ttyWindow
	return max(0, time.Duration(now-end)*time.Second)
}

func isShell(p Proc) bool {
	names := []string{p.Comm}
	if len(p.Cmdline) > 0 {
		names = append(names, path.Base(p.Cmdline[0]))
	}
	for _, n := range names {
		if slices.Contains(Shells, n) || len(n) > 1 && n[0] == '-' && slices.Contains(Shells, n[1:]) {
			return true
		}
	}
	return false
}

func round(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}
