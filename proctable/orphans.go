package proctable

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Tagged returns every live process carrying EXECCONFORM_SESSION (any
// value), excluding the calling process, from a fresh scan.
func (t *Table) Tagged(ctx context.Context) ([]Proc, error) {
	procs, err := t.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	return filter(procs, func(p Proc) bool {
		return p.Live() && p.Session != "" && p.PID != self
	}), nil
}

// Orphans returns the live processes that carry EXECCONFORM_SESSION but
// whose EXECCONFORM_SERVER_PID no longer names a live process, or names one
// that started after them (a reused PID). A missing or malformed server PID
// counts as naming no process. The calling process and its ancestors are
// never orphans, so that Sweep cannot kill its own caller.
func (t *Table) Orphans(ctx context.Context) ([]Proc, error) {
	procs, err := t.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return orphans(procs, os.Getpid()), nil
}

// orphans implements Orphans on one scan, for the process self.
func orphans(procs []Proc, self int) []Proc {
	live := make(map[int]Proc, len(procs))
	for _, p := range procs {
		if p.Live() {
			live[p.PID] = p
		}
	}
	exempt := make(map[int]bool)
	for pid := self; pid > 0 && !exempt[pid]; pid = live[pid].PPID {
		exempt[pid] = true
	}
	return filter(procs, func(p Proc) bool {
		if !p.Live() || p.Session == "" || exempt[p.PID] {
			return false
		}
		server, ok := live[p.ServerPID]
		return !ok || server.StartTime > p.StartTime
	})
}

// Sweep kills the orphans (see Orphans) with SIGKILL, and the process groups
// they lead, scanning until none is left, and returns those it killed.
// If ctx ends first, the error lists the orphans still live.
func (t *Table) Sweep(ctx context.Context) ([]Proc, error) {
	return t.sweep(ctx, nil)
}

// sweep is Sweep restricted to the orphans for which keep is true (all if
// keep is nil).
func (t *Table) sweep(ctx context.Context, keep func(Proc) bool) ([]Proc, error) {
	start := time.Now()
	signalled := make(map[id]bool)
	reported := make(map[id]bool)
	var killed, live []Proc
	var sigErr error
	for {
		procs, err := t.Orphans(ctx)
		if err != nil {
			if ctx.Err() == nil {
				return killed, err
			}
			return killed, errors.Join(stillLive(time.Since(start), live, err), sigErr)
		}
		if keep != nil {
			procs = filter(procs, keep)
		}
		if len(procs) == 0 {
			return killed, nil
		}
		live = procs
		if err := signalAll(procs, syscall.SIGKILL, signalled); err != nil && sigErr == nil {
			sigErr = err
		}
		for _, p := range procs {
			if signalled[p.id()] && !reported[p.id()] {
				reported[p.id()] = true
				killed = append(killed, p)
			}
		}
	}
}

// SweepServer is Sweep of the orphans started by the server process pid
// (their EXECCONFORM_SERVER_PID): what one dead server left, and nothing of
// another's, not even of a server that has its PID now (those are not
// orphans: they started after it).
func (t *Table) SweepServer(ctx context.Context, pid int) ([]Proc, error) {
	return t.sweep(ctx, func(p Proc) bool { return p.ServerPID == pid })
}

// SweepOlder is Sweep of the orphans at least minAge old. A caller that
// sweeps while other programs of the project may be running (a run at its
// start, beside a test binary that is setting up orphans on purpose) uses
// an age that no such fixture reaches, so that only what a dead run left
// behind goes.
func (t *Table) SweepOlder(ctx context.Context, minAge time.Duration) ([]Proc, error) {
	up, err := uptime()
	if err != nil {
		return nil, err
	}
	return t.sweep(ctx, func(p Proc) bool {
		return up-time.Duration(p.StartTime)*time.Second/clockTicks >= minAge
	})
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's start time: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// uptime is how long the system has been up (/proc/uptime).
func uptime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, errors.New("proctable: /proc/uptime is empty")
	}
	s, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("proctable: /proc/uptime: %w", err)
	}
	return time.Duration(s * float64(time.Second)), nil
}
