package clients

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/internal/changes"
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
	mu      sync.Mutex
	buf     []byte
	cursor  int
	ended   bool
	changes changes.Changes
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
	o.changes.Notify()
	return len(p), nil
}

// End marks the output complete: Expects waiting for more fail with
// execclient.ErrEnded.
func (o *Output) End() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ended = true
	o.changes.Notify()
}

// Expect waits until substr appears after the cursor and moves the
// cursor past it. If ctx ends first the error wraps ctx.Err() and quotes
// the output's last 512 bytes; if the output ends first it wraps
// execclient.ErrEnded.
func (o *Output) Expect(ctx context.Context, substr string) error {
	matched := false
	err := o.changes.Wait(ctx, &o.mu, func() bool {
		if i := strings.Index(string(o.buf[o.cursor:]), substr); i >= 0 {
			o.cursor += i + len(substr)
			matched = true
		}
		return matched || o.ended
	})
	switch {
	case err != nil:
		return fmt.Errorf("expect %q: %w (output: %q)", substr, err, o.String())
	case !matched:
		return fmt.Errorf("expect %q: %w (output: %q)", substr, execclient.ErrEnded, o.String())
	}
	return nil
}

// String is the output's last 512 bytes.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.buf[max(0, len(o.buf)-512):])
}
