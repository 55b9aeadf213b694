package harness

import (
	"strings"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/proctable"
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
	Name     string `json:"name"`
	Scenario string `json:"scenario"`
	Protocol string `json:"protocol"`
	// Transport is "spdy" for a case whose client speaks SPDY/3.1 (absent:
	// WebSocket).
	Transport string `json:"transport,omitempty"`
	// Dialect is the front dialect the client spoke (package dialect),
	// absent for the exec subprotocols; Protocol then holds its name.
	Dialect string `json:"dialect,omitempty"`
	// RealClient is the real client that drove the case
	// (scenarios.Client: client-go, kubectl, chromium); absent: the
	// suite's emulator.
	RealClient string          `json:"real_client,omitempty"`
	TTY        bool            `json:"tty"`
	Level      scenarios.Level `json:"level"`
	Verdict    Verdict         `json:"verdict"`
	// Run and RunVerdicts, in a file combining a series of runs (Series):
	// the run these details come from (the first with the case's worst
	// verdict) and the case's verdict in each run, in run order.
	Run         int       `json:"run,omitempty"`
	RunVerdicts []Verdict `json:"run_verdicts,omitempty"`
	// Interrupted is set when the run was interrupted before the case
	// finished (its verdict is then ERROR: no verdict on the target);
	// NotRun when it did not even start.
	Interrupted bool `json:"interrupted,omitempty"`
	NotRun      bool `json:"not_run,omitempty"`
	// Started is when the case started; Duration how long it took.
	Started time.Time `json:"started"`
	// Failures lists every unmet expectation, in words, with its evidence.
	Failures []string `json:"failures,omitempty"`
	// Findings are the same unmet expectations as data: the check, the
	// session, the evidence (what the diagnosis reads).
	Findings []Finding `json:"findings,omitempty"`
	// Evidence is what the traces and the process table show, in words
	// (EvidenceOf): the exit, the close handshake on each leg, the
	// processes left.
	Evidence []string `json:"evidence,omitempty"`
	// LooksLike names the known bugs the findings show (Patterns), in
	// words; LooksLikeIDs are the same bugs by Pattern.ID.
	LooksLike    []string `json:"looks_like,omitempty"`
	LooksLikeIDs []string `json:"looks_like_ids,omitempty"`
	// NeedsKeepalive is set for a case that only the target's keepalive
	// can end (a half-open client).
	NeedsKeepalive bool `json:"needs_keepalive,omitempty"`
	// Notes are observations that are not failures (INFO cases, timings).
	Notes []string `json:"notes,omitempty"`
	// TimeToReap is from the ending until the process table showed none
	// of the session's processes; -1 when some were still alive.
	TimeToReap time.Duration `json:"time_to_reap_ns"`
	Duration   time.Duration `json:"duration_ns"`
	// EndedAt is when the ending (the client's disconnect, the fault)
	// happened, since Started; 0 if the case never got there.
	EndedAt time.Duration `json:"ended_at_ns,omitempty"`
	// Live are the sessions' processes still alive after the grace period,
	// as the process table showed them.
	Live []proctable.Proc `json:"live,omitempty"`
	// TargetOutput is the end of what an external proxy printed during the
	// case (CommandTarget), kept when the case did not pass.
	TargetOutput string `json:"target_output,omitempty"`
	// TargetPanic is the first panic the target printed during the case
	// (Go's, net/http's recovered one, or a logged one), in words.
	TargetPanic string `json:"target_panic,omitempty"`
	// Client is what the client saw; Backend what the fake API server recorded.
	Client ClientView `json:"client"`
	// Legs is what crossed each leg: client (client emulator - proxy) and
	// backend (proxy - API server).
	Legs map[scenarios.Leg]*LegView `json:"legs,omitempty"`
	// Observed is what happened, in the terms the fake API server and a
	// real cluster are compared in (see Observed).
	Observed Observed                   `json:"observed"`
	Backend  *fakeapiserver.SessionInfo `json:"backend,omitempty"`
}

// LegView is what crossed one leg of a case's first session: the bytes
// through the leg's Toxiproxy link, and the frames and close handshake as
// the leg's end on the suite's side recorded them (the client emulator on
// the client leg, the API server on the backend leg). The frames of a
// passing case are trimmed to its first and last TrimPassing.
type LegView struct {
	Link *LegStats `json:"link,omitempty"`
	*fakeapiserver.Record
}

// TrimPassing is how many frames a passing case's traces keep per leg.
const TrimPassing = 120

// Group is the first part of a scenario's name ("disconnect" for
// "disconnect/client-close/1000").
func Group(scenario string) string {
	g, _, _ := strings.Cut(scenario, "/")
	return g
}

// ClientView is what the client emulator saw of a case.
type ClientView struct {
	// Offered is the client's offer, in order (a bearer token redacted);
	// empty when it offered nothing.
	Offered []string `json:"offered,omitempty"`
	// Protocol is the subprotocol the proxy answered.
	Protocol    string `json:"protocol"`
	CloseCode   int    `json:"close_code"` // from the proxy; -1 if none
	CloseReason string `json:"close_reason,omitempty"`
	ExitCode    *int   `json:"exit_code,omitempty"`
	EndErr      string `json:"end_error,omitempty"`
	// EndAt is when the client's connection ended (the close frame from
	// the proxy, or the error), since the case started.
	EndAt time.Duration `json:"end_at_ns,omitempty"`
}

// SPDY reports whether the case's client spoke SPDY.
func (r Result) SPDY() bool { return r.Transport == string(execproto.TransportSPDY) }

// Failed reports whether the result counts as a failure of its level.
func (r Result) Failed() bool {
	return r.Verdict == Fail || r.Verdict == NonStrict || r.Verdict == Error
}

// Observed is what a case's first session did, whatever was expected: the
// facts in which a run against the fake API server and one against a real
// cluster can be compared.
type Observed struct {
	// LiveProcesses counts the processes of every session still alive
	// after the grace window.
	LiveProcesses int `json:"live_processes"`
	// WitnessLive counts the live shells a second witness saw (ps aux in
	// a real pod; 0 for the fake server).
	WitnessLive int `json:"witness_live,omitempty"`
	// CloseFirstBy tells who sent the first close frame on the backend
	// connection: "client" (the target), "server" (the API server) or "".
	CloseFirstBy string `json:"close_first_by"`
	// TargetCloseCode and ServerCloseCode are the close codes each side
	// sent on the backend connection (0: none).
	TargetCloseCode int `json:"target_close_code"`
	ServerCloseCode int `json:"server_close_code"`
	// BackendTCP is how the backend connection's TCP ended, as the API
	// server's side saw it (fakeapiserver.TCP*).
	BackendTCP string `json:"backend_tcp"`
	// ClientCloseCode is the close code the client got (-1: none).
	ClientCloseCode int `json:"client_close_code"`
	// Status is the status the client got on the error channel: "none",
	// "success", "exit N", or the failure's message.
	Status string `json:"status"`
	// Protocol is the subprotocol the API server negotiated for what the
	// target offered it (as in Result.Protocol; "" when no backend session
	// was found).
	Protocol string `json:"protocol,omitempty"`
}
