package harness

import (
	"fmt"
	"slices"
	"time"

	"github.com/execconform/execconform/scenarios"
)

// NoKeepaliveNote is the note of a case that only a keepalive can end,
// run against a target that declares no keepalive bound (OnlyReported).
const NoKeepaliveNote = "the target declares no keepalive bound, so this case is reported as INFO (set it: --keepalive)"

// OnlyReported tells whether c is reported as INFO instead of judged
// against a target whose keepalive bound is bound: c needs the bound
// (the half-open cases: only the proxy's keepalive can end them) and
// the target declares none.
func OnlyReported(c scenarios.Case, bound time.Duration) bool {
	return c.Want.KeepaliveBound && bound <= 0
}

// A Notice is what a reader must know about a run as a whole: the
// reports show it above everything else.
type Notice struct {
	// Kind is a stable name (NoticeNoKeepalive).
	Kind string `json:"kind"`
	// Message says it in words.
	Message string `json:"message"`
	// Cases are the cases it concerns, in matrix order.
	Cases []string `json:"cases,omitempty"`
}

// NoticeNoKeepalive: the target declared no keepalive bound, so the
// half-open cases were only reported (INFO), not judged.
const NoticeNoKeepalive = "no-keepalive-bound"

// NoticeInterrupted: the run was stopped (Ctrl-C, SIGTERM) before every
// case finished; the cases not run or cut short are ERROR.
const NoticeInterrupted = "interrupted"

// NoticeNotFound: the proxy answered every case's upgrade with HTTP 404,
// so the suite could not run the target at all (every case is ERROR).
const NoticeNotFound = "not-found-everywhere"

// Notices are the notices that results call for.
func Notices(results []Result) []Notice {
	var out []Notice
	var cut, notRun []string
	for _, r := range results {
		switch {
		case r.NotRun:
			notRun = append(notRun, r.Name)
		case r.Interrupted:
			cut = append(cut, r.Name)
		}
	}
	if len(cut)+len(notRun) > 0 {
		out = append(out, Notice{Kind: NoticeInterrupted, Cases: append(cut, notRun...), Message: fmt.Sprintf(
			"the run was interrupted: %d cases were not run and %d were cut short (ERROR: no verdict on the target); the exit code is the suite's (2), not a failing proxy's",
			len(notRun), len(cut))})
	}
	if f, ok := notFoundEverywhere(results); ok {
		out = append(out, Notice{Kind: NoticeNotFound, Message: NotFoundMessage(len(results), f)})
	}
	var cases []string
	for _, r := range results {
		if slices.Contains(r.Notes, NoKeepaliveNote) {
			cases = append(cases, r.Name)
		}
	}
	if len(cases) > 0 {
		out = append(out, Notice{Kind: NoticeNoKeepalive, Message: NoKeepaliveMessage(len(cases)), Cases: cases})
	}
	return out
}

// notFoundEverywhere tells whether every one of results ended on an
// upgrade refused with HTTP 404, and gives the first such finding.
func notFoundEverywhere(results []Result) (Finding, bool) {
	var first Finding
	for i, r := range results {
		j := slices.IndexFunc(r.Findings, func(f Finding) bool { return f.Check == CheckUpgradeRefused && f.HTTPStatus == 404 })
		if j < 0 {
			return Finding{}, false
		}
		if i == 0 {
			first = r.Findings[j]
		}
	}
	return first, len(results) > 0
}

// NotFoundMessage says that the proxy answered all n cases' upgrades with
// 404, with the first refusal (which carries the path the suite asked for).
func NotFoundMessage(n int, first Finding) string {
	return fmt.Sprintf("the suite could not run the target: the proxy answered the upgrade of all %d cases with HTTP 404, so every case is ERROR, "+
		"not a failure of the proxy; the exec path is not where the suite asks for it (--path-prefix). The first: %s", n, first.Message)
}

// markNotFound makes every result ERROR when the proxy answered every
// upgrade with 404: a wrong path prefix is the suite unable to run the
// target, not hundreds of failures of it.
func markNotFound(results []Result) {
	if _, ok := notFoundEverywhere(results); !ok {
		return
	}
	for i := range results {
		results[i].Verdict = Error
	}
}

