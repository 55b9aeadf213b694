package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	junit "github.com/joshdk/go-junit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/report"
)

// readResults reads dir/results.json.
func readResults(t *testing.T, dir string) harness.ResultsFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	var f harness.ResultsFile
	require.NoError(t, json.Unmarshal(b, &f))
	return f
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// lastLine is the last line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// junitFailures are the names of the failed test cases of dir/junit.xml.
func junitFailures(t *testing.T, dir string) map[string]junit.Test {
	t.Helper()
	suites, err := junit.IngestFile(filepath.Join(dir, "junit.xml"))
	require.NoError(t, err)
	out := map[string]junit.Test{}
	for _, s := range suites {
		for _, tc := range s.Tests {
			if tc.Status == junit.StatusFailed {
				out[tc.Name] = tc
			}
		}
	}
	return out
}

const tcpFin = `^v5\.channel\.k8s\.io/(tty|notty)/disconnect/client-tcp-fin$`

// TestRunCountFailingVariant: with --count 2 a variant that fails in both
// runs fails in every report of the series, each run has reports of its
// own, and the last line gives the totals over the runs.
func TestRunCountFailingVariant(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"run", "--variant", "no-exit", "--count", "2", "--grace", "1s", "--out", dir, "--run", tcpFin}, &out, &errb)
	assert.Equal(t, exitError(1), err)
	t.Log(out.String())

	f := readResults(t, dir)
	assert.Equal(t, harness.ExitMustFailed, f.ExitCode)
	assert.Equal(t, 2, f.Count)
	require.Len(t, f.Runs, 2)
	for i, r := range f.Runs {
		assert.Equal(t, i+1, r.Run)
		assert.Equal(t, harness.ExitMustFailed, r.ExitCode)
		assert.Len(t, r.Failed, 2)
		own := readResults(t, filepath.Join(dir, report.RunDir(i+1)))
		assert.Equal(t, i+1, own.Run)
		assert.Equal(t, harness.ExitMustFailed, own.ExitCode)
		assert.Contains(t, readFile(t, filepath.Join(dir, report.RunDir(i+1), "summary.md")), "(run "+string(rune('1'+i))+" of 2)")
	}
	for _, r := range f.Results {
		assert.Equal(t, []harness.Verdict{harness.Fail, harness.Fail}, r.RunVerdicts, r.Name)
	}
	assert.Contains(t, readFile(t, filepath.Join(dir, "summary.md")), "## execconform: FAIL in all 2 runs: 2 MUST cases failed")
	assert.Contains(t, readFile(t, filepath.Join(dir, "report.html")), `<h2 id="runs">2 runs: runs 1, 2 failed</h2>`)
	assert.Len(t, junitFailures(t, dir), 2)
	assert.Equal(t, "over 2 runs: FAIL (exit 1): runs 1, 2 of 2 failed; 2 cases did not pass: "+
		"v5.channel.k8s.io/tty/disconnect/client-tcp-fin FAIL in every run; v5.channel.k8s.io/notty/disconnect/client-tcp-fin FAIL in every run",
		lastLine(out.String()))
}

// TestRunCountOnlyTheFirstRunFails: a proxy that fails in run 1 of 2
// only (its first process is the no-exit variant, every later one the
// reference proxy) fails the series in every report, though the last run,
// which used to write over the others, passed.
func TestRunCountOnlyTheFirstRunFails(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(t.TempDir(), "started-once")
	cmd := "if mkdir " + mark + " 2>/dev/null; then V='--variant no-exit'; else V=''; fi; " + selfProxy(t, "$V")
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"run", frontArgs[0], frontArgs[1], "--proxy-cmd", cmd, "--keepalive", "3s", "--count", "2", "--grace", "1s", "--out", dir,
		"--run", `^v5\.channel\.k8s\.io/tty/disconnect/client-tcp-fin$`}, &out, &errb)
	t.Log(out.String(), errb.String())
	assert.Equal(t, exitError(1), err)

	f := readResults(t, dir)
	assert.Equal(t, harness.ExitMustFailed, f.ExitCode, "results.json tells the run that failed")
	require.Len(t, f.Runs, 2)
	assert.Equal(t, harness.ExitMustFailed, f.Runs[0].ExitCode)
	assert.Equal(t, harness.ExitPass, f.Runs[1].ExitCode)
	require.Len(t, f.Results, 1)
	r := f.Results[0]
	assert.Equal(t, harness.Fail, r.Verdict)
	assert.Equal(t, 1, r.Run)
	assert.Equal(t, []harness.Verdict{harness.Fail, harness.Pass}, r.RunVerdicts)
	assert.NotEmpty(t, r.Live, "the details are the failing run's")
	assert.Equal(t, harness.ExitPass, readResults(t, filepath.Join(dir, report.RunDir(2))).ExitCode)
	assert.Equal(t, harness.ExitMustFailed, readResults(t, filepath.Join(dir, report.RunDir(1))).ExitCode)

	md := readFile(t, filepath.Join(dir, "summary.md"))
	assert.Contains(t, md, "## execconform: FAIL in 1 of 2 runs (run 1): 1 MUST case failed")
	assert.Contains(t, md, "): FAIL in run 1\n")
	assert.Contains(t, md, "[FAIL 1/2](report.html#case-v5.channel.k8s.io-tty-disconnect-client-tcp-fin)")
	fails := junitFailures(t, dir)
	require.Contains(t, fails, r.Name)
	assert.Contains(t, fails[r.Name].Message, "(FAIL in run 1 of 2)")
	assert.Contains(t, readFile(t, filepath.Join(dir, "report.html")), `<h2 id="runs">2 runs: run 1 failed</h2>`)
	assert.Equal(t, "over 2 runs: FAIL (exit 1): run 1 of 2 failed; 1 case did not pass: v5.channel.k8s.io/tty/disconnect/client-tcp-fin FAIL in run 1",
		lastLine(out.String()))
}

