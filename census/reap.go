package census

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ReapScript signals processes named by PID and start time, each
// re-checked in the container just before: `sh -c ReapScript census-reap
// SIG PID:START:PPID...` (SIG 0 only checks). A process is signalled only
// if /proc/PID/stat still shows that start time (field 22: the PID was not
// reused) and, for a root (PPID not "-"), still that parent (0 in a
// container: the exec's); never PID 1 or the script's own shell. It prints a line per process: SENT, FAILED, ALIVE
// (SIG 0), GONE (no such process, or a zombie), REUSED, REFUSED. It needs
// sh alone (read and kill are builtins).
const ReapScript = `sig=$1; shift
for a in "$@"; do
p=${a%%:*}; r=${a#*:}; st=${r%%:*}; pp=${r#*:}
if [ "$p" = 1 ] || [ "$p" = "$$" ]; then echo "REFUSED $p"; continue; fi
if ! read -r s 2>/dev/null <"/proc/$p/stat"; then echo "GONE $p"; continue; fi
set -- ${s##*) }
if [ "$1" = Z ] || [ "$1" = X ]; then echo "GONE $p"; continue; fi
if [ "${20}" != "$st" ]; then echo "REUSED $p"; continue; fi
if [ "$pp" != - ] && [ "$2" != "$pp" ]; then echo "REUSED $p"; continue; fi
if [ "$sig" = 0 ]; then echo "ALIVE $p"; continue; fi
if kill -"$sig" "$p" 2>/dev/null; then echo "SENT $p"; else echo "FAILED $p"; fi
done
echo END`

