package execclient

import (
	"github.com/execconform/execconform/internal/changes"

	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// sessionState is what every transport records the same way: the tail of
// stdout+stderr, Expect's cursor in it, and the end. Conn and SPDYConn
// embed it; their own fields that mu guards sit beside it. Every change
// under mu ends with notify, which wakes the waiters of wait.
type sessionState struct {
	mu       sync.Mutex
	changes  changes.Changes // wakes the waiters on every change of the guarded fields
	out      []byte          // the tail of stdout+stderr
	outTotal int64           // bytes of stdout+stderr ever received
	cursor   int64           // Expect's position in that stream
	ended    bool            // end is final; nothing more is recorded
	end      End

	// How the client ends TCP itself (AbortTCP, Reset, Freeze), the
	// same for every transport.
	tcp       *net.TCPConn // under TLS too: AbortTCP and Reset act on it directly
	closeWait time.Duration
	frozen    atomic.Bool
	parked    chan struct{} // closed when the reader parked for Freeze
	killed    chan struct{} // closed by AbortTCP, Reset, or a Close that gave up
	done      chan struct{} // closed when the session has ended and the socket is closed
	kill      killKind      // mu guards it and the two below
	killErr   error
	tcpClosed bool
}

// newSessionState is the state before anything was received, of a
// session on tcp that waits closeWait for the server after AbortTCP.
func newSessionState(tcp *net.TCPConn, closeWait time.Duration) sessionState {
	return sessionState{end: End{ServerCloseCode: -1},
		tcp: tcp, closeWait: closeWait,
		parked: make(chan struct{}), killed: make(chan struct{}), done: make(chan struct{})}
}

// notify wakes every waiter. s.mu must be held.
func (s *sessionState) notify() {
	s.changes.Notify()
}

// wait blocks until cond, called with s.mu held, is true, or ctx ends. It
// wakes on every notify, never by polling.
func (s *sessionState) wait(ctx context.Context, cond func() bool) error {
	return s.changes.Wait(ctx, &s.mu, cond)
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

// abortTCP is AbortTCP of every transport: a FIN at once (under TLS too),
// then the reader drains until the server closes or closeWait passes.
func (s *sessionState) abortTCP() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcpClosed || s.ended || s.kill != killNone {
		return ErrEnded
	}
	// The deadline goes first: a reader parked by Freeze drains as soon
	// as killed is closed, and a blocked read returns by then at the latest.
	derr := s.tcp.SetReadDeadline(time.Now().Add(s.closeWait))
	werr := s.tcp.CloseWrite()
	s.markKilled(killAbort, ErrAborted)
	return errors.Join(derr, werr)
}

// reset is Reset of every transport: SO_LINGER 0, then close.
func (s *sessionState) reset() error {
	return s.cut(killReset, ErrReset)
}

// cut closes the socket now: with a RST for killReset.
func (s *sessionState) cut(kind killKind, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcpClosed {
		return ErrEnded
	}
	s.tcpClosed = true
	if s.kill == killNone {
		s.markKilled(kind, err)
	}
	if kind == killReset {
		if err := s.tcp.SetLinger(0); err != nil {
			s.tcp.Close()
			return err
		}
	}
	return s.tcp.Close()
}

// markKilled records the first local cut. s.mu must be held.
func (s *sessionState) markKilled(kind killKind, err error) {
	s.kill, s.killErr = kind, err
	close(s.killed)
	s.notify()
}

// isKilled reports whether AbortTCP, Reset or a Close that gave up ran.
func (s *sessionState) isKilled() bool {
	select {
	case <-s.killed:
		return true
	default:
		return false
	}
}

// freeze is Freeze of every transport: the reader's blocked read is
// interrupted and it parks; it returns once the reader has parked (or
// the session ended).
func (s *sessionState) freeze() {
	s.mu.Lock()
	if s.ended || s.kill != killNone {
		s.mu.Unlock()
		return
	}
	s.frozen.Store(true)
	// Interrupt the reader's blocked read: a frozen session is never read
	// again (the reader parks).
	s.tcp.SetReadDeadline(time.Unix(1, 0))
	s.mu.Unlock()
	select {
	case <-s.parked:
	case <-s.done:
	}
}
