package harness_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/scenarios"
)

// endExec runs exec's command (no tty, v4) on fake to its end, as a proxy
// would open it, and waits until the server has finished the session.
func endExec(t *testing.T, fake *fakeapiserver.Server, exec harness.Exec) *fakeapiserver.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := fake.URL()
	u.Scheme = "ws"
	u.Path = "/api/v1/namespaces/" + exec.Namespace + "/pods/" + exec.Pod + "/exec"
	u.RawQuery = url.Values{"command": exec.Command, "container": {exec.Container}, "stdout": {"true"}}.Encode()
	c, err := execclient.Dial(ctx, u.String(), execclient.Options{
		Header: http.Header{"Authorization": {"Bearer " + fake.Token()}}, Protocols: []execproto.Protocol{execproto.ProtocolV4},
	})
	require.NoError(t, err)
	defer c.Reset()
	sess, err := fake.WaitSession(ctx, c.Response().Header.Get(fakeapiserver.SessionHeader))
	require.NoError(t, err)
	select {
	case <-sess.Finished():
	case <-ctx.Done():
		t.Fatal("the server did not finish the session")
	}
	return sess
}

// TestSharedServerKeepsAnOpenCasesSessions: on a shared fake API server
// whose retention keeps 1 ended session, an open case still finds every
// one of its sessions after others ended and were dropped; once the case
// is closed, the retention has them.
func TestSharedServerKeepsAnOpenCasesSessions(t *testing.T) {
	fake, err := fakeapiserver.New(fakeapiserver.Config{Insecure: true, KeepEnded: 1, KeepEndedFor: -1})
	require.NoError(t, err)
	require.NoError(t, fake.Start())
	t.Cleanup(func() { assert.NoError(t, fake.Close()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shared := harness.SharedFakeServer(fake)
	cs, err := shared.Open(ctx, harness.CaseInfo{Name: "a", Namespace: "default", Pod: "fakepod"})
	require.NoError(t, err)
	echo := []string{"sh", "-c", "echo hello"}
	var mine []*fakeapiserver.Session
	for idx := range 3 {
		mine = append(mine, endExec(t, fake, cs.Exec(idx, echo)))
		endExec(t, fake, harness.Exec{Namespace: "default", Pod: "stray", Container: "c0", Command: echo})
	}
	_, dropped := fake.Kept()
	require.Positive(t, dropped, "the stray sessions were dropped")
	for idx, want := range mine {
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		got, err := cs.Session(sctx, idx)
		scancel()
		require.NoError(t, err, "session %d of the open case", idx)
		info, err := got.Info(ctx)
		require.NoError(t, err)
		assert.Equal(t, want.ID, info.ID)
	}
	require.NoError(t, cs.Close())
	endExec(t, fake, harness.Exec{Namespace: "default", Pod: "stray", Container: "c0", Command: echo})
	for _, s := range mine {
		_, ok := fake.Session(s.ID)
		assert.False(t, ok, "closed, the case's sessions go")
	}
}

// TestEverySessionHasAContainerInThePod: the fake's pods list the
// container of every session a case opens (fakeapiserver.PodContainers),
// so a terminal that looks the container up in the pod before it execs
// finds it.
func TestEverySessionHasAContainerInThePod(t *testing.T) {
	for _, s := range scenarios.All() {
		assert.LessOrEqual(t, s.Sessions, fakeapiserver.PodContainers, s.Name)
	}
}
