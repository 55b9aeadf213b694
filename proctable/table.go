package proctable

import (
	"context"
	"slices"
	"sync"
	"time"
)

// DefaultInterval is the interval between scans of a Table created with
// interval 0.
const DefaultInterval = 2 * time.Millisecond

// Default is the Table used by code that has no reason to make its own.
var Default = NewTable(0)

// Table is a shared, coalescing view of the process table: many goroutines
// waiting on it cause at most one /proc scan per interval.
//
// One goroutine scans, and only while somebody waits; every waiter is
// handed the result of the first scan that starts after it subscribed.
// A Table must be created with NewTable and is safe for concurrent use.
type Table struct {
	interval time.Duration
	lastCost time.Duration          // how long the last scan took
	scan     func() ([]Proc, error) // Scan, replaced in tests

	mu        sync.Mutex
	waiters   []*waiter     // subscribers to the next scan
	running   bool          // a scanner goroutine is running
	lastStart time.Time     // when the latest scan started
	exited    chan struct{} // closed when the running scanner exits
	wake      chan struct{} // nudges a pacing scanner to recheck waiters
}

// waiter is one subscriber to the next scan.
type waiter struct {
	result chan scanResult // buffered: the scanner never blocks on it
}

type scanResult struct {
	procs []Proc
	err   error
}

// NewTable returns a Table that scans at most once per interval while
// someone waits on it. An interval of 0 or less means DefaultInterval.
func NewTable(interval time.Duration) *Table {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Table{
		interval: interval,
		scan:     Scan,
		wake:     make(chan struct{}, 1),
	}
}

// Snapshot returns the result of a scan of the whole process table that
// started after the call (never a stale one). The slice is the caller's own.
func (t *Table) Snapshot(ctx context.Context) ([]Proc, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w := &waiter{result: make(chan scanResult, 1)}
	t.mu.Lock()
	t.waiters = append(t.waiters, w)
	if !t.running {
		t.running = true
		t.exited = make(chan struct{})
		go t.run(t.exited)
	}
	t.mu.Unlock()

	select {
	case r := <-w.result:
		return slices.Clone(r.procs), r.err
	case <-ctx.Done():
		t.unsubscribe(w)
		return nil, ctx.Err()
	}
}

// unsubscribe removes w from the waiters, if the scanner has not taken it
// yet, and lets an idle scanner notice when nobody is left.
func (t *Table) unsubscribe(w *waiter) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waiters = slices.DeleteFunc(t.waiters, func(x *waiter) bool { return x == w })
	if len(t.waiters) == 0 && t.running {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// gap is the least time between the starts of two scans: the interval, or
// four times the last scan's cost when that is more, so that scanning
// takes at most a fifth of a core however many processes there are (a
// 200-shell case makes a scan cost milliseconds), but never more than
// maxGap: on a loaded machine (a real cluster's node, 2 cores) one scan
// that was preempted for a second must not make every waiter wait four.
// t.mu must be held.
func (t *Table) gap() time.Duration {
	return max(t.interval, min(4*t.lastCost, maxGap))
}

// maxGap bounds the gap between scans (see gap).
const maxGap = 100 * time.Millisecond

// run is the scanner goroutine: it scans while there are waiters, no more
// often than once per interval, and exits as soon as there are none.
func (t *Table) run(exited chan struct{}) {
	defer close(exited)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		t.mu.Lock()
		if len(t.waiters) == 0 {
			t.running = false
			t.mu.Unlock()
			return
		}
		if wait := t.gap() - time.Since(t.lastStart); wait > 0 {
			t.mu.Unlock()
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-t.wake:
				timer.Stop()
			}
			continue
		}
		batch := t.waiters
		t.waiters = nil
		t.lastStart = time.Now()
		t.mu.Unlock()

		procs, err := t.scan()
		t.mu.Lock()
		t.lastCost = time.Since(t.lastStart)
		t.mu.Unlock()
		for _, w := range batch {
			w.result <- scanResult{procs, err}
		}
	}
}
