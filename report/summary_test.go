package report_test

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	junit "github.com/joshdk/go-junit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/report"
)

// markdown renders f's summary with o.
func markdown(t *testing.T, f *harness.ResultsFile, o report.Options) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, report.WriteMarkdown(&b, f, o))
	return b.String()
}

// unescapedPipe is a cell border of a GitHub Markdown table row.
var unescapedPipe = regexp.MustCompile(`(^|[^\\])\|`)

// checkTables fails t unless every table in md is one GitHub renders: a
// header, a delimiter row, and rows, each with as many cells as the
// header (a cell's own | escaped), and no line break inside a row.
func checkTables(t *testing.T, md string) {
	t.Helper()
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "|") {
			continue
		}
		require.Truef(t, i == 0 || lines[i-1] == "", "line %d: a table must follow a blank line: %q", i+1, lines[i-1])
		cells := len(unescapedPipe.FindAllString(lines[i], -1))
		require.Less(t, i+1, len(lines))
		require.Regexpf(t, `^\|(\s*:?-+:?\s*\|)+$`, lines[i+1], "line %d: the delimiter row", i+2)
		for ; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
			require.Truef(t, strings.HasSuffix(lines[i], "|"), "line %d does not end its row: %q", i+1, lines[i])
			assert.Equalf(t, cells, len(unescapedPipe.FindAllString(lines[i], -1)), "line %d has another number of cells than its header: %q", i+1, lines[i])
		}
	}
}

// TestSummaryOfAFailingProxy: a failing proxy's summary says what to fix
// first within the first screen (the known bugs by cases hit, per
// subprotocol), then the failing cells grouped a row per scenario and
// mode with a column per subprotocol, each linking to its page, beside
// the row's first failure and its evidence; the SHOULD misses counted and
// grouped likewise; the notice of the cases only reported on top.
func TestSummaryOfAFailingProxy(t *testing.T) {
	f := loadNoExit(t)
	md := markdown(t, f, report.Options{})
	golden(t, "summary-noexit.md", []byte(md))
	checkTables(t, md)

	firstScreen := strings.Join(strings.SplitN(md, "\n", 41)[:40], "\n")
	assert.Contains(t, firstScreen, "### Fix first")
	assert.Contains(t, firstScreen, "| 1 | the backend connection is dropped with neither an exit nor a close frame | ")
	assert.Contains(t, firstScreen, "> **Note:** 12 half-open cases are only reported (INFO)")
	assert.Contains(t, firstScreen, "| scenario | mode | none | v1 | b64 | v4 | v4b64 | v5 | first failure | key evidence |")

	fails, should := 0, 0
	for _, r := range f.Results {
		switch r.Verdict {
		case harness.Fail:
			fails++
		case harness.NonStrict:
			should++
		}
		if r.Failed() {
			assert.Containsf(t, md, "](report.html#"+report.CaseID(r.Name)+")", "the cell of %s links to its page", r.Name)
		}
	}
	require.NotZero(t, fails)
	require.NotZero(t, should)
	assert.Contains(t, md, fmt.Sprintf("### MUST not met: %d FAIL in ", fails))
	assert.Contains(t, md, fmt.Sprintf("### SHOULD not met: %d NON-STRICT in ", should))
	assert.Contains(t, md, "| `disconnect/client-tcp-fin` | tty | [FAIL](report.html#case-none-tty-disconnect-client-tcp-fin) |")
	assert.NotContains(t, md, "left out", "the whole summary fits")
}

// TestSummaryStaysWithinGitHubsLimit: however large the matrix and
// however long its failures and links, the summary stays under what a
// GitHub comment takes, its tables stay whole, and it says what it left
// out.
func TestSummaryStaysWithinGitHubsLimit(t *testing.T) {
	base := loadNoExit(t)
	f := *base
	f.Results = nil
	long := strings.Repeat("a failure with many words in it; ", 300)
	for i := 0; len(f.Results) < 6000; i++ {
		for _, r := range base.Results {
			r.Scenario = fmt.Sprintf("%s-%d", r.Scenario, i)
			r.Name = fmt.Sprintf("%s-%d", r.Name, i)
			if r.Failed() {
				r.Failures = append([]string{long}, r.Failures...)
				r.LooksLike = append(r.LooksLike, fmt.Sprintf("bug %d", i%40))
			}
			f.Results = append(f.Results, r)
		}
	}
	f.Summary = f.Report().Counts()
	for _, link := range []string{"", "https://ci.example/" + strings.Repeat("x", 300) + "/report.html"} {
		md := markdown(t, &f, report.Options{HTMLLink: link})
		assert.LessOrEqual(t, len(md), report.MaxMarkdown)
		assert.Contains(t, md, "left out to keep this summary within GitHub's size limit")
		assert.True(t, strings.HasSuffix(md, ")\n"), "the link to the full report ends it")
		checkTables(t, md)
	}
}

