package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/bench"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/schemafile"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
)

func reference(name string, v proxyundertest.Variant) bench.Target {
	return bench.Target{Name: name, Start: mutants.Target(v, nil), Header: mutants.WithFront(harness.Options{}).ClientHeader, Memory: bench.MemoryInProcess}
}

// small is a bench of every figure at a small size: the code is tested,
// not the machine.
func small() bench.Config {
	return bench.Config{
		Runs: 1, Keystrokes: 20, Busy: 2, StdoutBytes: 1 << 20, StdinBytes: 256 << 10, Setups: 3,
		IdleSizes: []int{4}, DropSizes: []int{6}, DropBound: time.Second,
		Keepalive: map[string]time.Duration{"reference": proxyundertest.SuiteKeepalive},
	}
}

func TestEveryFigureOnSmallSizes(t *testing.T) {
	t.Parallel() // mostly waiting on the drops' bounds
	rep, err := bench.Run(context.Background(), []bench.Target{reference("reference", proxyundertest.Correct)}, small())
	require.NoError(t, err)
	require.Len(t, rep.Targets, 2)
	for _, tr := range rep.Targets {
		assert.Empty(t, tr.Errors, tr.Name)
	}
	ref := rep.Targets[1]
	for _, id := range []string{
		"keystroke.idle.p50", "keystroke.idle.p99", "keystroke.busy.p99",
		"throughput.stdout.v4.channel.k8s.io", "throughput.stdin.v4.base64.channel.k8s.io", "throughput.stdout.spdy/v4.channel.k8s.io", "throughput.stdin.tty",
		"setup.p50", "setup.p99", "idle.memory.4", "idle.goroutines.4", "idle.memory.4.own",
	} {
		f, ok := ref.Figure(id)
		if assert.True(t, ok, id) {
			assert.Len(t, f.Runs, 1, id)
		}
	}
	// The reference proxy ends every shell, however the clients go.
	for _, kind := range bench.DropKinds() {
		f, ok := ref.Figure("drop." + kind + ".6.left")
		if assert.True(t, ok, kind) {
			assert.Equal(t, 0.0, f.Median, kind)
		}
		last, ok := ref.Figure("drop." + kind + ".6.last")
		if assert.True(t, ok, kind) {
			assert.Greater(t, last.Median, 0.0, kind)
		}
	}
	// Without a proxy, a tty shell outlives its client (the runtime keeps
	// the pty): direct leaves every one.
	direct := rep.Targets[0]
	for _, kind := range []string{bench.DropFIN, bench.DropRST} {
		f, ok := direct.Figure("drop." + kind + ".6.left")
		if assert.True(t, ok, kind) {
			assert.Equal(t, 6.0, f.Median, kind)
		}
	}
	thr, _ := ref.Figure("throughput.stdout.v5.channel.k8s.io")
	require.NotNil(t, thr.VsDirect)
	assert.Greater(t, *thr.VsDirect, 0.0)

	var table, md, js bytes.Buffer
	rep.WriteTable(&table)
	rep.WriteMarkdown(&md)
	require.NoError(t, rep.WriteJSON(&js))
	t.Log("\n" + table.String())
	for _, tr := range rep.Targets {
		t.Log(tr.Name, " took ", tr.Took, " ", tr.GroupTook)
	}
	assert.Contains(t, table.String(), "keystroke echo p99, idle")
	assert.Contains(t, md.String(), "| figure | unit | direct | reference |")
	assert.True(t, strings.HasPrefix(js.String(), "{"))
	validate(t, js.Bytes())
}

// benchSchema compiles docs/bench.schema.json.
func benchSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	s, err := schemafile.Compile("../docs/bench.schema.json")
	require.NoError(t, err)
	return s
}

// validate checks a bench.json against docs/bench.schema.json.
func validate(t *testing.T, b []byte) {
	t.Helper()
	require.NoError(t, schemafile.Validate(benchSchema(t), b))
}

// The schema is not a formality: a report as Run writes it passes, the
// same without its sizes or with a field the schema does not know is
// refused.
func TestSchemaRefusesWhatIsNotAReport(t *testing.T) {
	s := benchSchema(t)
	rep := &bench.Report{Schema: bench.SchemaVersion, Started: time.Now(), Machine: bench.CurrentMachine(),
		Config: bench.PublicConfig{Runs: 1, Keystrokes: 1, StdoutBytes: 1, StdinBytes: 1, Setups: 1, IdleSizes: []int{1}, DropSizes: []int{1},
			DropRunsAbove: 1, DropKinds: bench.DropKinds(), DropBoundNS: 1, Figures: bench.Groups()},
		Targets: []bench.TargetReport{{Name: "direct", Kind: "direct", Memory: bench.MemoryInProcess,
			Figures: []bench.Figure{{ID: "keystroke.idle.p99", Group: "keystroke", Label: "x", Unit: "ms", Runs: []float64{1}, Min: 1, Median: 1, Max: 1}}}}}
	var js bytes.Buffer
	require.NoError(t, rep.WriteJSON(&js))
	require.NoError(t, schemafile.Validate(s, js.Bytes()), "a whole report")

	rep.Config = bench.PublicConfig{}
	js.Reset()
	require.NoError(t, rep.WriteJSON(&js))
	require.Error(t, schemafile.Validate(s, js.Bytes()), "a config without its sizes")

	var m map[string]any
	require.NoError(t, json.Unmarshal(js.Bytes(), &m))
	m["surprise"] = 1
	b, err := json.Marshal(m)
	require.NoError(t, err)
	require.Error(t, schemafile.Validate(s, b), "an unknown field")
}

// The mass drop counts what a broken proxy leaves: the naive proxy (it
// drops its backend connection) leaves every shell, the proxy without a
// keepalive leaves them on a silent client leg.
func TestMassDropSeesWhatABrokenProxyLeaves(t *testing.T) {
	t.Parallel()
	cfg := small()
	cfg.Figures = []string{bench.GroupDrop}
	cfg.DropKinds = []string{bench.DropFIN, bench.DropHalfOpen}
	cfg.DropBound = 2 * time.Second
	cfg.Keepalive = map[string]time.Duration{"no-exit": proxyundertest.SuiteKeepalive, "no-keepalive": proxyundertest.SuiteKeepalive}
	rep, err := bench.Run(context.Background(), []bench.Target{
		reference("no-exit", proxyundertest.NoExit),
		reference("no-keepalive", proxyundertest.NoKeepalive),
	}, cfg)
	require.NoError(t, err)
	left := func(target, kind string) float64 {
		for _, tr := range rep.Targets {
			if tr.Name == target {
				require.Empty(t, tr.Errors)
				f, ok := tr.Figure("drop." + kind + ".6.left")
				require.True(t, ok, target+" "+kind)
				return f.Median
			}
		}
		t.Fatalf("no target %s", target)
		return 0
	}
	assert.Equal(t, 6.0, left("no-exit", bench.DropFIN))
	assert.Equal(t, 0.0, left("no-keepalive", bench.DropFIN))
	assert.Equal(t, 6.0, left("no-keepalive", bench.DropHalfOpen))
}

// The reports published in docs/bench/ are what the schema says.
func TestPublishedReportsMatchTheSchema(t *testing.T) {
	for _, name := range []string{"bench.json", "scale.json"} {
		b, err := os.ReadFile("../docs/bench/" + name)
		require.NoError(t, err)
		validate(t, b)
	}
}