// NoKeepaliveMessage says that n half-open cases were only reported.
func NoKeepaliveMessage(n int) string {
	are := "cases are"
	if n == 1 {
		are = "case is"
	}
	return fmt.Sprintf("%d half-open %s only reported (INFO), not judged: the target declares no keepalive bound; "+
		"pass --keepalive D (exectest.Keepalive(d)), the longest your proxy takes to notice a silent client", n, are)
}

// RunSummary is one run of a series, in brief, in the file combining it.
type RunSummary struct {
	Run      int                                 `json:"run"`
	Started  time.Time                           `json:"started"`
	Duration time.Duration                       `json:"duration_ns"`
	ExitCode int                                 `json:"exit_code"`
	Summary  map[scenarios.Level]map[Verdict]int `json:"summary"`
	// Failed are the run's cases that did not pass (FAIL, NON-STRICT,
	// ERROR), in matrix order.
	Failed []CaseVerdict `json:"failed,omitempty"`
}

// CaseVerdict is a case's name and verdict.
type CaseVerdict struct {
	Name    string  `json:"name"`
	Verdict Verdict `json:"verdict"`
}

// Series combines the runs of a series (execconform run --count N) into
// one file that tells the truth about all of them: per case the worst
// verdict over the runs, with the details of the first run that had it
// and the verdict of every run; per run a RunSummary; the exit code and
// the counts over the whole series. Its zero value is not usable: see
// NewSeries.
type Series struct {
	count int
	file  ResultsFile
	index map[string]int
	end   time.Time
}

// NewSeries starts a series of count runs.
func NewSeries(count int) *Series { return &Series{count: count, index: map[string]int{}} }

// Add adds the next run and returns it as a file of the series (Run and
// Count set). Every run of a series must have the same cases.
func (s *Series) Add(run ResultsFile) (ResultsFile, error) {
	k := len(s.file.Runs) + 1
	run.Run, run.Count = k, s.count
	if k > 1 && len(run.Results) != len(s.index) {
		return run, fmt.Errorf("harness: run %d of the series has %d cases, run 1 had %d", k, len(run.Results), len(s.index))
	}
	sum := RunSummary{Run: k, Started: run.Started, Duration: run.Duration, ExitCode: run.ExitCode, Summary: run.Summary}
	for _, r := range run.Results {
		if r.Failed() {
			sum.Failed = append(sum.Failed, CaseVerdict{r.Name, r.Verdict})
		}
	}
	if k == 1 {
		s.file = run
		s.file.Results = make([]Result, len(run.Results))
		for i, r := range run.Results {
			r.Run, r.RunVerdicts = 1, []Verdict{r.Verdict}
			s.file.Results[i] = r
			s.index[r.Name] = i
		}
	} else {
		for _, r := range run.Results {
			i, ok := s.index[r.Name]
			if !ok {
				return run, fmt.Errorf("harness: run %d of the series has a case run 1 did not: %s", k, r.Name)
			}
			cur := &s.file.Results[i]
			verdicts := append(cur.RunVerdicts, r.Verdict)
			if Worse(r.Verdict, cur.Verdict) {
				*cur = r
				cur.Run = k
			}
			cur.RunVerdicts = verdicts
		}
	}
	s.file.Runs = append(s.file.Runs, sum)
	s.end = run.Started.Add(run.Duration)
	return run, nil
}

// File is the series so far as one file.
func (s *Series) File() ResultsFile {
	f := s.file
	f.Run, f.Count = 0, s.count
	f.Results = slices.Clone(f.Results)
	f.Runs = slices.Clone(f.Runs)
	f.Duration = s.end.Sub(f.Started)
	rep := &Report{Results: f.Results}
	f.ExitCode, f.Summary, f.Notices, f.Interrupted = rep.ExitCode(), rep.Counts(), Notices(f.Results), rep.Interrupted()
	return f
}

// Worse tells whether verdict a is worse than b: FAIL, then ERROR, then
// NON-STRICT, then INFO, then PASS.
func Worse(a, b Verdict) bool { return severity(a) > severity(b) }

func severity(v Verdict) int {
	switch v {
	case Fail:
		return 4
	case Error:
		return 3
	case NonStrict:
		return 2
	case Info:
		return 1
	}
	return 0
}
