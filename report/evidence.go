// Package report renders a run's results (harness.ResultsFile) for the
// people and tools that act on them: results.json, JUnit XML, one
// self-contained HTML file with a frame timeline per case, and a Markdown
// summary for pull requests. Every format carries the same key evidence of
// a failed case (harness.Evidence): whether an exit reached the API
// server, the close handshake on each leg, and the processes still alive.
package report

import (
	"fmt"
	"slices"
	"strings"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/scenarios"
)

// CaseID is the HTML anchor of a case ("case-" and its name with every
// character but letters, digits, '.' and '-' replaced by '-').
func CaseID(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			b[i] = '-'
		}
	}
	return "case-" + string(b)
}

// verdictOrder is the order verdicts are counted and shown in.
var verdictOrder = []harness.Verdict{harness.Pass, harness.Fail, harness.NonStrict, harness.Info, harness.Error}

// levelOrder is the order levels are shown in.
var levelOrder = []scenarios.Level{scenarios.MUST, scenarios.SHOULD, scenarios.INFO}

// failed lists the results that did not pass, FAIL and ERROR first.
func failed(f *harness.ResultsFile) []harness.Result {
	var out []harness.Result
	for _, r := range f.Results {
		if r.Failed() {
			out = append(out, r)
		}
	}
	rank := func(v harness.Verdict) int {
		switch v {
		case harness.Fail:
			return 0
		case harness.Error:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(out, func(a, b harness.Result) int { return rank(a.Verdict) - rank(b.Verdict) })
	return out
}

// Headline is the run's outcome in a few words. For the file combining
// a series of runs (execconform run --count) it says in how many runs;
// for one run of a series, which run it is.
func Headline(f *harness.ResultsFile) string {
	word, detail := headline(f.Summary)
	switch {
	case len(f.Runs) > 1:
		code := map[string]int{"FAIL": harness.ExitMustFailed, "ERROR": harness.ExitSuiteError}[word]
		var bad []int
		for _, r := range f.Runs {
			if code != 0 && r.ExitCode == code {
				bad = append(bad, r.Run)
			}
		}
		if len(bad) == 0 || len(bad) == len(f.Runs) {
			return fmt.Sprintf("%s in all %d runs: %s", word, len(f.Runs), detail)
		}
		return fmt.Sprintf("%s in %d of %d runs (%s): %s", word, len(bad), len(f.Runs), RunsWord(bad), detail)
	case f.Run > 0:
		return fmt.Sprintf("%s: %s (run %d of %d)", word, detail, f.Run, f.Count)
	}
	return word + ": " + detail
}

// headline is the outcome of counts: a verdict word and a detail.
func headline(counts map[scenarios.Level]map[harness.Verdict]int) (string, string) {
	mustFail := counts[scenarios.MUST][harness.Fail]
	errs := 0
	for _, vs := range counts {
		errs += vs[harness.Error]
	}
	switch {
	case mustFail > 0:
		return "FAIL", fmt.Sprintf("%d MUST %s failed", mustFail, plural(mustFail, "case", "cases"))
	case errs > 0:
		return "ERROR", fmt.Sprintf("%d %s could not run", errs, plural(errs, "case", "cases"))
	}
	ns := counts[scenarios.SHOULD][harness.NonStrict]
	if ns > 0 {
		return "PASS", fmt.Sprintf("every MUST case passed (%d SHOULD %s not met)", ns, plural(ns, "case", "cases"))
	}
	return "PASS", "every MUST and SHOULD case passed"
}

// RunsWord names runs of a series: "run 2", "runs 1, 3", "runs 1-4, 7".
func RunsWord(runs []int) string {
	var parts []string
	for i := 0; i < len(runs); {
		j := i
		for j+1 < len(runs) && runs[j+1] == runs[j]+1 {
			j++
		}
		switch {
		case j-i >= 2:
			parts = append(parts, fmt.Sprintf("%d-%d", runs[i], runs[j]))
		case j > i:
			parts = append(parts, fmt.Sprint(runs[i]), fmt.Sprint(runs[j]))
		default:
			parts = append(parts, fmt.Sprint(runs[i]))
		}
		i = j + 1
	}
	return plural(len(runs), "run ", "runs ") + strings.Join(parts, ", ")
}

// failedRuns are the runs of a series whose exit code was not 0.
func failedRuns(f *harness.ResultsFile) []int {
	var bad []int
	for _, r := range f.Runs {
		if r.ExitCode != harness.ExitPass {
			bad = append(bad, r.Run)
		}
	}
	return bad
}

// RunDir is the directory, beside the combined reports of a series, of
// run k's own reports.
func RunDir(k int) string { return fmt.Sprintf("run-%d", k) }

// RunVerdicts says how a case of a combined file ended in the runs of
// its series where it did not pass: "FAIL in runs 1, 3", "FAIL in every
// run", "FAIL in run 1, ERROR in run 2"; "" for a case that passed in
// every run (or a file of one run).
func RunVerdicts(r harness.Result) string {
	var order []harness.Verdict
	runs := map[harness.Verdict][]int{}
	for i, v := range r.RunVerdicts {
		if !notPassed(v) {
			continue
		}
		if runs[v] == nil {
			order = append(order, v)
		}
		runs[v] = append(runs[v], i+1)
	}
	var parts []string
	for _, v := range order {
		if len(runs[v]) == len(r.RunVerdicts) {
			parts = append(parts, fmt.Sprintf("%s in every run", v))
		} else {
			parts = append(parts, fmt.Sprintf("%s in %s", v, RunsWord(runs[v])))
		}
	}
	return strings.Join(parts, ", ")
}

// flaky tells whether a case of a combined file did not pass in some runs
// of its series but passed (or was only reported) in others.
func flaky(r harness.Result) bool {
	bad := badRuns(r)
	return bad > 0 && bad < len(r.RunVerdicts)
}

// badRuns counts the runs of its series a combined case did not pass in.
func badRuns(r harness.Result) int {
	n := 0
	for _, v := range r.RunVerdicts {
		if notPassed(v) {
			n++
		}
	}
	return n
}

// notPassed tells whether v fails its level: FAIL, NON-STRICT, ERROR.
func notPassed(v harness.Verdict) bool { return harness.Result{Verdict: v}.Failed() }

// NotPassed are the cases of a file combining a series that did not pass
// in some run, the flaky ones (that passed in others) first, each part in
// matrix order.
func NotPassed(f *harness.ResultsFile) []harness.Result {
	var cases []harness.Result
	for _, r := range f.Results {
		if badRuns(r) > 0 {
			cases = append(cases, r)
		}
	}
	slices.SortStableFunc(cases, func(a, b harness.Result) int { return boolRank(flaky(b)) - boolRank(flaky(a)) })
	return cases
}

// SeriesLine is the outcome of a series of runs in one line, from the
// file combining it: the verdict and exit code over every run, which runs
// failed, and which cases did not pass in which runs (the flaky ones
// first, at most max of them named).
func SeriesLine(f *harness.ResultsFile, max int) string {
	word, _ := headline(f.Summary)
	bad := failedRuns(f)
	s := fmt.Sprintf("over %d runs: %s (exit %d): ", len(f.Runs), word, f.ExitCode)
	if len(bad) == 0 {
		s += "no run failed"
	} else {
		s += fmt.Sprintf("%s of %d failed", RunsWord(bad), len(f.Runs))
	}
	cases := NotPassed(f)
	if len(cases) == 0 {
		return s + "; every case passed in every run"
	}
	s += fmt.Sprintf("; %d %s did not pass: ", len(cases), plural(len(cases), "case", "cases"))
	for i, r := range cases {
		if i == max {
			s += fmt.Sprintf("; and %d more (summary.md)", len(cases)-i)
			break
		}
		if i > 0 {
			s += "; "
		}
		s += r.Name + " " + RunVerdicts(r)
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// evidence is r's evidence as the run recorded it (from untrimmed traces),
// or as its traces show it for a file without it.
func evidence(r harness.Result) []string {
	if len(r.Evidence) > 0 {
		return r.Evidence
	}
	return harness.EvidenceOf(r).Lines()
}
