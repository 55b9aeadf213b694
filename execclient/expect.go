package execclient

import (
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
func (c *Conn) Expect(ctx context.Context, substr string) error { return c.expect(ctx, substr) }

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
