// Package changes wakes goroutines waiting for state guarded by a mutex
// to change: a condition variable that a context can cancel, which
// sync.Cond is not. Every client session (the emulator's, the real
// clients') waits on its state this way, never by polling.
package changes

import (
	"context"
	"sync"
)

// Changes is the waiters' side of some state guarded by a mutex. The zero
// value is ready; Notify and Wait take the same mutex.
type Changes struct {
	ch chan struct{} // closed and replaced on every change
}

// current is the channel the next Notify closes; the mutex is held.
func (c *Changes) current() chan struct{} {
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

// Notify wakes every waiter. The mutex must be held.
func (c *Changes) Notify() {
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

// Wait blocks until cond, called with mu held, is true, or ctx ends
// (its error). It wakes on every Notify, never by polling.
func (c *Changes) Wait(ctx context.Context, mu *sync.Mutex, cond func() bool) error {
	for {
		mu.Lock()
		if cond() {
			mu.Unlock()
			return nil
		}
		ch := c.current()
		mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
