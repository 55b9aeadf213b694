package harness

import (
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
)

// A Finding is one unmet expectation of a case, as data: the check that
// failed (a stable ID), the session, the message (as in Result.Failures)
// and the evidence the diagnosis reads (Patterns match findings, never the
// words of a message).
type Finding struct {
	Check string `json:"check"`
	// Session is the session's index (0: the first), -1 for the case as a
	// whole.
	Session int    `json:"session"`
	Message string `json:"message"`
	// HTTPStatus is the status of a refused upgrade (CheckUpgradeRefused).
	HTTPStatus int `json:"http_status,omitempty"`
	// Input is what the backend received from the proxy on the session
	// after the ending (for the checks where an exit went missing).
	Input *BackendInput `json:"input,omitempty"`
}

// The checks (Finding.Check).
const (
	CheckLive             = "live-processes"     // the session's processes outlived the grace period
	CheckProcessTable     = "process-table"      // the process table could not be read
	CheckWitness          = "witness"            // the second witness failed or disagreed
	CheckBackendOpen      = "backend-open"       // the proxy kept the backend connection open
	CheckBackendHeld      = "backend-held"       // the proxy held the backend past the release bound, the shell beyond its reach
	CheckBackendNoClose   = "backend-no-close"   // the backend got no close frame from the proxy
	CheckBackendCloseCode = "backend-close-code" // the proxy's close code to the backend
	CheckBackendReset     = "backend-reset"      // the proxy reset the backend connection after its close frame
	CheckFragmented       = "fragmented"         // a message to the backend in continuation frames
	CheckClientCloseCode  = "client-close-code"  // the close code the client got
	CheckClientNoClose    = "client-no-close"    // the client's connection ended without a close frame
	CheckClientOpen       = "client-open"        // the proxy did not close the client connection
	CheckStatus           = "status"             // the status on the error channel
	CheckUpgradeRefused   = "upgrade-refused"    // the proxy refused the client's upgrade (HTTPStatus)
	CheckWrongProtocol    = "wrong-protocol"     // the proxy answered another subprotocol than the API server picks
	CheckTarget           = "target"             // a check of the target's own (its open files)
	CheckRun              = "run"                // the case could not go on (a dial, the script, the watchdog)
	CheckSuite            = "suite"              // the suite's own machinery failed
	CheckFrontDoor        = "front-door"         // the proxy let through a request it must refuse (a knock)
)

// BackendInput is what the backend received from the proxy on one session
// after the ending, decoded.
type BackendInput struct {
	// Stdin is everything on stdin (channel 0), concatenated; its last
	// maxInputStdin bytes.
	Stdin string `json:"stdin,omitempty"`
	// Other are the other data frames: another channel, or a text frame
	// on a binary subprotocol (its first byte read as the channel, '0' is
	// 48); the last maxEvidenceFrames.
	Other []InputFrame `json:"other,omitempty"`
	// CloseCode is the code of the close frame the proxy sent after the
	// ending; 0: none.
	CloseCode int `json:"close_code,omitempty"`
	// GoAway: over SPDY, the proxy sent GOAWAY after the ending.
	GoAway bool `json:"goaway,omitempty"`
	// StdinClosed: the proxy half-closed stdin after the ending (a FIN on
	// the SPDY stdin stream, the v5 CLOSE signal of stdin).
	StdinClosed bool `json:"stdin_closed,omitempty"`
	// TCP is how the connection ended, as the API server saw it
	// (fakeapiserver.TCP*).
	TCP string `json:"tcp"`
}

// InputFrame is one data frame of BackendInput.Other.
type InputFrame struct {
	Opcode  string `json:"opcode"`
	Channel int    `json:"channel"`
	Payload string `json:"payload"`
}

// maxInputStdin bounds BackendInput.Stdin.
const maxInputStdin = 256

