package harness

import (
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/execconform/execconform/scenarios"
)

// Report is the outcome of a run.
type Report struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Options  RunOptions    `json:"options"`
	Results  []Result      `json:"results"`
	// Dialect is the front dialect of the run (Options.Dialect), and
	// NotApplicable the cells its dialect cannot run, with why.
	Dialect       string                    `json:"dialect,omitempty"`
	NotApplicable []scenarios.NotApplicable `json:"not_applicable,omitempty"`
	// RealClient is the real client that drove the run (Options.RealClient):
	// NotApplicable are then the cells it cannot express.
	RealClient string `json:"real_client,omitempty"`
}

// RunOptions are the settings of a run that shape its results.
type RunOptions struct {
	Parallel int `json:"parallel"`
	// MaxSessions bounded the sessions in flight (0: no bound).
	MaxSessions    int           `json:"max_sessions,omitempty"`
	Grace          time.Duration `json:"grace_ns"`
	KeepaliveBound time.Duration `json:"keepalive_bound_ns"`
	// Seed shuffled the order the cases started in (0: the listed order);
	// in a results file, it is the top-level "seed".
	Seed int64 `json:"-"`
}

// Version is the suite's version, in results files and reports.
const Version = "0.8.0"

// ResultsSchema names the layout of ResultsFile (docs/reports.md).
const ResultsSchema = "execconform/results/v3"

// ResultsFile is a run as results.json holds it; docs/reports.md documents
// it and docs/results.schema.json is its JSON Schema.
type ResultsFile struct {
	Schema       string        `json:"schema"`
	Suite        Suite         `json:"suite"`
	Target       string        `json:"target"`
	Subprotocols []string      `json:"subprotocols"`
	Seed         int64         `json:"seed"`
	Options      RunOptions    `json:"options"`
	Environment  Environment   `json:"environment"`
	Started      time.Time     `json:"started"`
	Duration     time.Duration `json:"duration_ns"`
	// ExitCode is the exit code of the run (see ExitCode); in a file
	// combining a series (Runs), over every run of it.
	ExitCode int `json:"exit_code"`
	// Run and Count place a file in a series of runs (execconform run
	// --count N): Run is this run's number, from 1 (0 in the file that
	// combines the series), Count the number of runs (0: a single run).
	Run   int `json:"run,omitempty"`
	Count int `json:"count,omitempty"`
	// Runs, in the file that combines a series (Series), is each run in
	// brief; Results then holds each case's worst run.
	Runs []RunSummary `json:"runs,omitempty"`
	// Notices are what a reader must know about the run as a whole (see
	// Notices), such as cases that were only reported.
	Notices []Notice `json:"notices,omitempty"`
	// Interrupted is set when the run was stopped before every case
	// finished (notice "interrupted"; exit code 2).
	Interrupted bool `json:"interrupted,omitempty"`
	// Dialect is the front dialect the client spoke (absent: the exec
	// subprotocols), and NotApplicable the cells it cannot run, with why.
	Dialect       string                    `json:"dialect,omitempty"`
	NotApplicable []scenarios.NotApplicable `json:"not_applicable,omitempty"`
	// RealClient is the real client that drove the run (absent: the
	// suite's emulator).
	RealClient string `json:"real_client,omitempty"`
	// Summary counts cases per level and verdict.
	Summary map[scenarios.Level]map[Verdict]int `json:"summary"`
	Results []Result                            `json:"results"`
}

// Suite names the suite that wrote a results file.
type Suite struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Environment is the machine a run ran on.
type Environment struct {
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Kernel     string `json:"kernel,omitempty"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CI         bool   `json:"ci"`
}

// CurrentEnvironment describes this machine.
func CurrentEnvironment() Environment {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return Environment{
		GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		Kernel: strings.TrimSpace(string(kernel)), CPUs: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), CI: os.Getenv("CI") != "",
	}
}

// NewResultsFile is rep, run against target, as a ResultsFile.
func NewResultsFile(target string, rep *Report) ResultsFile {
	var protocols []string
	for _, c := range NewMatrix(rep).Cols {
		if !slices.Contains(protocols, c.Protocol) {
			protocols = append(protocols, c.Protocol)
		}
	}
	return ResultsFile{
		Schema: ResultsSchema, Suite: Suite{Name: "execconform", Version: Version},
		Target: target, Subprotocols: protocols, Seed: rep.Options.Seed, Options: rep.Options,
		Environment: CurrentEnvironment(), Started: rep.Started, Duration: rep.Duration,
		ExitCode: rep.ExitCode(), Summary: rep.Counts(), Notices: Notices(rep.Results), Interrupted: rep.Interrupted(), Results: rep.Results,
		Dialect: rep.Dialect, NotApplicable: rep.NotApplicable, RealClient: rep.RealClient,
	}
}

// Report is the file's results as a Report.
func (f ResultsFile) Report() *Report {
	opts := f.Options
	opts.Seed = f.Seed
	return &Report{Started: f.Started, Duration: f.Duration, Options: opts, Results: f.Results, Dialect: f.Dialect, NotApplicable: f.NotApplicable, RealClient: f.RealClient}
}

// The exit codes of a run (ExitCode).
const (
	ExitPass       = 0 // every MUST case passed (SHOULD misses and INFO do not count)
	ExitMustFailed = 1 // a MUST case failed
	ExitSuiteError = 2 // the suite could not run (a case ended in ERROR, bad flags)
)

// ExitCode is the run's exit code: ExitMustFailed if a MUST case failed,
// else ExitSuiteError if a case could not run, else ExitPass.
func (r *Report) ExitCode() int {
	code := ExitPass
	if r.Interrupted() {
		return ExitSuiteError // a run cut short says nothing of the target
	}
	for _, res := range r.Results {
		switch {
		case res.Verdict == Fail:
			return ExitMustFailed
		case res.Verdict == Error:
			code = ExitSuiteError
		}
	}
	return code
}

// Interrupted tells whether the run was interrupted before every case
// finished.
func (r *Report) Interrupted() bool {
	return slices.ContainsFunc(r.Results, func(res Result) bool { return res.Interrupted })
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
