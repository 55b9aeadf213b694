package proctable

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// scannerDone returns a channel closed once no scanner goroutine runs.
func (t *Table) scannerDone() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.running {
		c := make(chan struct{})
		close(c)
		return c
	}
	return t.exited
}

// requireStops fails unless tbl's scanner goroutine exits soon.
func requireStops(t *testing.T, tbl *Table) {
	t.Helper()
	select {
	case <-tbl.scannerDone():
	case <-time.After(5 * time.Second):
		t.Fatal("scanner goroutine still running with no waiters")
	}
}

// countingScan returns a fake scan whose n-th scan returns one Proc with
// PID n, and the counter of scans started.
func countingScan() (func() ([]Proc, error), *atomic.Int64) {
	var n atomic.Int64
	return func() ([]Proc, error) {
		return []Proc{{PID: int(n.Add(1))}}, nil
	}, &n
}

func TestSnapshotCoalesces(t *testing.T) {
	const interval = 5 * time.Millisecond
	tbl := NewTable(interval)
	scan, started := countingScan()
	tbl.scan = scan

	const goroutines, calls = 50, 20
	begin := time.Now()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				before := started.Load()
				procs, err := tbl.Snapshot(t.Context())
				if err != nil || len(procs) != 1 || int64(procs[0].PID) <= before {
					t.Errorf("got %v, %v from a scan that started before the call (%d)", procs, err, before)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	scans := started.Load()
	t.Logf("%d snapshots served by %d scans in %v", goroutines*calls, scans, elapsed)
	require.Less(t, scans, int64(goroutines*calls/5), "scans are not shared")
	require.LessOrEqual(t, scans, int64(elapsed/interval)+1, "more than one scan per interval")
	requireStops(t, tbl)
}

func TestSnapshotNeverStale(t *testing.T) {
	tbl := NewTable(time.Nanosecond)
	inScan, release := make(chan int), make(chan struct{})
	var n int
	tbl.scan = func() ([]Proc, error) {
		n++
		inScan <- n
		<-release
		return []Proc{{PID: n}}, nil
	}
	first := make(chan []Proc)
	go func() {
		procs, _ := tbl.Snapshot(t.Context())
		first <- procs
	}()
	require.Equal(t, 1, <-inScan)
	// Scan 1 is under way: a new caller must get scan 2, not scan 1.
	second := make(chan []Proc)
	go func() {
		procs, _ := tbl.Snapshot(t.Context())
		second <- procs
	}()
	// Let the second caller subscribe before releasing scan 1. Subscribing
	// is observable as a waiter in the table.
	waitFor(t, func() bool {
		tbl.mu.Lock()
		defer tbl.mu.Unlock()
		return len(tbl.waiters) == 1
	})
	release <- struct{}{}
	require.Equal(t, 1, (<-first)[0].PID)
	require.Equal(t, 2, <-inScan)
	release <- struct{}{}
	require.Equal(t, 2, (<-second)[0].PID)
	requireStops(t, tbl)
}

func TestSnapshotCancel(t *testing.T) {
	tbl := NewTable(time.Hour)
	scan, started := countingScan()
	tbl.scan = scan
	_, err := tbl.Snapshot(t.Context()) // the first scan is immediate
	require.NoError(t, err)

	// The next scan is an hour away; the caller gives up, and the scanner,
	// left with no waiters, must not sit out the hour.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err = tbl.Snapshot(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	requireStops(t, tbl)
	require.Equal(t, int64(1), started.Load())

	// An already cancelled context returns at once, without scanning.
	ctx, cancel = context.WithCancel(t.Context())
	cancel()
	_, err = tbl.Snapshot(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, int64(1), started.Load())
}

func TestSnapshotCancelDuringScan(t *testing.T) {
	tbl := NewTable(0)
	inScan, release := make(chan struct{}), make(chan struct{})
	tbl.scan = func() ([]Proc, error) {
		close(inScan)
		<-release
		return nil, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error)
	go func() {
		_, err := tbl.Snapshot(ctx)
		errc <- err
	}()
	<-inScan
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled) // returns while the scan is stuck
	close(release)
	requireStops(t, tbl)
}

func TestSnapshotCopies(t *testing.T) {
	tbl := NewTable(0)
	shared := []Proc{{PID: 1}}
	tbl.scan = func() ([]Proc, error) { return shared, nil }
	procs, err := tbl.Snapshot(t.Context())
	require.NoError(t, err)
	procs[0].PID = 99
	require.Equal(t, 1, shared[0].PID)
}

// waitFor polls cond, yielding the processor between polls, for at most 5s. It is for
// conditions internal to the package that have no channel to wait on.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		runtime.Gosched()
	}
}