// ReapTarget is one process of a flagged tree.
type ReapTarget struct {
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"start_ticks"`
	Comm       string `json:"comm"`
	Root       bool   `json:"root"`
	ppid       int
	// Signals are the signals sent ("HUP", "KILL").
	Signals []string `json:"signals"`
	// Outcome: "ended" (gone after the signals), "alive" (still there),
	// "reused" (its PID now names another process: left alone), "refused"
	// (PID 1 or the reaper's own shell), "gone" (gone before any signal).
	Outcome string `json:"outcome"`
}

// ReapResult is what Reap did in one container.
type ReapResult struct {
	Namespace string       `json:"namespace"`
	Pod       string       `json:"pod"`
	Container string       `json:"container"`
	Targets   []ReapTarget `json:"targets"`
	Ended     int          `json:"ended"`
	// FlaggedAfter is how many trees a census right after still flags
	// (-1 if it could not run).
	FlaggedAfter int    `json:"flagged_after"`
	Error        string `json:"error,omitempty"`
}

func (r ReapResult) summary() string {
	s := fmt.Sprintf("ended %d of %d process(es)", r.Ended, len(r.Targets))
	var pids []string
	for _, t := range r.Targets {
		pids = append(pids, fmt.Sprintf("%d %s %s", t.PID, t.Comm, t.Outcome))
	}
	if len(pids) > 0 {
		s += " (" + strings.Join(pids, ", ") + ")"
	}
	s += fmt.Sprintf("; still flagged after: %d", r.FlaggedAfter)
	if r.Error != "" {
		s += "; error: " + r.Error
	}
	return s
}

// ReapOptions tune Reap.
type ReapOptions struct {
	// Grace is how long the trees have after SIGHUP before SIGKILL, and
	// after SIGKILL before they count as alive (default 2 s).
	Grace time.Duration
	// Gap is the pause between two checks (execs) while waiting (default
	// 200 ms).
	Gap time.Duration
}

// Reap ends the flagged trees of res, a census of t with the snapshot
// snap: SIGHUP to every process of each (root and descendants, as the
// census saw them), a bounded wait for them to go, SIGKILL to what is
// left, and a fresh census (o) to report what it still flags. Every
// signal goes through ReapScript, which re-checks each PID's start time in
// the container first. Unflagged trees, PID 1 and processes outside the
// flagged trees are never signalled.
func Reap(ctx context.Context, ex Execer, t Target, snap *Snapshot, o Options, ro ReapOptions) ReapResult {
	if ro.Grace <= 0 {
		ro.Grace = 2 * time.Second
	}
	if ro.Gap <= 0 {
		ro.Gap = 200 * time.Millisecond
	}
	out := ReapResult{Namespace: t.Namespace, Pod: t.Pod, Container: t.Container, Targets: []ReapTarget{}, FlaggedAfter: -1}
	o.defaults()
	for _, tr := range Flagged(snap, o) {
		out.Targets = append(out.Targets, ReapTarget{PID: tr.Root.PID, StartTicks: tr.Root.StartTime, Comm: tr.Root.Comm, Root: true, ppid: tr.Root.PPID, Signals: []string{}})
		for _, d := range tr.Descendants {
			out.Targets = append(out.Targets, ReapTarget{PID: d.PID, StartTicks: d.StartTime, Comm: d.Comm, Signals: []string{}})
		}
	}
	if len(out.Targets) == 0 {
		out.FlaggedAfter = 0
		return out
	}
	signal := func(sig string, which func(ReapTarget) bool) (map[int]string, error) {
		args := []string{"sh", "-c", ReapScript, "census-reap", sig}
		for _, rt := range out.Targets {
			if which(rt) {
				pp := "-"
				if rt.Root {
					pp = strconv.Itoa(rt.ppid)
				}
				args = append(args, fmt.Sprintf("%d:%d:%s", rt.PID, rt.StartTicks, pp))
			}
		}
		if len(args) == 5 {
			return map[int]string{}, nil
		}
		ectx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		b, err := ex.Exec(ectx, t, args)
		if err != nil {
			return nil, err
		}
		return parseReap(string(b))
	}
	pending := func(rt ReapTarget) bool { return rt.Outcome == "" || rt.Outcome == "alive" }
	apply := func(sig string, got map[int]string) {
		for i := range out.Targets {
			rt := &out.Targets[i]
			switch got[rt.PID] {
			case "SENT":
				rt.Signals = append(rt.Signals, sig)
				rt.Outcome = "alive"
			case "ALIVE":
				rt.Outcome = "alive"
			case "GONE":
				if len(rt.Signals) == 0 {
					rt.Outcome = "gone"
				} else {
					rt.Outcome = "ended"
				}
			case "REUSED":
				rt.Outcome = "reused"
			case "REFUSED":
				rt.Outcome = "refused"
			}
		}
	}
	// wait checks until none is alive or the grace is over.
	wait := func() error {
		deadline := time.Now().Add(ro.Grace)
		for {
			got, err := signal("0", func(rt ReapTarget) bool { return rt.Outcome == "alive" })
			if err != nil {
				return err
			}
			apply("", got)
			if !slices.ContainsFunc(out.Targets, func(rt ReapTarget) bool { return rt.Outcome == "alive" }) || time.Now().After(deadline) {
				return nil
			}
			tm := time.NewTimer(ro.Gap)
			select {
			case <-ctx.Done():
				tm.Stop()
				return ctx.Err()
			case <-tm.C:
			}
		}
	}
	var errs []string
	for _, sig := range []string{"HUP", "KILL"} {
		got, err := signal(sig, pending)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", sig, err))
			break
		}
		apply(sig, got)
		if err := wait(); err != nil {
			errs = append(errs, fmt.Sprintf("after %s: %v", sig, err))
			break
		}
		if !slices.ContainsFunc(out.Targets, pending) {
			break
		}
	}
	for _, rt := range out.Targets {
		if rt.Outcome == "ended" {
			out.Ended++
		}
	}
	after, _ := CensusOne(ctx, ex, t, o)
	if after.Error == "" {
		out.FlaggedAfter = after.Flagged
	} else {
		errs = append(errs, "census after: "+after.Error)
	}
	out.Error = strings.Join(errs, "; ")
	return out
}

// Flagged are the trees of snap the rules of o flag (never the census's
// own, never in a shared PID namespace), as Result judges them.
func Flagged(snap *Snapshot, o Options) []Tree {
	o.defaults()
	res := o.Rules.Result(snap, o.Root)
	flagged := map[int]uint64{}
	for _, r := range res.Roots {
		if r.Flagged {
			flagged[r.PID] = r.StartTicks
		}
	}
	var out []Tree
	for _, tr := range Trees(snap, o.Root) {
		if st, ok := flagged[tr.Root.PID]; ok && st == tr.Root.StartTime && !tr.Own && tr.Root.PID != 1 {
			out = append(out, tr)
		}
	}
	return out
}

// parseReap parses ReapScript's output: the word of each PID.
func parseReap(out string) (map[int]string, error) {
	if !strings.HasSuffix(strings.TrimSpace(out), "END") {
		return nil, fmt.Errorf("census: the reap script's output is cut short: %q", tail([]byte(out), 200))
	}
	m := map[int]string{}
	for line := range strings.Lines(out) {
		w, p, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		if pid, err := strconv.Atoi(p); err == nil {
			m[pid] = w
		}
	}
	return m, nil
}
