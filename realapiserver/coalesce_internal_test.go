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
