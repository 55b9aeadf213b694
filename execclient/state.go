package execclient

import (
	"bytes"
	"context"
	"fmt"
	"sync"
)

// sessionState is what every transport records the same way: the tail of
// stdout+stderr, Expect's cursor in it, and the end. Conn and SPDYConn
// embed it; their own fields that mu guards sit beside it. Every change
// under mu ends with notify, which wakes the waiters of wait.
type sessionState struct {
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change of the guarded fields
	out      []byte        // the tail of stdout+stderr
	outTotal int64         // bytes of stdout+stderr ever received
	cursor   int64         // Expect's position in that stream
	ended    bool          // end is final; nothing more is recorded
	end      End
}

// newSessionState is the state before anything was received.
func newSessionState() sessionState {
	return sessionState{changed: make(chan struct{}), end: End{ServerCloseCode: -1}}
}

// notify wakes every waiter. s.mu must be held.
func (s *sessionState) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait blocks until cond, called with s.mu held, is true, or ctx ends. It
// wakes on every notify, never by polling.
func (s *sessionState) wait(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		if cond() {
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// appendOutput adds to the output, keeping at least the last MaxOutput bytes
// (and at most twice that, so that trimming is rare). s.mu must be held.
func (s *sessionState) appendOutput(b []byte) {
	s.out = append(s.out, b...)
	s.outTotal += int64(len(b))
	if len(s.out) > 2*MaxOutput {
		s.out = append([]byte(nil), s.out[len(s.out)-MaxOutput:]...)
	}
}

// output is the tail of the output.
func (s *sessionState) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(tail(s.out, MaxOutput))
}

// outputTotal is the number of output bytes received.
func (s *sessionState) outputTotal() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.outTotal
}

// expect is Expect for both transports (see Conn.Expect).
func (s *sessionState) expect(ctx context.Context, substr string) error {
	want := []byte(substr)
	var from int64 // where the next search starts, as a position in the stream
	found := false
	err := s.wait(ctx, func() bool {
		base := s.outTotal - int64(len(s.out)) // stream position of s.out[0]
		from = max(from, s.cursor, base)
		if i := bytes.Index(s.out[from-base:], want); i >= 0 {
			s.cursor = from + int64(i) + int64(len(want))
			found = true
			return true
		}
		// New data can only complete a match that starts in the last len-1 bytes.
		from = max(from, s.outTotal-int64(len(want))+1)
		return s.ended
	})
	if found {
		return nil
	}
	s.mu.Lock()
	t, end := string(tail(s.out, tailLen)), s.end
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("execclient: Expect %q: %w; output tail: %q", substr, err, t)
	}
	return fmt.Errorf("execclient: Expect %q: %w (%s); output tail: %q", substr, ErrEnded, end, t)
}
