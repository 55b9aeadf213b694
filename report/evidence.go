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

// Headline is the run's outcome in a few words.
func Headline(f *harness.ResultsFile) string {
	mustFail := f.Summary[scenarios.MUST][harness.Fail]
	errs := 0
	for _, vs := range f.Summary {
		errs += vs[harness.Error]
	}
	switch {
	case mustFail > 0:
		return fmt.Sprintf("FAIL: %d MUST %s failed", mustFail, plural(mustFail, "case", "cases"))
	case errs > 0:
		return fmt.Sprintf("ERROR: %d %s could not run", errs, plural(errs, "case", "cases"))
	}
	ns := f.Summary[scenarios.SHOULD][harness.NonStrict]
	if ns > 0 {
		return fmt.Sprintf("PASS: every MUST case passed (%d SHOULD %s not met)", ns, plural(ns, "case", "cases"))
	}
	return "PASS: every MUST and SHOULD case passed"
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