// TestRunDefaultReportDirs: each target writes its reports to a directory
// of its own by default, so that a variant's run does not replace the
// reference proxy's reports; --out always wins; the directory is said,
// also with --quiet.
func TestRunDefaultReportDirs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "conformance-report"},
		{[]string{"--variant", "no-exit"}, "conformance-report/variant-no-exit"},
		{[]string{"--proxy-cmd", "EXECCONFORM_X=1 exec /opt/bin/my-proxy --listen {{.Listen}}"}, "conformance-report/proxy-cmd-my-proxy"},
		{[]string{"--proxy-cmd", "'./my proxy' --listen {{.Listen}}"}, "conformance-report/proxy-cmd-my"},
		{[]string{"--target-url", "http://127.0.0.1:8080/api/kubernetes"}, "conformance-report/target-url-127.0.0.1_8080"},
		{[]string{"--target-url", "https://[::1]:8443"}, "conformance-report/target-url-1_8443"},
		{[]string{"--cluster"}, "conformance-report/cluster"},
		{[]string{"--cluster", "--proxy-cmd", "myproxy {{.Listen}}"}, "conformance-report/cluster-proxy-cmd-myproxy"},
		{[]string{"--variant", "no-exit", "--out", "mine"}, "mine"},
		{[]string{"--variant", "no-exit", "--out", ""}, ""},
	} {
		var o runOptions
		fs, _ := o.flags(io.Discard)
		require.NoError(t, fs.Parse(tc.args))
		fs.Visit(func(f *flag.Flag) { o.outSet = o.outSet || f.Name == "out" })
		assert.Equal(t, tc.want, o.outDir(), "%q", tc.args)
	}

	t.Chdir(t.TempDir())
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"run", "--variant", "no-exit", "--quiet", "--grace", "1s", "--run", `^v5\.channel\.k8s\.io/notty/disconnect/client-tcp-fin$`}, &out, &errb)
	assert.Equal(t, exitError(1), err)
	assert.FileExists(t, filepath.Join("conformance-report", "variant-no-exit", "summary.md"))
	assert.NoFileExists(t, filepath.Join("conformance-report", "summary.md"), "the reference proxy's place is left alone")
	assert.Contains(t, out.String(), "\nreports: conformance-report/variant-no-exit/results.json conformance-report/variant-no-exit/junit.xml")
}

