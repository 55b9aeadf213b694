package changes

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWaitWakesOnNotify(t *testing.T) {
	var mu sync.Mutex
	var c Changes
	n := 0
	done := make(chan error)
	go func() {
		done <- c.Wait(context.Background(), &mu, func() bool { return n == 3 })
	}()
	for i := 0; i < 3; i++ {
		mu.Lock()
		n++
		c.Notify()
		mu.Unlock()
	}
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not wake on the third Notify")
	}
}

func TestWaitEndsWithItsContext(t *testing.T) {
	var mu sync.Mutex
	var c Changes
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, c.Wait(ctx, &mu, func() bool { return false }), context.Canceled)
	mu.Lock()
	c.Notify() // with no waiter: nothing to wake, no panic
	c.Notify()
	mu.Unlock()
}
