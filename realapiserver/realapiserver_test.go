package realapiserver_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/realapiserver"
	"github.com/execconform/execconform/scenarios"
)

func TestMain(m *testing.M) { leakguard.Main(m) }

// stand-in: the fake API server plays the real cluster, so that the relay,
// the marking of commands and the ps witness are tested without one. Its
// allowlist lets the marked command (env ... sh), ps aux and kill run.
// procs says where the session's processes are looked for: this machine's
// /proc, or the "pod"'s read through execs (here the same /proc, read by
// another way).
func standIn(t *testing.T, procs string) *realapiserver.Server {
	t.Helper()
	fake, err := fakeapiserver.New(fakeapiserver.Config{Allow: realapiserver.StandInAllow})
	require.NoError(t, err)
	require.NoError(t, fake.Start())
	t.Cleanup(func() { _ = fake.Close() })
	srv, err := realapiserver.New(realapiserver.Cluster{
		APIServer: fake.URL(), CAFile: fake.CAFile(), Token: fake.Token(),
		Namespace: "default", Pod: "stand-in", Container: "shell", Procs: procs,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func target(v proxyundertest.Variant) harness.Target {
	return harness.HandlerTarget(func(b harness.Backend) (http.Handler, error) {
		return proxyundertest.New(proxyundertest.Config{InsecureNoFrontAuth: true, Backend: b.URL, TLSConfig: b.TLSConfig, Token: b.Token, Variant: v})
	})
}

func cases(t *testing.T, expr string) []scenarios.Case {
	cs := scenarios.Filter{Run: regexp.MustCompile(expr)}.Apply(scenarios.Cases(scenarios.All()))
	require.NotEmpty(t, cs)
	return cs
}

// TestRelayRecordsLikeTheFake: through the relay, the harness judges the
// reference proxy as it does against the fake server directly: it passes,
// the relay recorded the close handshake, and ps found no shell.
func TestRelayRecordsLikeTheFake(t *testing.T) {
	for _, procs := range []string{realapiserver.ProcsHost, realapiserver.ProcsPod} {
		t.Run(procs, func(t *testing.T) { testRelayRecordsLikeTheFake(t, procs) })
	}
}

func testRelayRecordsLikeTheFake(t *testing.T, procs string) {
	srv := standIn(t, procs)
	cs := cases(t, `^(v5.channel.k8s.io|base64.channel.k8s.io|none)/(tty|notty)/(disconnect/client-close/1000|disconnect/client-tcp-rst|shell/user-types-exit)$`)
	rep := harness.Run(context.Background(), target(proxyundertest.Correct), cs, harness.Options{Server: srv})
	for _, r := range rep.Results {
		assert.Equal(t, harness.Pass, r.Verdict, "%s: %v", r.Name, r.Failures)
		assert.Zero(t, r.Observed.LiveProcesses, r.Name)
		assert.Zero(t, r.Observed.WitnessLive, r.Name)
		if strings.Contains(r.Name, "disconnect/") {
			assert.NotEmpty(t, r.Observed.CloseFirstBy, "%s: the relay must record the close handshake", r.Name)
			assert.Equal(t, 1000, r.Observed.TargetCloseCode, "%s: the relay must record the proxy's close frame", r.Name)
		}
	}
}

// TestWitnessCountsOrphans: a proxy without the exit leaves the tty shell
// alive; both witnesses, the process table and ps aux, count it and agree.
// With the pod's table, the orphan is found (and killed at the end of the
// case) through execs alone.
func TestWitnessCountsOrphans(t *testing.T) {
	for _, procs := range []string{realapiserver.ProcsHost, realapiserver.ProcsPod} {
		t.Run(procs, func(t *testing.T) { testWitnessCountsOrphans(t, procs) })
	}
}

func testWitnessCountsOrphans(t *testing.T, procs string) {
	srv := standIn(t, procs)
	cs := cases(t, `^v4.channel.k8s.io/tty/disconnect/client-tcp-fin$`)
	rep := harness.Run(context.Background(), target(proxyundertest.NoExit), cs, harness.Options{Server: srv, Grace: time.Second})
	r := rep.Results[0]
	assert.Equal(t, harness.Fail, r.Verdict)
	assert.Equal(t, 1, r.Observed.WitnessLive, "ps aux must count the orphaned shell: %v %v", r.Failures, r.Notes)
	assert.NotZero(t, r.Observed.LiveProcesses)
	joined := strings.Join(append(r.Failures, r.Notes...), "\n")
	assert.Contains(t, joined, "ps aux in pod default/stand-in shows 1 marked shell")
	assert.NotContains(t, joined, "witnesses disagree")
}

func TestMarkedShells(t *testing.T) {
	ps := `PID   USER     TIME  COMMAND
    1 root      0:00 sleep 2147483647
   12 root      0:00 sh -i -s execconform:e2e-1-7
   13 root      0:00 sh -i -s execconform:e2e-1-70
   20 root      0:00 sleep 600
   21 root      0:00 ps aux
`
	assert.Equal(t, []string{"12 root      0:00 sh -i -s execconform:e2e-1-7"}, realapiserver.MarkedShells(ps, "e2e-1-7"))
	assert.Len(t, realapiserver.MarkedShells(ps, ""), 2)
	assert.Empty(t, realapiserver.MarkedShells(ps, "e2e-1-8"))
}

func TestMark(t *testing.T) {
	got := realapiserver.Mark("t1", []string{"sh", "-i"})
	assert.Equal(t, "env", got[0])
	assert.Equal(t, "EXECCONFORM_SESSION=t1", got[1])
	assert.Equal(t, []string{"sh", "-i", "-s", "execconform:t1"}, got[3:])
	assert.Equal(t, []string{"sh", "-c", "exit 3"}, realapiserver.Mark("t1", []string{"sh", "-c", "exit 3"})[3:], "a command string gets no marker")
}
