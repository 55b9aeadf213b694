package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/faults"
	"github.com/execconform/execconform/proctable"
)

// DropRound is one mass drop: N sessions open, every client connection
// dropped at once.
type DropRound struct {
	N    int    `json:"n"`
	Kind string `json:"kind"`
	// Gone are the times from the drop to the end of the first scan of
	// the process table that no longer showed each session's shell,
	// sorted; shells
	// still alive at the bound are not in it.
	Gone []time.Duration `json:"-"`
	// Left is how many shells were still alive at the bound.
	Left int `json:"left"`
	// Bound is how long the round waited.
	Bound time.Duration `json:"bound_ns"`
	// DropTook is how long dropping every connection took.
	DropTook time.Duration `json:"drop_took_ns"`
	// ScanEvery is the mean time between two scans: the resolution of Gone.
	ScanEvery time.Duration `json:"scan_every_ns"`
	// Curve is the number of shells alive over time (at most 40 points).
	Curve []CurvePoint `json:"curve"`
}

// CurvePoint is how many shells were alive At after the drop.
type CurvePoint struct {
	At   time.Duration `json:"at_ns"`
	Live int           `json:"live"`
}

// massDrop opens n idle tty sessions through e, drops every client
// connection at once the way kind says, and watches the process table
// until none of their shells is alive or bound passes.
func (b *bencher) massDrop(ctx context.Context, e endpoint, n int, kind string, bound time.Duration) (*DropRound, error) {
	var link *faults.Link
	if kind == DropLBReset || kind == DropHalfOpen {
		var err error
		if link, err = faults.NewLink("bench-client-leg", e.upstream(b.fake), nil); err != nil {
			return nil, err
		}
		defer link.Close()
		e.via = link.Addr()
	}
	ss, err := b.openMany(ctx, e, spec{tty: true, proto: execproto.ProtocolV5, prompt: true}, n)
	if err != nil {
		return nil, err
	}
	defer b.drop(ss)
	byContainer := b.sessionsByContainer()
	live := make(map[string]bool, n) // the fake's session IDs whose shell is alive
	for _, s := range ss {
		fs, ok := byContainer[s.container]
		if !ok {
			return nil, fmt.Errorf("the fake API server has no session for %s", s.container)
		}
		live[fs.ID] = true
	}
	table := proctable.NewTable(0)
	// A first scan, before the drop: every shell must be there (the
	// process table, not our bookkeeping, says which are alive).
	procs, err := table.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if alive := countLive(procs, live); alive != n {
		return nil, fmt.Errorf("%d of %d shells alive before the drop", alive, n)
	}

	r := &DropRound{N: n, Kind: kind, Bound: bound}
	t0 := time.Now()
	switch kind {
	case DropFIN:
		for _, s := range ss {
			_ = s.c.AbortTCP()
		}
	case DropRST:
		for _, s := range ss {
			_ = s.c.Reset()
		}
	case DropLBReset:
		link.Down()
	case DropHalfOpen:
		if err := link.Add(faults.HalfOpen()); err != nil {
			return nil, err
		}
	}
	r.DropTook = time.Since(t0)

	deadline := t0.Add(bound)
	scans := 0
	for len(live) > 0 && time.Now().Before(deadline) {
		sctx, cancel := context.WithDeadline(ctx, deadline)
		procs, err := table.Snapshot(sctx)
		// A shell this scan did not see was gone by the time it returned
		// (and alive when the previous one read it): an upper bound,
		// within one scan's time.
		at := time.Since(t0)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			break // the bound
		}
		scans++
		alive := aliveSessions(procs)
		for id := range live {
			if !alive[id] {
				delete(live, id)
				r.Gone = append(r.Gone, at)
			}
		}
		r.Curve = append(r.Curve, CurvePoint{At: at, Live: len(live)})
	}
	r.Left = len(live)
	if scans > 0 {
		r.ScanEvery = time.Since(t0) / time.Duration(scans)
	}
	slices.Sort(r.Gone)
	r.Curve = thin(r.Curve, 40)
	return r, nil
}

// aliveSessions are the session tags of the live processes this
// process's fake API server started.
func aliveSessions(procs []proctable.Proc) map[string]bool {
	me := os.Getpid()
	out := map[string]bool{}
	for _, p := range procs {
		if p.Live() && p.ServerPID == me && p.Session != "" {
			out[p.Session] = true
		}
	}
	return out
}

func countLive(procs []proctable.Proc, ids map[string]bool) int {
	n := 0
	for id := range aliveSessions(procs) {
		if ids[id] {
			n++
		}
	}
	return n
}

// thin keeps at most max points of c: the first, the last, and evenly
// spaced ones between.
func thin(c []CurvePoint, max int) []CurvePoint {
	if len(c) <= max {
		return c
	}
	out := make([]CurvePoint, 0, max)
	for i := range max {
		out = append(out, c[i*(len(c)-1)/(max-1)])
	}
	return out
}