// inputAfter is what the backend of s received from the proxy after the
// ending.
func (r *caseRun) inputAfter(s *sessionRun, endedAt time.Time) *BackendInput {
	rec := s.sess.Recorder().Snapshot()
	since := endedAt.Sub(s.sess.StartedAt())
	in := &BackendInput{TCP: rec.Close.TCP}
	for _, f := range rec.Frames {
		if f.Dir != fakeapiserver.FromClient || f.At < since {
			continue
		}
		switch {
		case f.Opcode == "close":
			if in.CloseCode == 0 {
				in.CloseCode = f.CloseCode
			}
		case f.Opcode == "goaway":
			in.GoAway = true
		case rec.Transport != "" && f.Opcode != "data":
			// SPDY's other frames (SYN_STREAM, RST_STREAM, PING...) carry
			// no input.
		case rec.Transport != "" && f.Channel == int(execproto.StreamStdin):
			in.Stdin = tail(in.Stdin+f.Payload, maxInputStdin)
			in.StdinClosed = in.StdinClosed || f.Fin
		case rec.Transport != "" && f.Payload == "":
			// A stream's bare FIN.
		case f.Channel == int(execproto.StreamStdin):
			in.Stdin = tail(in.Stdin+f.Payload, maxInputStdin)
		case f.Channel == int(execproto.StreamClose) && f.Payload == "\x00" && rec.Protocol == string(execproto.ProtocolV5):
			// v5's CLOSE signal of stdin: the half-close.
			in.StdinClosed = true
		case f.Channel >= 0:
			in.Other = append(in.Other, InputFrame{Opcode: f.Opcode, Channel: f.Channel, Payload: f.Payload})
			if n := len(in.Other) - maxEvidenceFrames; n > 0 {
				in.Other = in.Other[n:]
			}
		}
	}
	return in
}

// Nothing tells whether the backend received no input and no close frame
// (nor GOAWAY).
func (in *BackendInput) Nothing() bool {
	return in.Stdin == "" && len(in.Other) == 0 && !in.Closed() && !in.StdinClosed
}

// Closed tells whether the proxy said goodbye: a close frame, or GOAWAY.
func (in *BackendInput) Closed() bool { return in.CloseCode != 0 || in.GoAway }

var (
	// exitLine: an exit with a line ending, as a shell runs it.
	exitLine = regexp.MustCompile(`(^|[\r\n\x03\x15])exit[\r\n]`)
	// exitUnended: an exit that nothing ends.
	exitUnended = regexp.MustCompile(`exit$`)
)

// AnyExit tells whether anything the backend received carries an exit, in
// any framing, on any channel, with or without a line ending.
func (in *BackendInput) AnyExit() bool {
	if strings.Contains(in.Stdin, "exit") {
		return true
	}
	for _, f := range in.Other {
		if strings.Contains(f.Payload, "exit") || base64Exit(f) {
			return true
		}
	}
	return false
}

// SentExit tells whether stdin carried an exit with a line ending.
func (in *BackendInput) SentExit() bool { return exitLine.MatchString(in.Stdin) }

// Interrupted tells whether stdin carried a Ctrl-C or Ctrl-U (which clear
// a half-typed line; Ctrl-C also interrupts a foreground program).
func (in *BackendInput) Interrupted() bool { return strings.ContainsAny(in.Stdin, "\x03\x15") }

// A checkError is an error that ends a case, with the check it fails.
type checkError struct {
	check  string
	status int // an HTTP status, for CheckUpgradeRefused
	err    error
}

func (e *checkError) Error() string { return e.err.Error() }
func (e *checkError) Unwrap() error { return e.err }

// checkOf is the check an error that ended a case fails.
func checkOf(err error) (string, int) {
	var ce *checkError
	var se *suiteError
	switch {
	case errors.As(err, &ce):
		return ce.check, ce.status
	case errors.As(err, &se):
		return CheckSuite, 0
	}
	return CheckRun, 0
}

// panicLine finds a panic in a target's output: Go's own ("panic: ..."),
// net/http's recovered one ("http: panic serving ADDR: ..."), or a logged
// one ("panic: ..." in a log field).
var panicLine = regexp.MustCompile(`panic(?: serving [^:\s]+(?::\d+)?)?: ([^"\n]+)`)

// targetPanic is the first panic in out, in words; "" if none.
func targetPanic(out string) string {
	m := panicLine.FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(m[1])
}
