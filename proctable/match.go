package proctable

import (
	"context"
	"fmt"
	"time"
)

// Match selects processes: those whose Session equals Session (if
// non-empty), or whose SID equals SID (if non-zero) and that carry no other
// session's tag. PIDs are reused (pid_max is often 32768), so a session
// leader's PID can name another session of ours a moment after the first
// one ended; the tag tells them apart. The zero Match selects nothing.
type Match struct {
	Session string
	SID     int
}

// Matches reports whether m selects p.
func (m Match) Matches(p Proc) bool {
	if m.Session != "" && p.Session == m.Session {
		return true
	}
	return m.SID != 0 && p.SID == m.SID && (p.Session == "" || m.Session == "")
}

// String describes m for messages.
func (m Match) String() string {
	switch {
	case m.Session != "" && m.SID != 0:
		return fmt.Sprintf("session %q or sid %d", m.Session, m.SID)
	case m.SID != 0:
		return fmt.Sprintf("sid %d", m.SID)
	default:
		return fmt.Sprintf("session %q", m.Session)
	}
}

// Live returns the live processes matching m, from a fresh scan.
func (t *Table) Live(ctx context.Context, m Match) ([]Proc, error) {
	procs, err := t.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return filter(procs, func(p Proc) bool { return p.Live() && m.Matches(p) }), nil
}

// WaitGone waits until no live process matches m, scanning repeatedly, and
// returns how long it took from the call. If ctx ends first it returns the
// processes still live at the last completed scan and ctx's error wrapped:
// "proctable: still live after 2s: pid=... : context deadline exceeded".
// A failing scan ends the wait with the scan's error.
func (t *Table) WaitGone(ctx context.Context, m Match) (time.Duration, []Proc, error) {
	start := time.Now()
	var live []Proc
	for {
		procs, err := t.Live(ctx, m)
		if err != nil {
			elapsed := time.Since(start)
			if ctx.Err() == nil { // the scan itself failed
				return elapsed, live, err
			}
			return elapsed, live, stillLive(elapsed, live, err)
		}
		if len(procs) == 0 {
			return time.Since(start), nil, nil
		}
		live = procs
	}
}

// stillLive wraps err, saying which processes outlived the wait.
func stillLive(elapsed time.Duration, live []Proc, err error) error {
	return fmt.Errorf("proctable: still live after %v: %s: %w",
		elapsed.Round(time.Millisecond), describe(live), err)
}

// filter returns the procs for which keep is true, in a new slice.
func filter(procs []Proc, keep func(Proc) bool) []Proc {
	var out []Proc
	for _, p := range procs {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}
