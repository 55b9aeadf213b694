//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/census"
	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/proctable"
	"github.com/execconform/execconform/realapiserver"
)

// censusOrphans is how many orphans TestCensus makes: one per way a
// client straight to the API server drops its session.
const censusOrphans = 3

// TestCensus: `execconform census` on a real pod. It makes orphans on
// purpose (tty shells whose clients dropped, no proxy: the control's
// drops), keeps a live attached tty session typing and a non-interactive
// exec running beside them, and waits (bounded, on the census's own
// verdict) for the orphans' terminals to be idle longer than --idle 2s.
// The census must flag exactly the orphans: not the live session, not
// the non-interactive exec, not its own exec. Then --reap must end
// exactly those, and the others must be alive. It measures the cost of
// one container's census (exec and parse).
func TestCensus(t *testing.T) {
	srv := realServer(t)
	cl := srv.Cluster()
	tag := srv.Tag()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	defer func() { _, _ = srv.Procs().Kill(context.Background(), proctable.Match{Session: tag}, 9) }()

	c, err := census.Load(e2eKubeconfig(t, cl), "")
	require.NoError(t, err)
	o := census.Options{
		Scope:   census.Scope{Namespace: cl.Namespace, Pods: []string{cl.Pod}, Container: cl.Container},
		Rules:   census.Rules{Idle: 2 * time.Second},
		Timeout: 20 * time.Second,
	}
	tgt := census.Target{Namespace: cl.Namespace, Pod: cl.Pod, Container: cl.Container}
	before, snap := census.CensusOne(ctx, c, tgt, o)
	require.NotNil(t, snap, before.Error)
	baseline := map[int]bool{}
	for _, r := range before.Roots {
		baseline[r.PID] = true
	}
	if len(baseline) > 0 {
		t.Logf("exec'd trees already in the pod (left out of the counts): %+v", before.Roots)
	}

	// dial starts a session and returns the pod's PID of its process.
	dial := func(cmd []string, tty bool) (*execclient.Conn, int) {
		conn, err := cl.Dial(ctx, realapiserver.Mark(tag, cmd), tty, tty, execproto.ProtocolV5)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Reset() })
		if tty {
			require.NoError(t, conn.Type("echo pid=$$ end-$((6*7))\r"))
		}
		require.NoError(t, conn.Expect(ctx, "end-42"))
		out := conn.Output()
		i := strings.LastIndex(out, "pid=")
		require.GreaterOrEqual(t, i, 0, out)
		var pid int
		_, err = fmt.Sscanf(out[i:], "pid=%d", &pid)
		require.NoError(t, err, out)
		return conn, pid
	}
	var orphans []int
	for i, drop := range []func(*execclient.Conn) error{
		func(c *execclient.Conn) error { _, err := c.Close(ctx, 1000, ""); return err },
		func(c *execclient.Conn) error { return c.AbortTCP() },
		func(c *execclient.Conn) error { return c.Reset() },
	}[:censusOrphans] {
		conn, pid := dial([]string{"sh", "-i"}, true)
		require.NoError(t, drop(conn), "drop %d", i)
		orphans = append(orphans, pid)
	}
	slices.Sort(orphans)
	live, livePID := dial([]string{"sh", "-i"}, true)
	_, nottyPID := dial([]string{"sh", "-c", "echo pid=$$ end-$((6*7)); exec sleep 600"}, false)
	t.Logf("made: orphans %v, live tty session %d, non-interactive exec %d", orphans, livePID, nottyPID)

	// The live session's user types while the orphans' terminals go idle.
	typing, stopTyping := context.WithCancel(ctx)
	typed := make(chan error, 1)
	go func() {
		tick := time.NewTicker(400 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-typing.Done():
				typed <- nil
				return
			case <-tick.C:
				if err := live.Type(fmt.Sprintf("echo typed-%d\r", n)); err != nil {
					typed <- err
					return
				}
			}
		}
	}()

	// Wait, bounded, until the census flags every orphan (their terminals
	// keep their last input time only to an 8 s window: up to 10 s).
	var res census.PodResult
	deadline := time.Now().Add(25 * time.Second)
	for {
		res, snap = census.CensusOne(ctx, c, tgt, o)
		require.Empty(t, res.Error)
		if len(intersect(flaggedRoots(res, baseline), orphans)) == len(orphans) || time.Now().After(deadline) {
			break
		}
		tm := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			tm.Stop()
			t.Fatal(ctx.Err())
		case <-tm.C:
		}
	}
	// For a whole window of the ttys' times (8 s, and one more), every
	// census flags exactly the orphans: a live session whose last input
	// the kernel shows up to 8 s late is never called idle.
	for end := time.Now().Add(9 * time.Second); time.Now().Before(end); {
		r, s := census.CensusOne(ctx, c, tgt, o)
		require.Empty(t, r.Error)
		if !assert.Equal(t, orphans, flaggedRoots(r, baseline), "census at %s: %+v", time.Now().Format(time.StampMilli), r.Roots) {
			break
		}
		res, snap = r, s
		tm := time.NewTimer(300 * time.Millisecond)
		select {
		case <-ctx.Done():
			tm.Stop()
			t.Fatal(ctx.Err())
		case <-tm.C:
		}
	}
	// The raw dump beside the report, with what was made: the recorded
	// snapshot census/testdata/e2e-local.dump comes from here.
	raw, err := c.Exec(ctx, tgt, []string{"sh", "-c", census.DumpScript})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(reportDir(t), "census.dump"), raw, 0o644))
	writeJSON(t, "census-made.json", map[string]any{"orphans": orphans, "live_tty": livePID, "notty": nottyPID})
	rep := &census.Report{Schema: census.SchemaID, Started: time.Now().UTC(), Pods: []census.PodResult{res},
		Rules: census.RulesJSON{IdleSeconds: 2}, Scope: o.Scope}
	rep.Sum()
	var table bytes.Buffer
	rep.WriteTable(&table, true)
	t.Logf("the census (--idle 2s -v):\n%s", table.String())
	writeJSON(t, "census.json", rep)
	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	require.NoError(t, os.WriteFile(filepath.Join(reportDir(t), "census.md"), md.Bytes(), 0o644))

	roots := map[int]census.Root{}
	for _, r := range res.Roots {
		roots[r.PID] = r
	}
	for _, pid := range append(slices.Clone(orphans), livePID, nottyPID) {
		require.Contains(t, roots, pid, "every exec'd process is a root: PPID 0 in the pod's PID namespace")
	}
	assert.Equal(t, orphans, flaggedRoots(res, baseline), "the census flags exactly the orphans")
	assert.False(t, roots[livePID].Flagged, "the live session: %s", roots[livePID].Reason)
	assert.Contains(t, roots[livePID].Reason, "input within")
	assert.False(t, roots[nottyPID].Flagged, "the non-interactive exec: %s", roots[nottyPID].Reason)
	assert.Empty(t, roots[nottyPID].TTY)
	assert.NotZero(t, res.OwnPID, "the census found its own exec")
	assert.NotContains(t, roots, res.OwnPID, "and left it out")
	assert.Equal(t, "stat", res.TTYTimes, "busybox has stat")
	for _, pid := range orphans {
		assert.Equal(t, "sh", roots[pid].Comm)
		assert.Regexp(t, `^pts/\d+$`, roots[pid].TTY)
	}

	// --reap --yes: exactly the orphans end.
	rr := census.Reap(ctx, c, tgt, snap, o, census.ReapOptions{})
	stopTyping()
	require.NoError(t, <-typed, "the live session took input throughout")
	t.Logf("reap: %+v", rr)
	assert.Empty(t, rr.Error)
	var reaped []int
	for _, tg := range rr.Targets {
		if tg.Root && !baseline[tg.PID] {
			reaped = append(reaped, tg.PID)
		}
		assert.Equal(t, "ended", tg.Outcome, "pid %d", tg.PID)
	}
	slices.Sort(reaped)
	assert.Equal(t, orphans, reaped, "--reap signals exactly the flagged trees")
	after, _ := census.CensusOne(ctx, c, tgt, o)
	require.Empty(t, after.Error)
	left := map[int]bool{}
	for _, r := range after.Roots {
		left[r.PID] = true
	}
	for _, pid := range orphans {
		assert.False(t, left[pid], "orphan %d is gone from the pod's /proc", pid)
	}
	assert.True(t, left[livePID], "the live session's shell is alive")
	assert.True(t, left[nottyPID], "the non-interactive exec is alive")
	require.NoError(t, live.Type("echo still-$((6*7))\r"))
	require.NoError(t, live.Expect(ctx, "still-42"), "the live session still answers")

	// Cost of one container's census: exec, dump and parse.
	var costs []float64
	for range 10 {
		r, _ := census.CensusOne(ctx, c, tgt, o)
		require.Empty(t, r.Error)
		costs = append(costs, float64(r.Cost))
	}
	sort.Float64s(costs)
	t.Logf("census cost per container (%s, %d processes, 10 runs): min %.1f ms, median %.1f ms, max %.1f ms",
		provider(), after.Processes, costs[0], costs[5], costs[9])
}

// flaggedRoots are the PIDs of res's flagged roots not in baseline, sorted.
func flaggedRoots(res census.PodResult, baseline map[int]bool) []int {
	var out []int
	for _, r := range res.Roots {
		if r.Flagged && !baseline[r.PID] {
			out = append(out, r.PID)
		}
	}
	slices.Sort(out)
	return out
}

func intersect(a, b []int) []int {
	var out []int
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// e2eKubeconfig is a kubeconfig for the cluster: E2E_KUBECONFIG when the
// provider gives one, else one written (0600, removed after the test) from
// the API server, CA and token of the environment.
func e2eKubeconfig(t *testing.T, cl realapiserver.Cluster) string {
	if k := os.Getenv("E2E_KUBECONFIG"); k != "" {
		return k
	}
	ca := ""
	if cl.CAFile != "" {
		ca = "certificate-authority: " + strconv.Quote(cl.CAFile)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(path, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: %q, %s}}]
users: [{name: e2e, user: {token: %q}}]
contexts: [{name: e2e, context: {cluster: e2e, user: e2e, namespace: %q}}]
current-context: e2e
`, cl.APIServer.String(), ca, cl.Token, cl.Namespace), 0o600))
	return path
}
