package harness

import (
	"context"
	"io"
	"strconv"
	"sync"
)

// caseHooks is what a Target may add to its case, found in the context
// the harness passes to it: a place for its process's output, and checks
// of its own that run after the judge (an external proxy's open files).
type caseHooks struct {
	out *TailBuffer

	mu     sync.Mutex
	checks []func(ctx context.Context) []string
}

type hooksKey struct{}

func withHooks(ctx context.Context, h *caseHooks) context.Context {
	return context.WithValue(ctx, hooksKey{}, h)
}

// TargetOutput is where a Target writes what its process prints: the
// harness keeps the end of it in the case's Result (TargetOutput) when the
// case fails. Outside a case it discards.
func TargetOutput(ctx context.Context) io.Writer {
	if h, ok := ctx.Value(hooksKey{}).(*caseHooks); ok {
		return h.out
	}
	return io.Discard
}

// AddTargetCheck registers check to run once the case is judged, before
// the target is stopped; each string it returns fails the case. Outside a
// case it does nothing.
func AddTargetCheck(ctx context.Context, check func(ctx context.Context) []string) {
	if h, ok := ctx.Value(hooksKey{}).(*caseHooks); ok {
		h.mu.Lock()
		h.checks = append(h.checks, check)
		h.mu.Unlock()
	}
}

func (h *caseHooks) runChecks(ctx context.Context) []string {
	h.mu.Lock()
	checks := append([]func(context.Context) []string(nil), h.checks...)
	h.mu.Unlock()
	var out []string
	for _, c := range checks {
		out = append(out, c(ctx)...)
	}
	return out
}

// TailBuffer keeps the last Max bytes written to it. It is safe for
// concurrent use.
type TailBuffer struct {
	Max int

	mu      sync.Mutex
	buf     []byte
	dropped int64
}

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.Max; t.Max > 0 && over > 0 {
		t.dropped += int64(over)
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String is what is kept, after a line saying how much was dropped.
func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dropped > 0 {
		return "[... " + strconv.FormatInt(t.dropped, 10) + " earlier bytes dropped]\n" + string(t.buf)
	}
	return string(t.buf)
}
