// Package tcpreset tells a peer's RST from its FIN on a TCP connection that
// is read and written at the same time.
//
// Linux reports a RST once: to a Read (ECONNRESET) or to a Write
// (ECONNRESET, EPIPE after it). When a Write takes it, a Read at the same
// moment gets EOF, as for a FIN. A Watch holds a one-slot semaphore while a
// Write is in the kernel and notes a reset before releasing it, so that a
// Read at EOF can wait for the Write under way and ask whether it took one.
// The fake API server's tap and the faults links both need this.
package tcpreset

import (
	"errors"
	"sync/atomic"
	"syscall"
	"time"
)

// Wait bounds how long TookReset waits for a Write under way (a Write
// blocked on a peer that does not read must not hold a Read up).
const Wait = 100 * time.Millisecond

// IsReset tells whether err is the peer's RST: ECONNRESET, or EPIPE (a
// write after the reset was reported).
func IsReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Watch notes whether any Write on one connection took a RST.
type Watch struct {
	writing chan struct{}
	reset   atomic.Bool
}

// New returns a Watch for one connection.
func New() *Watch { return &Watch{writing: make(chan struct{}, 1)} }

// Write runs write (one write to the connection) and notes whether it
// failed with a reset. Writes through one Watch run one at a time.
func (w *Watch) Write(write func() (int, error)) (int, error) {
	w.writing <- struct{}{}
	n, err := write()
	if err != nil && IsReset(err) {
		w.reset.Store(true)
	}
	<-w.writing
	return n, err
}

// TookReset reports whether a Write took the peer's RST, once any Write
// under way has returned (or Wait has passed).
func (w *Watch) TookReset() bool {
	t := time.NewTimer(Wait)
	defer t.Stop()
	select {
	case w.writing <- struct{}{}:
		<-w.writing
	case <-t.C:
	}
	return w.reset.Load()
}
