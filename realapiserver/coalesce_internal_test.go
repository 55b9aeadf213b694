package realapiserver

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Callers that ask while a run is under way get the next run, which they
// share: nobody gets a run that started before it asked.
func TestCoalescerSharesTheNextRun(t *testing.T) {
	var c coalescer
	var runs atomic.Int64
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	f := func(context.Context) (string, error) {
		if runs.Add(1) == 1 {
			started <- struct{}{}
			<-release
			return "first", nil
		}
		return "second", nil
	}
	first := make(chan string, 1)
	go func() {
		out, _ := c.get(context.Background(), f)
		first <- out
	}()
	<-started
	var wg sync.WaitGroup
	for range 19 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.get(context.Background(), f)
			assert.NoError(t, err)
			assert.Equal(t, "second", out, "a caller that asked during the first run must not get it")
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.waiting.Load() < 20 { // the 19 callers and the first are all waiting
		require.True(t, time.Now().Before(deadline), "callers never waited")
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	assert.Equal(t, "first", <-first)
	assert.Equal(t, int64(2), runs.Load(), "19 callers asking during one run share the next")
}

func TestCoalescerHonoursTheCallersContext(t *testing.T) {
	var c coalescer
	block := make(chan struct{})
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := c.get(ctx, func(context.Context) (string, error) { <-block; return "", nil })
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// behindAStuckRun starts a run of the f it returns on c that stays under
// way until the test ends, whatever its context says; f's later runs
// return "fresh". runs counts them all.
func behindAStuckRun(t *testing.T, c *coalescer) (f func(context.Context) (string, error), runs *atomic.Int64) {
	runs = new(atomic.Int64)
	started := make(chan struct{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f = func(context.Context) (string, error) {
		if runs.Add(1) == 1 {
			close(started)
			<-release
			return "stuck", nil
		}
		return "fresh", nil
	}
	go c.get(context.Background(), f) //nolint:errcheck // the stuck run's caller
	<-started
	return f, runs
}

// A caller behind a stuck run that started before it asked does not wait
// for it past the point where its own run would no longer fit before its
// deadline: it starts a fresh run then (a stalled node's exec can take its
// whole timeout, and waiting for it and then for another took twice that).
func TestCoalescerDoesNotWaitOutAStuckRun(t *testing.T) {
	c := coalescer{timeout: 200 * time.Millisecond}
	f, runs := behindAStuckRun(t, &c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	out, err := c.get(ctx, f)
	require.NoError(t, err, "the caller waited out the stuck run")
	assert.Equal(t, "fresh", out)
	assert.Equal(t, int64(2), runs.Load())
}

// A caller whose deadline leaves no room for a whole run does not start
// one behind a run under way (callers polling on short deadlines would
// otherwise start an exec each): it waits, as before.
func TestCoalescerShortDeadlineShares(t *testing.T) {
	c := coalescer{timeout: time.Minute}
	f, runs := behindAStuckRun(t, &c)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.get(ctx, f)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, int64(1), runs.Load(), "a short-deadline caller started a run of its own")
}