// TestRunHalfOpenWithoutKeepalive: a proxy run without --keepalive has
// its half-open cases only reported; the run says so at its start and
// its end, and every report says so.
func TestRunHalfOpenWithoutKeepalive(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"run", frontArgs[0], frontArgs[1], "--proxy-cmd", selfProxy(t, ""), "--quiet", "--out", dir,
		"--run", `^v5\.channel\.k8s\.io/tty/(lb/client-leg/half-open|disconnect/client-tcp-fin)$`}, &out, &errb)
	require.NoError(t, err, "%s%s", out.String(), errb.String())
	const line = "1 half-open case is only reported: no --keepalive given; pass --keepalive D, the longest your proxy takes to notice a silent client"
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	assert.Equal(t, line, lines[0], "said first")
	assert.Equal(t, 2, strings.Count(out.String(), line+"\n"), "and again at the end:\n%s", out.String())

	f := readResults(t, dir)
	require.Len(t, f.Notices, 1)
	assert.Equal(t, harness.NoticeNoKeepalive, f.Notices[0].Kind)
	assert.Equal(t, []string{"v5.channel.k8s.io/tty/lb/client-leg/half-open"}, f.Notices[0].Cases)
	assert.Contains(t, readFile(t, filepath.Join(dir, "summary.md")), "> **Note:** 1 half-open case is only reported (INFO)")
	assert.Contains(t, readFile(t, filepath.Join(dir, "report.html")), `<div class="notice" id="notice-no-keepalive-bound">`)
	suites, err := junit.IngestFile(filepath.Join(dir, "junit.xml"))
	require.NoError(t, err)
	assert.Contains(t, suites[0].Properties["notice.no-keepalive-bound"], "1 half-open case is only reported")

	// With the bound given, nothing to say.
	out.Reset()
	require.NoError(t, run(context.Background(), []string{"run", frontArgs[0], frontArgs[1], "--proxy-cmd", selfProxy(t, ""), "--keepalive", "3s", "--quiet", "--out", "",
		"--run", `^v5\.channel\.k8s\.io/tty/disconnect/client-tcp-fin$`}, &out, &errb))
	assert.NotContains(t, out.String(), "only reported")
}

// TestRunHelp: --help exits 0 with the flags by group on stdout, each
// default in words where a value would mislead (--keepalive's is not
// -1ns); every flag is in a group.
func TestRunHelp(t *testing.T) {
	var out, errb bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"run", "--help"}, &out, &errb))
	help := out.String()
	golden(t, "run-help.golden", help)
	assert.Empty(t, errb.String())
	assert.NotContains(t, help, "-1ns")
	words := strings.Join(strings.Fields(help), " ")
	assert.Contains(t, words, "(default: the reference proxy's own, 3s; none for --proxy-cmd and --target-url)")
	assert.Contains(t, help, "(default 3s)")
	assert.Contains(t, help, `(default "127.0.0.1:9443")`)
	var o runOptions
	fs, _ := o.flags(io.Discard)
	grouped := map[string]bool{}
	for _, g := range runFlagGroups {
		for _, name := range g.flags {
			grouped[name] = true
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		assert.Truef(t, grouped[f.Name], "--%s is in no group of writeRunUsage", f.Name)
		assert.Truef(t, regexp.MustCompile(`(?m)^  --?`+regexp.QuoteMeta(f.Name)+`( |$)`).MatchString(help), "--%s is in the help", f.Name)
	})

	for _, cmd := range []string{"proxy", "fakeapiserver", "reap", "mutants"} {
		out.Reset()
		assert.NoError(t, run(context.Background(), []string{cmd, "-h"}, &out, &errb), cmd)
		assert.Contains(t, out.String(), "-", cmd)
	}
	errb.Reset()
	assert.Equal(t, exitError(2), run(context.Background(), []string{"run", "--no-such-flag"}, &out, &errb))
	assert.Contains(t, errb.String(), "flag provided but not defined: -no-such-flag")
	assert.Contains(t, errb.String(), "usage: execconform run")
}

// TestListForms: --list is a row per scenario with its level, modes,
// subprotocols and description and the totals; --list --quiet a line per
// case; --list --json the cases as JSON.
func TestListForms(t *testing.T) {
	var out, errb bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"run", "--list", "--json"}, &out, &errb))
	var cases []listedCase
	require.NoError(t, json.Unmarshal(out.Bytes(), &cases))
	names := map[string]bool{}
	halfOpen := 0
	for _, c := range cases {
		names[c.Name] = true
		assert.NotEmpty(t, c.Description, c.Name)
		if c.NeedsKeepalive {
			halfOpen++
		}
	}
	assert.Equal(t, 12, halfOpen)

	out.Reset()
	require.NoError(t, run(context.Background(), []string{"run", "--list", "--quiet"}, &out, &errb))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	assert.Len(t, lines, len(cases))
	for _, l := range lines {
		f := strings.Fields(l)
		require.Len(t, f, 2, l)
		assert.True(t, names[f[1]], l)
	}

	out.Reset()
	require.NoError(t, run(context.Background(), []string{"run", "--list", "--run", `^v5\.channel\.k8s\.io/tty/lb/`}, &out, &errb))
	assert.Contains(t, out.String(), "lb/client-leg/half-open          SHOULD               tty        v5 · 1 case\n")
	assert.Contains(t, out.String(), "without it, reported as")
	assert.Equal(t, "5 cases (5 scenarios): 2 MUST, 3 SHOULD", lastLine(out.String()))
}
