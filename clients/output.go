package clients

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/execconform/execconform/execclient"
)

// maxOutput is how much of a session's output an Output keeps: the
// cursor's side of it is dropped first.
const maxOutput = 1 << 20

// Output is a real client's output (stdout and stderr as it shows them)
// with expect(1)'s cursor: Expect waits for a string after the cursor and
// moves it past the match, as execclient's Expect does. It wakes on each
// arrival and never polls. The zero value is ready; it is safe for
// concurrent use.
type Output struct {
	mu     sync.Mutex
	buf    []byte
	cursor int
	ended  bool
	wake   chan struct{} // closed and replaced on each change
}

// changed returns the channel closed at the next change; o.mu is held.
func (o *Output) changed() chan struct{} {
	if o.wake == nil {
		o.wake = make(chan struct{})
	}
	return o.wake
}

func (o *Output) signal() {
	if o.wake != nil {
		close(o.wake)
		o.wake = nil
	}
}

// Write appends p; it never fails.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	if over := len(o.buf) - maxOutput; over > 0 && over <= o.cursor {
		o.buf = append(o.buf[:0], o.buf[over:]...)
		o.cursor -= over
	}
	o.signal()
	return len(p), nil
}

// End marks the output complete: Expects waiting for more fail with
// execclient.ErrEnded.
func (o *Output) End() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ended = true
	o.signal()
}

// Expect waits until substr appears after the cursor and moves the
// cursor past it. If ctx ends first the error wraps ctx.Err() and quotes
// the output's last 512 bytes; if the output ends first it wraps
// execclient.ErrEnded.
func (o *Output) Expect(ctx context.Context, substr string) error {
	for {
		o.mu.Lock()
		if i := strings.Index(string(o.buf[o.cursor:]), substr); i >= 0 {
			o.cursor += i + len(substr)
			o.mu.Unlock()
			return nil
		}
		ended, wake := o.ended, o.changed()
		o.mu.Unlock()
		if ended {
			return fmt.Errorf("expect %q: %w (output: %q)", substr, execclient.ErrEnded, o.String())
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("expect %q: %w (output: %q)", substr, ctx.Err(), o.String())
		}
	}
}

// String is the output's last 512 bytes.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.buf[max(0, len(o.buf)-512):])
}
