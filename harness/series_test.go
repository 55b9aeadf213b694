package harness_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/scenarios"
)

// runOf is a results file of one run whose cases ended in verdicts (by name).
func runOf(start time.Time, verdicts ...[2]string) harness.ResultsFile {
	rep := &harness.Report{Started: start, Duration: time.Second}
	for _, v := range verdicts {
		level := scenarios.MUST
		if harness.Verdict(v[1]) == harness.NonStrict {
			level = scenarios.SHOULD
		}
		r := harness.Result{Name: v[0], Scenario: v[0], Level: level, Verdict: harness.Verdict(v[1]), TimeToReap: -1}
		if r.Failed() {
			r.Failures = []string{v[0] + " failed"}
		}
		rep.Results = append(rep.Results, r)
	}
	return harness.NewResultsFile("test", rep)
}

// TestSeriesTellsEveryRun: a failure in any run of a series decides the
// combined file's exit code and counts, whichever run it was in; each
// case keeps its worst run's details and its verdict in every run.
func TestSeriesTellsEveryRun(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	runs := []harness.ResultsFile{
		runOf(t0, [2]string{"a", "FAIL"}, [2]string{"b", "PASS"}, [2]string{"c", "PASS"}),
		runOf(t0.Add(2*time.Second), [2]string{"a", "PASS"}, [2]string{"b", "ERROR"}, [2]string{"c", "PASS"}),
		runOf(t0.Add(4*time.Second), [2]string{"a", "FAIL"}, [2]string{"b", "PASS"}, [2]string{"c", "NON-STRICT"}),
	}
	s := harness.NewSeries(3)
	for i, r := range runs {
		got, err := s.Add(r)
		require.NoError(t, err)
		assert.Equal(t, i+1, got.Run)
		assert.Equal(t, 3, got.Count)
		assert.Equal(t, r.ExitCode, got.ExitCode, "a run's own file keeps its own outcome")
	}
	f := s.File()
	assert.Equal(t, harness.ExitMustFailed, f.ExitCode)
	assert.Equal(t, 0, f.Run)
	assert.Equal(t, 3, f.Count)
	assert.Equal(t, t0, f.Started)
	assert.Equal(t, 5*time.Second, f.Duration, "from the first run's start to the last one's end")
	require.Len(t, f.Runs, 3)
	assert.Equal(t, []int{1, 2, 1}, []int{f.Runs[0].ExitCode, f.Runs[1].ExitCode, f.Runs[2].ExitCode})
	assert.Equal(t, []harness.CaseVerdict{{Name: "b", Verdict: harness.Error}}, f.Runs[1].Failed)

	byName := map[string]harness.Result{}
	for _, r := range f.Results {
		byName[r.Name] = r
	}
	a, b, c := byName["a"], byName["b"], byName["c"]
	assert.Equal(t, harness.Fail, a.Verdict)
	assert.Equal(t, 1, a.Run, "the first run with the worst verdict")
	assert.Equal(t, []harness.Verdict{harness.Fail, harness.Pass, harness.Fail}, a.RunVerdicts)
	assert.Equal(t, harness.Error, b.Verdict)
	assert.Equal(t, 2, b.Run)
	assert.Equal(t, []string{"b failed"}, b.Failures)
	assert.Equal(t, harness.NonStrict, c.Verdict)
	assert.Equal(t, 3, c.Run)
	assert.Equal(t, map[scenarios.Level]map[harness.Verdict]int{
		scenarios.MUST: {harness.Fail: 1, harness.Error: 1}, scenarios.SHOULD: {harness.NonStrict: 1},
	}, f.Summary)

	// Only the first run failed: the series still fails, as the last run
	// alone would not.
	s = harness.NewSeries(2)
	for _, r := range []harness.ResultsFile{runOf(t0, [2]string{"a", "FAIL"}), runOf(t0, [2]string{"a", "PASS"})} {
		_, err := s.Add(r)
		require.NoError(t, err)
	}
	f = s.File()
	assert.Equal(t, harness.ExitMustFailed, f.ExitCode)
	assert.Equal(t, []harness.Verdict{harness.Fail, harness.Pass}, f.Results[0].RunVerdicts)

	// Runs of a series have the same cases.
	s = harness.NewSeries(2)
	_, err := s.Add(runOf(t0, [2]string{"a", "PASS"}))
	require.NoError(t, err)
	_, err = s.Add(runOf(t0, [2]string{"z", "PASS"}))
	assert.ErrorContains(t, err, "a case run 1 did not: z")
}

// TestNoticesOfUnboundedCases: the cases that only a keepalive can end,
// run without a keepalive bound, are only reported, and the results file
// says so on top.
func TestNoticesOfUnboundedCases(t *testing.T) {
	var halfOpen scenarios.Case
	for _, c := range scenarios.Cases(scenarios.All()) {
		if c.Want.KeepaliveBound {
			halfOpen = c
			break
		}
	}
	require.NotNil(t, halfOpen.Scenario)
	assert.True(t, harness.OnlyReported(halfOpen, 0))
	assert.False(t, harness.OnlyReported(halfOpen, 3*time.Second))
	rep := &harness.Report{Results: []harness.Result{
		{Name: "x/half-open", Verdict: harness.Info, Notes: []string{harness.NoKeepaliveNote}},
		{Name: "y/other", Verdict: harness.Pass},
	}}
	f := harness.NewResultsFile("test", rep)
	require.Len(t, f.Notices, 1)
	assert.Equal(t, harness.NoticeNoKeepalive, f.Notices[0].Kind)
	assert.Equal(t, []string{"x/half-open"}, f.Notices[0].Cases)
	assert.Contains(t, f.Notices[0].Message, "1 half-open case is only reported")
	assert.Empty(t, harness.NewResultsFile("test", &harness.Report{Results: rep.Results[1:]}).Notices)
}
