package harness

import (
	"time"

	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/scenarios"
)

// Verdict is the outcome of one case, in Autobahn's vocabulary.
type Verdict string

// The verdicts.
const (
	Pass      Verdict = "PASS"
	Fail      Verdict = "FAIL"       // a MUST case failed
	NonStrict Verdict = "NON-STRICT" // a SHOULD case failed
	Info      Verdict = "INFO"       // an INFO case: what happened is reported, nothing is judged
	Error     Verdict = "ERROR"      // the suite itself could not run the case
)

// Result is the outcome of one case with its evidence.
type Result struct {
	Name     string          `json:"name"`
	Scenario string          `json:"scenario"`
	Protocol string          `json:"protocol"`
	TTY      bool            `json:"tty"`
	Level    scenarios.Level `json:"level"`
	Verdict  Verdict         `json:"verdict"`
	// Failures lists every unmet expectation, in words, with its evidence.
	Failures []string `json:"failures,omitempty"`
	// Notes are observations that are not failures (INFO cases, timings).
	Notes []string `json:"notes,omitempty"`
	// TimeToReap is from the ending until the process table showed none
	// of the session's processes; -1 when some were still alive.
	TimeToReap time.Duration `json:"time_to_reap_ns"`
	Duration   time.Duration `json:"duration_ns"`
	// Live are the session's processes still alive after the grace period.
	Live []string `json:"live,omitempty"`
	// Client is what the client saw; Backend what the fake API server recorded.
	Client ClientView `json:"client"`
	// Legs is what passed each leg's Toxiproxy link.
	Legs    map[scenarios.Leg]LegStats `json:"legs,omitempty"`
	Backend *fakeapiserver.SessionInfo `json:"backend,omitempty"`
}

// ClientView is what the client emulator saw of a case.
type ClientView struct {
	Protocol    string `json:"protocol"`
	CloseCode   int    `json:"close_code"` // from the proxy; -1 if none
	CloseReason string `json:"close_reason,omitempty"`
	ExitCode    *int   `json:"exit_code,omitempty"`
	EndErr      string `json:"end_error,omitempty"`
}

// Failed reports whether the result counts as a failure of its level.
func (r Result) Failed() bool {
	return r.Verdict == Fail || r.Verdict == NonStrict || r.Verdict == Error
}
