package harness

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/scenarios"
)

// Evidence is what a case's traces and the process table show, in words.
type Evidence struct {
	// Exit tells whether an exit on stdin reached the API server after the
	// ending; ExitMissing marks the lack of one.
	Exit        string
	ExitMissing bool
	// BackendClose is the close handshake on the backend leg (proxy - API
	// server); BackendCloseMissing marks no close frame from the proxy.
	BackendClose        string
	BackendCloseMissing bool
	// ClientClose is the close handshake on the client leg.
	ClientClose string
	// Live are the processes alive after the grace period ("pid=... cmd").
	Live []string
	// Reap is when the session's processes were gone, or that they were not.
	Reap string
}

// Lines lists the evidence, most telling first.
func (e Evidence) Lines() []string {
	var out []string
	if len(e.Live) > 0 {
		out = append(out, fmt.Sprintf("alive after the grace period: %s", strings.Join(e.Live, "; ")))
	} else if e.Reap != "" {
		out = append(out, e.Reap)
	}
	for _, s := range []string{e.Exit, e.BackendClose, e.ClientClose} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Text is Lines on one line.
func (e Evidence) Text() string { return strings.Join(e.Lines(), "; ") }

// exitInput matches an exit command in stdin input (after ^C or a line end).
var exitInput = regexp.MustCompile(`(^|[\r\n\x03])exit([\r\n]|$)`)

// IsExitInput reports whether stdin input holds an exit command that a
// shell runs (a line "exit", maybe after ^C).
func IsExitInput(payload string) bool { return exitInput.MatchString(payload) }

// FrameAt is when frame f of rec happened, since the case started.
func (r Result) FrameAt(rec *fakeapiserver.Record, f fakeapiserver.FrameRecord) time.Duration {
	return rec.Started.Sub(r.Started) + f.At
}

// EvidenceOf reads r's traces and process table.
func EvidenceOf(r Result) Evidence {
	var e Evidence
	for _, p := range r.Live {
		e.Live = append(e.Live, p.String())
	}
	switch {
	case r.TimeToReap >= 0 && r.EndedAt > 0:
		e.Reap = fmt.Sprintf("every process of the session gone %s after the ending", Millis(r.TimeToReap))
	case r.TimeToReap >= 0:
		e.Reap = "every process of the session gone"
	}
	if bl := r.Trace(scenarios.BackendLeg); bl != nil {
		e.Exit, e.ExitMissing = exitEvidence(r, bl)
		e.BackendClose, e.BackendCloseMissing = closeEvidence(r, bl, "backend leg", "the proxy", "the API server")
	}
	if cl := r.Trace(scenarios.ClientLeg); cl != nil {
		e.ClientClose, _ = closeEvidence(r, cl, "client leg", "the client", "the proxy")
	}
	return e
}

// Trace is r's frame trace of leg l, nil if none was recorded.
func (r Result) Trace(l scenarios.Leg) *fakeapiserver.Record {
	if v := r.Legs[l]; v != nil && v.Record != nil {
		return v.Record
	}
	return nil
}

// exitEvidence finds an exit on stdin from the proxy to the API server
// after the ending (or, without an ending, at all).
func exitEvidence(r Result, rec *fakeapiserver.Record) (string, bool) {
	var before *fakeapiserver.FrameRecord
	for i, f := range rec.Frames {
		if f.Dir != fakeapiserver.FromClient || f.Channel != 0 || !IsExitInput(f.Payload) {
			continue
		}
		t := r.FrameAt(rec, f)
		if r.EndedAt > 0 && t < r.EndedAt {
			before = &rec.Frames[i]
			continue
		}
		return fmt.Sprintf("exit on stdin reached the API server at %s (%s after the ending): %q", Millis(t), Millis(t-r.EndedAt), f.Payload), false
	}
	if before != nil {
		return fmt.Sprintf("exit on stdin reached the API server before the ending (at %s), none after it", Millis(r.FrameAt(rec, *before))), false
	}
	what := "no exit on stdin reached the API server after the ending"
	if rec.FramesDropped > 0 {
		what += fmt.Sprintf(" (in the %d frames kept of %d)", len(rec.Frames), int64(len(rec.Frames))+rec.FramesDropped)
	}
	if n := textStdin(rec); n != "" {
		what += "; " + n
	}
	return what, true
}

// textStdin notes stdin sent as text frames on a binary subprotocol (the
// base64 framing of another subprotocol).
func textStdin(rec *fakeapiserver.Record) string {
	if strings.Contains(rec.Protocol, "base64") {
		return ""
	}
	for _, f := range rec.Frames {
		if f.Dir == fakeapiserver.FromClient && f.Opcode == "text" {
			return fmt.Sprintf("a text frame came instead (channel %d, %q): base64 framing on a binary subprotocol?", f.Channel, f.Payload)
		}
	}
	return ""
}

// closeEvidence describes the close handshake of a leg whose two ends are
// a (the client side) and b (the server side).
func closeEvidence(r Result, rec *fakeapiserver.Record, name, a, b string) (string, bool) {
	c := rec.Close
	var parts []string
	first, second := "", ""
	code := func(n int, reason string) string {
		if reason != "" {
			return fmt.Sprintf("%d %q", n, reason)
		}
		return fmt.Sprint(n)
	}
	aSent := fmt.Sprintf("%s sent close %s at %s", a, code(c.ClientCode, c.ClientReason), Millis(rec.Started.Sub(r.Started)+c.ClientAt))
	bSent := fmt.Sprintf("%s sent close %s at %s", b, code(c.ServerCode, c.ServerReason), Millis(rec.Started.Sub(r.Started)+c.ServerAt))
	switch {
	case c.ClientSent && c.ServerSent && c.FirstBy == "server":
		first, second = bSent, aSent
	case c.ClientSent && c.ServerSent:
		first, second = aSent, bSent
	case c.ClientSent:
		first, second = aSent, "no reply from "+b
	case c.ServerSent:
		first, second = bSent, "no close frame from "+a
	default:
		first = "no close frame from " + a + " nor " + b
	}
	parts = append(parts, first)
	if second != "" {
		parts = append(parts, second)
	}
	if c.TCP != "" {
		parts = append(parts, "TCP: "+TCPWords(c.TCP, a))
	}
	return name + ": " + strings.Join(parts, ", "), !c.ClientSent
}

// TCPWords says how a leg's TCP ended (a fakeapiserver.TCP* value), as
// its server side saw it; client names the leg's client side.
func TCPWords(tcp, client string) string {
	switch tcp {
	case fakeapiserver.TCPAfterClose:
		return "closed after the handshake"
	case fakeapiserver.TCPEOF:
		return "closed by " + client + " without a completed handshake (FIN)"
	case fakeapiserver.TCPReset:
		return "reset by " + client + " (RST)"
	case fakeapiserver.TCPTimeout:
		return "read deadline passed"
	case fakeapiserver.TCPServerClosed:
		return "closed by the server side"
	}
	return tcp
}

// Millis prints d in milliseconds, or seconds above 10 s.
func Millis(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + Millis(-d)
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	return d.Round(100 * time.Millisecond).String()
}
