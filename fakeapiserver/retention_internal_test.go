package fakeapiserver

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
)

// fakeClock is the server's clock in tests of the retention's age bound.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// endOne runs `sh -c 'echo hello'` to its end on srv and returns its
// session once the server has finished it.
func endOne(t *testing.T, srv *Server) *Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := srv.URL()
	u.Scheme = "ws"
	u.Path = "/api/v1/namespaces/default/pods/fakepod/exec"
	u.RawQuery = "command=sh&command=-c&command=echo+hello&stdout=true"
	c, err := execclient.Dial(ctx, u.String(), execclient.Options{
		Header: http.Header{"Authorization": {"Bearer " + srv.Token()}}, Protocols: []execproto.Protocol{execproto.ProtocolV4},
	})
	require.NoError(t, err)
	defer c.Reset()
	sess, err := srv.WaitSession(ctx, c.Response().Header.Get(SessionHeader))
	require.NoError(t, err)
	select {
	case <-sess.Finished():
	case <-ctx.Done():
		t.Fatal("the server did not finish the session")
	}
	return sess
}

func keptIDs(srv *Server) []string {
	var out []string
	for _, s := range srv.Sessions() {
		out = append(out, s.ID)
	}
	return out
}

// TestRetentionDropsOldEndedSessions: an ended session is kept
// KeepEndedFor after it ended, and dropped at the first session end or
// list after that; drops for age are at most one per KeepEndedFor/8.
func TestRetentionDropsOldEndedSessions(t *testing.T) {
	srv, err := New(Config{Insecure: true, KeepEnded: -1, KeepEndedFor: time.Minute})
	require.NoError(t, err)
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	srv.now = clock.now
	require.NoError(t, srv.Start())
	t.Cleanup(func() { assert.NoError(t, srv.Close()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	a := endOne(t, srv) // ends at 0s
	clock.advance(30 * time.Second)
	b := endOne(t, srv) // ends at 30s
	clock.advance(30*time.Second - time.Nanosecond)
	srv.prune(ctx)
	assert.Equal(t, []string{a.ID, b.ID}, keptIDs(srv), "a minute less 1ns: both kept")

	clock.advance(time.Nanosecond)
	c := endOne(t, srv) // a is a minute old when c ends
	assert.Equal(t, []string{b.ID, c.ID}, keptIDs(srv), "a minute after it ended, a goes")

	clock.advance(30*time.Second - time.Nanosecond)
	srv.prune(ctx)
	assert.Equal(t, []string{b.ID, c.ID}, keptIDs(srv), "b is a minute old less 1ns")
	clock.advance(time.Nanosecond)
	srv.prune(ctx) // as a list does
	assert.Equal(t, []string{c.ID}, keptIDs(srv), "b goes")
	_, dropped := srv.Kept()
	assert.EqualValues(t, 2, dropped)
}

// TestRetentionRateLimitsDropsForAge: within KeepEndedFor/8 of a drop for
// age, no other drop for age happens (each costs a scan of the process
// table); the next one takes every session that is old enough.
func TestRetentionRateLimitsDropsForAge(t *testing.T) {
	srv, err := New(Config{Insecure: true, KeepEnded: -1, KeepEndedFor: 80 * time.Second})
	require.NoError(t, err)
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	srv.now = clock.now
	require.NoError(t, srv.Start())
	t.Cleanup(func() { assert.NoError(t, srv.Close()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	a := endOne(t, srv) // 0s
	clock.advance(5 * time.Second)
	b := endOne(t, srv) // 5s
	clock.advance(75 * time.Second)
	require.Equal(t, []string{a.ID, b.ID}, keptIDs(srv))
	srv.prune(ctx) // 80s: a goes
	assert.Equal(t, []string{b.ID}, keptIDs(srv))
	clock.advance(9 * time.Second)
	srv.prune(ctx) // 89s: b is 84s old, but the last drop was 9s ago (< 10s)
	assert.Equal(t, []string{b.ID}, keptIDs(srv))
	clock.advance(time.Second)
	srv.prune(ctx) // 90s
	assert.Empty(t, keptIDs(srv))
}
