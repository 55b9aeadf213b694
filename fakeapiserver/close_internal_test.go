package fakeapiserver

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/proctable"
)

// TestCloseKillsASessionStartingMeanwhile: a session whose process started
// after Close took its list of sessions is killed all the same (the harness
// closes a case's server while a proxy may still be opening a session; the
// shell was left alive in 8 of 30 runs of the harness tests before).
func TestCloseKillsASessionStartingMeanwhile(t *testing.T) {
	srv, err := New(Config{})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	reached, release := make(chan *Session, 1), make(chan struct{})
	srv.beforeAdd = func(s *Session) {
		reached <- s
		<-release
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := srv.URL()
	u.Scheme = "wss"
	u.Path = "/api/v1/namespaces/default/pods/fakepod/exec"
	u.RawQuery = "command=sh&stdin=true&stdout=true&tty=true"
	c, err := execclient.Dial(ctx, u.String(), execclient.Options{
		Header:    http.Header{"Authorization": {"Bearer " + srv.Token()}},
		TLSConfig: srv.ClientTLSConfig(), Protocols: []execproto.Protocol{execproto.ProtocolV5},
	})
	require.NoError(t, err)
	defer c.Reset()
	var sess *Session
	select {
	case sess = <-reached:
	case <-ctx.Done():
		t.Fatal("the exec handler never started the session")
	}
	require.NotZero(t, sess.PID())

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	// Let the handler go on once Close has taken its list of sessions.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		srv.mu.Lock()
		done := srv.closed
		srv.mu.Unlock()
		if done {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("Close never started")
		}
	}
	close(release)
	select {
	case err := <-closed:
		assert.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("Close did not return")
	}
	live, err := proctable.Default.Live(ctx, proctable.Match{Session: sess.ID})
	require.NoError(t, err)
	assert.Empty(t, live, "the session's processes after Close")
}
