package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/report"
	"github.com/execconform/execconform/scenarios"
)

func TestMain(m *testing.M) { leakguard.Main(m) }

var (
	update    = flag.Bool("update", false, "rewrite the golden files from testdata/fixture.json")
	refixture = flag.Bool("refixture", false, "capture testdata/fixture.json anew from live runs (then -update the goldens)")
)

// fixtureRuns are the live runs testdata/fixture.json is made of: every
// verdict, both legs' traces, a trimmed trace, live processes.
var fixtureRuns = []fixtureRun{
	{variant: proxyundertest.Correct, run: `^(v5\.channel\.k8s\.io/tty/disconnect/client-close/1000|channel\.k8s\.io/notty/disconnect/client-tcp-fin|v5\.channel\.k8s\.io/tty/busy/stdout-flood|base64\.channel\.k8s\.io/tty/proxy/killed)$`},
	{variant: proxyundertest.NoExit, run: `^v5\.channel\.k8s\.io/tty/disconnect/client-tcp-fin$`},
	{variant: proxyundertest.AlwaysBase64Exit, run: `^v4\.channel\.k8s\.io/tty/disconnect/client-close/1001$`},
	{variant: proxyundertest.NoKeepalive, run: `^v5\.channel\.k8s\.io/tty/lb/client-leg/half-open$`},
	{broken: true, run: `^v5\.channel\.k8s\.io/notty/disconnect/client-tcp-rst$`},
}

func cases(t testing.TB, run string) []scenarios.Case {
	t.Helper()
	var out []scenarios.Case
	for _, c := range scenarios.Cases(scenarios.All()) {
		if regexp.MustCompile(run).MatchString(c.Name()) {
			out = append(out, c)
		}
	}
	require.NotEmpty(t, out, run)
	return out
}

func brokenTarget(context.Context, harness.Backend) (*url.URL, func(), error) {
	return nil, nil, errors.New("exec: \"my-proxy\": executable file not found in $PATH")
}

// fixtureRun is a live run for a fixture.
type fixtureRun struct {
	variant proxyundertest.Variant
	run     string // regexp on case names
	broken  bool   // a target that does not start: ERROR
}

