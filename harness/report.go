package harness

import (
	"slices"
	"sort"
	"time"

	"github.com/execconform/execconform/scenarios"
)

// Report is the outcome of a run.
type Report struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Results  []Result      `json:"results"`
}

// ResultsSchema names the layout of ResultsFile.
const ResultsSchema = "execconform/results/v1"

// ResultsFile is a run as results.json holds it.
type ResultsFile struct {
	Schema   string         `json:"schema"`
	Target   string         `json:"target"`
	Started  time.Time      `json:"started"`
	Duration time.Duration  `json:"duration_ns"`
	Summary  map[string]int `json:"summary"` // "LEVEL/VERDICT": cases
	Results  []Result       `json:"results"`
}

// NewResultsFile is rep, run against target, as a ResultsFile.
func NewResultsFile(target string, rep *Report) ResultsFile {
	sum := map[string]int{}
	for l, vs := range rep.Counts() {
		for v, n := range vs {
			sum[string(l)+"/"+string(v)] = n
		}
	}
	return ResultsFile{Schema: ResultsSchema, Target: target, Started: rep.Started, Duration: rep.Duration, Summary: sum, Results: rep.Results}
}

// Report is the file's results as a Report.
func (f ResultsFile) Report() *Report {
	return &Report{Started: f.Started, Duration: f.Duration, Results: f.Results}
}

// Counts tallies verdicts per level.
func (r *Report) Counts() map[scenarios.Level]map[Verdict]int {
	out := map[scenarios.Level]map[Verdict]int{}
	for _, res := range r.Results {
		if out[res.Level] == nil {
			out[res.Level] = map[Verdict]int{}
		}
		out[res.Level][res.Verdict]++
	}
	return out
}

// MustFailed reports whether any MUST case failed (or could not run).
func (r *Report) MustFailed() bool {
	return slices.ContainsFunc(r.Results, func(res Result) bool {
		return res.Level == scenarios.MUST && res.Failed()
	})
}

// Failed lists the failed results.
func (r *Report) Failed() []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Failed() {
			out = append(out, res)
		}
	}
	return out
}

// Percentile returns the p-th percentile (0-100) of ds (nearest rank); 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(p/100*float64(len(s))+0.5) - 1
	k = max(0, min(k, len(s)-1))
	return s[k]
}
