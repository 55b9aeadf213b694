package realapiserver

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/proctable"
)

// blind is a process source that never sees a process: a host table
// looking at a cluster on another machine.
type blind struct{}

func (blind) Live(context.Context, proctable.Match) ([]proctable.Proc, error) { return nil, nil }
func (blind) WaitGone(context.Context, proctable.Match) (time.Duration, []proctable.Proc, error) {
	return 0, nil, nil
}
func (blind) Kill(context.Context, proctable.Match, syscall.Signal) (int, error) { return 0, nil }

// TestCheckVisible: with the right process source the check passes (host
// and pod); with one that cannot see the pod's processes it fails, saying
// what to set, instead of every shell looking gone.
func TestCheckVisible(t *testing.T) {
	fake, err := fakeapiserver.New(fakeapiserver.Config{Allow: StandInAllow})
	require.NoError(t, err)
	require.NoError(t, fake.Start())
	t.Cleanup(func() { _ = fake.Close() })
	for _, procs := range []string{ProcsHost, ProcsPod} {
		srv, err := New(Cluster{APIServer: fake.URL(), CAFile: fake.CAFile(), Token: fake.Token(),
			Namespace: "default", Pod: "stand-in", Container: "shell", Procs: procs})
		require.NoError(t, err)
		t.Cleanup(func() { _ = srv.Close() })
		assert.NoError(t, srv.CheckVisible(context.Background()), procs)

		srv.procs = blind{}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = srv.CheckVisible(ctx)
		cancel()
		require.Error(t, err, procs)
		assert.Contains(t, err.Error(), "never showed in")
		if procs == ProcsHost {
			assert.Contains(t, err.Error(), "set E2E_PROCS=pod")
		}
	}
}