// series is the fixture of a failing proxy run twice, where its tty
// client-close cases failed in run 1 only: a flake.
func series(t *testing.T) (combined harness.ResultsFile, runs []harness.ResultsFile) {
	t.Helper()
	one := *loadNoExit(t)
	two := one
	two.Results = nil
	for _, r := range one.Results {
		if r.Scenario == "disconnect/client-close/1000" && r.TTY {
			r.Verdict, r.Failures, r.LooksLike, r.Evidence = harness.Pass, nil, nil, []string{"every process of the session gone 3.0 ms after the ending"}
		}
		two.Results = append(two.Results, r)
	}
	rep := two.Report()
	two.Summary, two.ExitCode = rep.Counts(), rep.ExitCode()
	s := harness.NewSeries(2)
	for _, f := range []harness.ResultsFile{two, one} { // run 1 passed them, run 2 did not
		run, err := s.Add(f)
		require.NoError(t, err)
		runs = append(runs, run)
	}
	return s.File(), runs
}

// TestSeriesInEveryFormat: the file combining a series of runs says in
// every format which runs failed and which cases failed in which runs,
// and each case links to its page in each run's own report.
func TestSeriesInEveryFormat(t *testing.T) {
	f, runs := series(t)
	s := resultsSchema(t)
	require.NoError(t, validate(t, s, &f))
	for _, r := range runs {
		require.NoError(t, validate(t, s, &r))
	}
	assert.Equal(t, harness.ExitMustFailed, f.ExitCode)
	assert.Equal(t, 2, f.Count)
	require.Len(t, f.Runs, 2)

	md := markdown(t, &f, report.Options{})
	golden(t, "summary-series.md", []byte(md))
	checkTables(t, md)
	assert.Contains(t, md, "## execconform: FAIL in all 2 runs: ")
	assert.Contains(t, md, "### Flaky: 6 cases not passed in some runs only")
	assert.Contains(t, md, "- [`none/tty/disconnect/client-close/1000`](report.html#case-none-tty-disconnect-client-close-1000): FAIL in run 2")
	assert.Contains(t, md, "[FAIL 1/2](report.html#case-none-tty-disconnect-client-close-1000)")
	assert.Contains(t, md, "[run 1: FAIL](run-1/report.html)")

	var b bytes.Buffer
	require.NoError(t, report.WriteJUnit(&b, &f, report.Options{}))
	suites, err := junit.Ingest(b.Bytes())
	require.NoError(t, err)
	found := false
	for _, s := range suites {
		assert.Equal(t, "1,2", s.Properties["failed_runs"])
		for _, tc := range s.Tests {
			if tc.Name == "none/tty/disconnect/client-close/1000" {
				found = true
				assert.Equal(t, junit.StatusFailed, tc.Status)
				assert.Contains(t, tc.Message, "(FAIL in run 2 of 2)")
				assert.Contains(t, tc.Error.Error(), "in each run: run 1 PASS, run 2 FAIL (the details below are run 2's)")
			}
		}
	}
	assert.True(t, found)

	b.Reset()
	require.NoError(t, report.WriteHTML(&b, &f))
	html := b.String()
	assert.Contains(t, html, `<h2 id="runs">2 runs: runs 1, 2 failed</h2>`)
	assert.Contains(t, html, `<a href="run-2/report.html#case-none-tty-disconnect-client-close-1000">run 2</a> <span class="v-FAIL">FAIL</span>`)
	assert.Contains(t, html, ">FAIL 1/2</a>")

	assert.Equal(t, "over 2 runs: FAIL (exit 1): runs 1, 2 of 2 failed; 36 cases did not pass: none/tty/disconnect/client-close/1000 FAIL in run 2; "+
		"channel.k8s.io/tty/disconnect/client-close/1000 FAIL in run 2; and 34 more (summary.md)", report.SeriesLine(&f, 2))
	assert.Contains(t, report.Headline(&runs[0]), "(run 1 of 2)")
}

// TestNoKeepaliveNoticeInEveryFormat: cases only reported because the
// target declares no keepalive bound are said on top of every format.
func TestNoKeepaliveNoticeInEveryFormat(t *testing.T) {
	f := loadNoExit(t)
	require.Len(t, f.Notices, 1)
	n := f.Notices[0]
	assert.Equal(t, harness.NoticeNoKeepalive, n.Kind)
	assert.Len(t, n.Cases, 12)
	for _, format := range formats {
		var b bytes.Buffer
		require.NoError(t, format.write(&b, f))
		text := unescape(b.String())
		assert.Containsf(t, text, "12 half-open cases are only reported (INFO), not judged: the target declares no keepalive bound; pass --keepalive D", "%s", format.file)
	}
	var b bytes.Buffer
	require.NoError(t, report.WriteJUnit(&b, f, report.Options{}))
	suites, err := junit.Ingest(b.Bytes())
	require.NoError(t, err)
	assert.Contains(t, suites[0].Properties["notice.no-keepalive-bound"], "12 half-open cases")
	b.Reset()
	require.NoError(t, report.WriteHTML(&b, f))
	assert.Contains(t, b.String(), `<div class="notice" id="notice-no-keepalive-bound"><b>Note:</b> 12 half-open cases`)
}

func TestRunsWord(t *testing.T) {
	for _, tc := range []struct {
		runs []int
		want string
	}{
		{[]int{2}, "run 2"},
		{[]int{1, 3}, "runs 1, 3"},
		{[]int{1, 2}, "runs 1, 2"},
		{[]int{1, 2, 3, 4, 7, 9, 10}, "runs 1-4, 7, 9, 10"},
	} {
		assert.Equal(t, tc.want, report.RunsWord(tc.runs))
	}
}
