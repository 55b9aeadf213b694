package census_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	"github.com/execconform/execconform/census"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/realapiserver"
)

func TestMain(m *testing.M) { leakguard.Main(m) }

// TestCensusThroughFakeAPIServer runs the per-pod pipeline for real
// through client-go's executors (WebSocket, SPDY fallback) against the
// fake API server, whose shells are processes of this machine: a dropped
// tty session whose pty's times are set back two hours (an orphan, as it
// would look after two idle hours), a live tty session, and the census's
// own exec. The fake's "container" is this machine, where no PPID is 0:
// the roots are this test's shells (the fake runs in this process). Then
// --reap ends the orphan, and only it.
func TestCensusThroughFakeAPIServer(t *testing.T) {
	fake, err := fakeapiserver.New(fakeapiserver.Config{})
	require.NoError(t, err)
	require.NoError(t, fake.Start())
	t.Cleanup(func() { _ = fake.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cl := realapiserver.Cluster{APIServer: fake.URL(), CAFile: fake.CAFile(), Token: fake.Token(),
		Namespace: "default", Pod: "census", Container: fakeapiserver.ContainerName(0)}
	dial := func() (int, string) {
		c, err := cl.Dial(ctx, []string{"sh", "-i"}, true, true, execproto.ProtocolV5)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Reset() })
		require.NoError(t, c.Type("echo pid=$$ tty=$(readlink /proc/$$/fd/0) end-$((6*7))\r"))
		require.NoError(t, c.Expect(ctx, "end-42"))
		var pid int
		var tty string
		out := c.Output()
		i := strings.LastIndex(out, "pid=")
		require.GreaterOrEqual(t, i, 0, out)
		_, err = fmt.Sscanf(out[i:], "pid=%d tty=%s", &pid, &tty)
		require.NoError(t, err, out)
		return pid, tty
	}
	orphan, orphanTTY := dial()
	live, _ := dial()
	require.True(t, strings.HasPrefix(orphanTTY, "/dev/pts/"), orphanTTY)
	// Two idle hours, as the kernel would show them: the pty's input and
	// output times two hours back.
	past := time.Now().Add(-2 * time.Hour)
	require.NoError(t, os.Chtimes(orphanTTY, past, past))

	c, err := census.NewCluster(&rest.Config{Host: fake.URL().String(), BearerToken: fake.Token(),
		TLSClientConfig: rest.TLSClientConfig{CAFile: fake.CAFile()}})
	require.NoError(t, err)
	me := os.Getpid()
	o := census.Options{
		Scope: census.Scope{Namespace: "default", Pods: []string{"census"}, Container: fakeapiserver.ContainerName(0)},
		Rules: census.Rules{Idle: time.Hour},
		// This test's shells (the fake runs in this process; its janitor,
		// also a child, is no shell).
		Root: func(p census.Proc) bool { return p.PPID == me && (p.Comm == "sh" || p.Comm == "dash") },
	}
	rep, err := c.Census(ctx, o)
	require.NoError(t, err)
	require.Len(t, rep.Pods, 1)
	pr := rep.Pods[0]
	require.Empty(t, pr.Error)
	roots := map[int]census.Root{}
	for _, r := range pr.Roots {
		roots[r.PID] = r
	}
	require.Contains(t, roots, orphan)
	require.Contains(t, roots, live)
	assert.True(t, roots[orphan].Flagged, "the orphan: %s", roots[orphan].Reason)
	assert.False(t, roots[live].Flagged, "the live session: %s", roots[live].Reason)
	assert.Equal(t, 1, pr.Flagged, "only the orphan: %+v", pr.Roots)
	assert.NotZero(t, pr.OwnPID, "the census's own exec was found")
	assert.NotContains(t, roots, pr.OwnPID, "and left out")
	assert.Equal(t, "pts/"+strings.TrimPrefix(orphanTTY, "/dev/pts/"), roots[orphan].TTY)
	t.Logf("cost of one container's census through the fake: %.1f ms (%d processes)", float64(pr.Cost), pr.Processes)

	// Reap: the orphan goes, the live session stays.
	tgt := census.Target{Namespace: "default", Pod: "census", Container: fakeapiserver.ContainerName(0)}
	_, snap := census.CensusOne(ctx, c, tgt, o)
	require.NotNil(t, snap)
	rr := census.Reap(ctx, c, tgt, snap, o, census.ReapOptions{})
	assert.Empty(t, rr.Error)
	require.Len(t, rr.Targets, 1, "%+v", rr.Targets)
	assert.Equal(t, orphan, rr.Targets[0].PID)
	assert.Equal(t, "ended", rr.Targets[0].Outcome)
	assert.Equal(t, []string{"HUP"}, rr.Targets[0].Signals, "an interactive sh ends on SIGHUP")
	assert.Equal(t, 1, rr.Ended)
	assert.Equal(t, 0, rr.FlaggedAfter)
	_, err = os.Stat(fmt.Sprintf("/proc/%d", orphan))
	assert.True(t, os.IsNotExist(err), "the orphan is gone from /proc")
	_, err = os.Stat(fmt.Sprintf("/proc/%d", live))
	assert.NoError(t, err, "the live session's shell is alive")
}

// TestCensusRefusedExec: a container whose exec fails is reported, with
// the reason, and never fails the census; nothing of the credentials
// reaches the error, even when the server echoes them back.
func TestCensusRefusedExec(t *testing.T) {
	const token = "s3cr3t-token-0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, "forbidden for "+r.Header.Get("Authorization")+" on "+r.URL.String())
	}))
	defer srv.Close()
	c, err := census.NewCluster(&rest.Config{Host: srv.URL, BearerToken: token})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ts := []census.Target{{Namespace: "ns", Pod: "a", Container: "c"}, {Namespace: "ns", Pod: "b", Container: "c"}}
	res := census.CensusTargets(ctx, c, ts, census.Options{Rules: census.Rules{Idle: time.Hour}})
	require.Len(t, res, 2)
	for _, r := range res {
		assert.NotEmpty(t, r.Error, "a refused exec is reported")
		assert.NotContains(t, r.Error, token)
		t.Logf("%s: %s", r.Pod, r.Error)
	}
	_, err = c.Census(ctx, census.Options{Scope: census.Scope{Namespace: "ns"}})
	require.Error(t, err, "listing the pods is the one failure that fails a census")
	assert.NotContains(t, err.Error(), token)
	assert.Contains(t, err.Error(), "[REDACTED]", "the server did echo the token, and it was removed")
	assert.Equal(t, "Bearer [REDACTED] and token=[REDACTED]", c.Redact("Bearer "+token+" and token="+"eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"))
}