// capture runs runs with opts and merges their results into one file.
func capture(t *testing.T, runs []fixtureRun, opts harness.Options, target string) *harness.ResultsFile {
	var (
		mu  sync.Mutex
		all []harness.Result
		wg  sync.WaitGroup
	)
	for _, fr := range runs {
		cs := cases(t, fr.run) // on the test's goroutine: it may fail the test
		wg.Add(1)
		go func() {
			defer wg.Done()
			target := mutants.Target(fr.variant, nil)
			if fr.broken {
				target = brokenTarget
			}
			rep := harness.Run(context.Background(), target, cs, mutants.WithFront(opts))
			mu.Lock()
			all = append(all, rep.Results...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	order := map[string]int{}
	for i, c := range scenarios.Cases(scenarios.All()) {
		order[c.Name()] = i
	}
	slices.SortFunc(all, func(a, b harness.Result) int { return order[a.Name] - order[b.Name] })
	rep := &harness.Report{Started: time.Now(), Duration: 4 * time.Second, Results: all,
		Options: harness.RunOptions{Parallel: 16, Grace: opts.Grace, KeepaliveBound: opts.KeepaliveBound}}
	f := harness.NewResultsFile(target, rep)
	report.Normalize(&f)
	return &f
}

func loadFixture(t *testing.T) *harness.ResultsFile {
	t.Helper()
	return loadFile(t, "fixture.json", func() *harness.ResultsFile {
		return capture(t, fixtureRuns, harness.Options{Grace: 3 * time.Second, KeepaliveBound: proxyundertest.SuiteKeepalive},
			"fixture: the reference proxy and some of its broken variants")
	})
}

// loadNoExit is testdata/fixture-noexit.json: a failing proxy (the no-exit
// variant) across every subprotocol, with no keepalive bound declared, as
// a maintainer's first run of their own proxy looks. The frames are left
// out (the summary does not show them).
func loadNoExit(t *testing.T) *harness.ResultsFile {
	t.Helper()
	return loadFile(t, "fixture-noexit.json", func() *harness.ResultsFile {
		f := capture(t, []fixtureRun{{variant: proxyundertest.NoExit, run: noExitRun}}, harness.Options{Grace: time.Second},
			"reference proxy (broken variant: no-exit)")
		for i := range f.Results {
			f.Results[i].Legs, f.Results[i].Backend = nil, nil
		}
		return f
	})
}

// noExitRun are fixture-noexit.json's cases: MUST and SHOULD rows, both
// modes, and the half-open case (INFO without a keepalive bound).
const noExitRun = `^[^/]+/(tty|notty)/(disconnect/client-close/1000|disconnect/client-tcp-fin|busy/foreground-sleep|busy/paste-in-flight|lb/client-leg/half-open)$`

// loadFile reads testdata/name, captured anew by capture with -refixture.
func loadFile(t *testing.T, name string, capture func() *harness.ResultsFile) *harness.ResultsFile {
	t.Helper()
	path := filepath.Join("testdata", name)
	if _, err := os.Stat(path); *refixture || errors.Is(err, os.ErrNotExist) {
		f := capture()
		var b bytes.Buffer
		require.NoError(t, report.WriteJSON(&b, f))
		require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
	}
	b, err := os.ReadFile(path)
	require.NoError(t, err, "capture it with -refixture")
	var f harness.ResultsFile
	require.NoError(t, json.Unmarshal(b, &f))
	return &f
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update || *refixture {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	assert.Equal(t, string(want), string(got), "%s differs from its golden file (go test ./report -update, then review the diff)", name)
}

// TestGolden renders the fixture in every format and compares with the
// golden files. The fixture is a normalised live capture: its times
// start at a fixed instant, its PIDs and session IDs are renumbered.
func TestGolden(t *testing.T) {
	f := loadFixture(t)
	for _, format := range formats {
		t.Run(format.file, func(t *testing.T) {
			var b bytes.Buffer
			require.NoError(t, format.write(&b, f))
			golden(t, format.file, b.Bytes())
		})
	}
}

// formats are the renderers, by the file name WriteAll gives them.
var formats = []struct {
	file  string
	write func(*bytes.Buffer, *harness.ResultsFile) error
}{
	{report.JSONFile, func(b *bytes.Buffer, f *harness.ResultsFile) error { return report.WriteJSON(b, f) }},
	{report.JUnitFile, func(b *bytes.Buffer, f *harness.ResultsFile) error { return report.WriteJUnit(b, f, report.Options{}) }},
	{report.HTMLFile, func(b *bytes.Buffer, f *harness.ResultsFile) error { return report.WriteHTML(b, f) }},
	{report.MarkdownFile, func(b *bytes.Buffer, f *harness.ResultsFile) error {
		return report.WriteMarkdown(b, f, report.Options{})
	}},
}

// TestFailingEvidenceInEveryFormat runs real failing cases and checks that
// each format carries their key evidence: the missing exit, the missing
// close frame, and the PID of the shell left alive.
func TestFailingEvidenceInEveryFormat(t *testing.T) {
	for _, tc := range []struct {
		variant proxyundertest.Variant
		want    []string // beside the live PID
	}{
		// Drops the backend: neither an exit nor a close frame.
		{proxyundertest.NoExit, []string{"no exit on stdin reached the API server after the ending", "no close frame from the proxy"}},
		// Sends the exit, then drops: the close frame is missing.
		{proxyundertest.ExitThenDrop, []string{"exit on stdin reached the API server at", "no close frame from the proxy"}},
		// Closes cleanly, no exit.
		{proxyundertest.CloseNoExit, []string{"no exit on stdin reached the API server after the ending", "the proxy sent close 1000"}},
	} {
		t.Run(string(tc.variant), func(t *testing.T) {
			t.Parallel()
			c := cases(t, `^v5\.channel\.k8s\.io/tty/disconnect/client-tcp-fin$`)
			rep := harness.Run(context.Background(), mutants.Target(tc.variant, nil), c, mutants.WithFront(harness.Options{Grace: time.Second}))
			require.Len(t, rep.Results, 1)
			r := rep.Results[0]
			require.Equal(t, harness.Fail, r.Verdict, "%v", r.Failures)
			if tc.variant == proxyundertest.ExitThenDrop {
				// The exit ends the shell; what is missing is the close frame.
				require.Empty(t, r.Live)
			} else {
				require.NotEmpty(t, r.Live, "the shell must be alive for this test")
			}
			f := harness.NewResultsFile("test", rep)
			want := slices.Clone(tc.want)
			for _, p := range r.Live {
				want = append(want, fmt.Sprintf("pid=%d ", p.PID))
			}
			for _, format := range formats {
				var b bytes.Buffer
				require.NoError(t, format.write(&b, &f))
				text := unescape(b.String())
				for _, w := range want {
					assert.Truef(t, strings.Contains(text, w), "%s lacks the evidence %q", format.file, w)
				}
			}
		})
	}
}

// unescape undoes the escaping of the formats (JSON, XML and HTML
// entities) so that evidence can be looked for as plain text.
func unescape(s string) string {
	return strings.NewReplacer(`\u0026`, "&", `\u003c`, "<", `\u003e`, ">", `\"`, `"`,
		"&#34;", `"`, "&#39;", "'", "&quot;", `"`, "&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}

// BenchmarkWriteAll renders every format for a matrix of the full
// matrix's size (the fixture's cases repeated to 280).
func BenchmarkWriteAll(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("testdata", "fixture.json"))
	require.NoError(b, err)
	var f harness.ResultsFile
	require.NoError(b, json.Unmarshal(raw, &f))
	base := f.Results
	f.Results = nil
	for i := 0; len(f.Results) < 280; i++ {
		for _, r := range base {
			r.Name = fmt.Sprintf("%s-%d", r.Name, i)
			f.Results = append(f.Results, r)
		}
	}
	dir := b.TempDir()
	for b.Loop() {
		if _, err := report.WriteAll(dir, &f, report.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNormalizeKeepsANormalisedFile: normalising the (normalised) fixture
// again changes nothing, so the goldens depend on the capture alone.
func TestNormalizeKeepsANormalisedFile(t *testing.T) {
	f := loadFixture(t)
	var before, after bytes.Buffer
	require.NoError(t, report.WriteJSON(&before, f))
	report.Normalize(f)
	require.NoError(t, report.WriteJSON(&after, f))
	assert.Equal(t, before.String(), after.String())
}
