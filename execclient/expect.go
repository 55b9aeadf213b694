package execclient

import (
	"bytes"
	"context"
	"fmt"

	"github.com/execconform/execconform/execproto"
)

// Expect waits until substr appears in the output (stdout and stderr)
// received after the cursor, then moves the cursor to the end of the match,
// as expect(1) does: output that arrived in the same message after the match
// is still there for the next Expect. The cursor starts at the beginning of
// the output. Expect wakes on each arrival; it never polls.
//
// If ctx ends first, the error wraps ctx.Err() and quotes the last 512 bytes
// of the output with %q; if the connection ends first, it wraps ErrEnded.
// The cursor only moves on success. Concurrent Expects share the cursor.
func (c *Conn) Expect(ctx context.Context, substr string) error {
	want := []byte(substr)
	var from int64 // where the next search starts, as a position in the stream
	found := false
	err := c.wait(ctx, func() bool {
		base := c.outTotal - int64(len(c.out)) // stream position of c.out[0]
		from = max(from, c.cursor, base)
		if i := bytes.Index(c.out[from-base:], want); i >= 0 {
			c.cursor = from + int64(i) + int64(len(want))
			found = true
			return true
		}
		// New data can only complete a match that starts in the last len-1 bytes.
		from = max(from, c.outTotal-int64(len(want))+1)
		return c.ended
	})
	if found {
		return nil
	}
	c.mu.Lock()
	t, end := string(tail(c.out, tailLen)), c.end
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("execclient: Expect %q: %w; output tail: %q", substr, err, t)
	}
	return fmt.Errorf("execclient: Expect %q: %w (%s); output tail: %q", substr, ErrEnded, end, t)
}

// Status waits for the status on StreamError and parses it with
// execproto.ParseStatus. ok is false if the connection ended without one:
// for protocols before v4 that is how success looks (they send a text only
// on failure); from v4 on the server always sends one, so its absence is a
// fault. The error is set if ctx ended first or the status does not parse
// (then ok is true). Empty messages on StreamError (the "connection
// established" signal when neither stdout nor stderr was requested) are not
// statuses. After AbortTCP or Reset nothing more is recorded, so Status
// answers at once with what came before: it does not wait for the server
// to close a connection the client has given up (behind a throttled
// backlog that can take seconds).
func (c *Conn) Status(ctx context.Context) (execproto.Status, bool, error) {
	err := c.wait(ctx, func() bool { return c.status != nil || c.ended || c.kill != killNone })
	if err != nil {
		return execproto.Status{}, false, fmt.Errorf("execclient: Status: %w", err)
	}
	c.mu.Lock()
	raw := c.status
	c.mu.Unlock()
	if raw == nil {
		return execproto.Status{}, false, nil
	}
	s, err := execproto.ParseStatus(c.proto, raw)
	return s, true, err
}
