package report

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/scenarios"
)

// sequence is the end of a case drawn as a sequence diagram (an inline
// SVG): three lifelines (client, proxy, API server) and, in time order,
// the ending, every exit on stdin to the API server, every close frame on
// either leg, how each TCP connection ended, the shell's exit, and what
// the process table showed after the grace period.
type sequence struct {
	Width, Height int
	Lanes         []lane
	Steps         []step
}

type lane struct {
	X    int
	Name string
}

// step is an arrow from X1 to X2 (a note on X1 when X1 == X2, a line
// across every lifeline when Across).
type step struct {
	Y, X1, X2, LabelX int
	Time, Label       string
	Class             string
	Across, Note      bool
	NoteX, NoteY      int
	NoteW             int
	// Head is the arrowhead's polygon points.
	Head string
}

// The lifelines' x positions.
const (
	laneClient  = 120
	laneProxy   = 380
	laneBackend = 640
	seqWidth    = 760
	stepHeight  = 34
)

type event struct {
	at             time.Duration
	from, to       int
	label, class   string
	across, isNote bool
}

func newSequence(r harness.Result) *sequence {
	var evs []event
	if r.EndedAt > 0 {
		evs = append(evs, event{at: r.EndedAt, label: "the ending: " + endWord(r), class: "ending", across: true})
	}
	if cl := r.Trace(scenarios.ClientLeg); cl != nil {
		for _, f := range cl.Frames {
			if f.Opcode != "close" {
				continue
			}
			from, to := laneClient, laneProxy
			if f.Dir == fakeapiserver.FromServer {
				from, to = laneProxy, laneClient
			}
			evs = append(evs, event{at: r.FrameAt(cl, f), from: from, to: to, label: fmt.Sprintf("close %d", f.CloseCode), class: "close"})
		}
		if r.Client.EndAt > 0 && r.Client.EndErr != "" {
			from, to, label := tcpEnd(r.Client.EndErr)
			evs = append(evs, event{at: r.Client.EndAt, from: from, to: to, label: label, class: "tcp"})
		}
	}
	if bl := r.Trace(scenarios.BackendLeg); bl != nil {
		for _, f := range bl.Frames {
			t := r.FrameAt(bl, f)
			switch {
			case f.Opcode == "close":
				from, to := laneProxy, laneBackend
				if f.Dir == fakeapiserver.FromServer {
					from, to = laneBackend, laneProxy
				}
				evs = append(evs, event{at: t, from: from, to: to, label: fmt.Sprintf("close %d", f.CloseCode), class: "close"})
			case f.Dir == fakeapiserver.FromClient && f.Channel == 0 && harness.IsExitInput(f.Payload):
				evs = append(evs, event{at: t, from: laneProxy, to: laneBackend, label: fmt.Sprintf("stdin %q", f.Payload), class: "exit"})
			case f.Dir == fakeapiserver.FromClient && f.Opcode == "text" && !strings.Contains(bl.Protocol, "base64") && base64Exit(f.Payload):
				evs = append(evs, event{at: t, from: laneProxy, to: laneBackend, label: fmt.Sprintf("text %q: a base64 exit", f.Payload), class: "bad"})
			}
		}
		if c := bl.Close; c.TCP != "" {
			label, from, to := "TCP "+c.TCP, laneProxy, laneBackend
			switch c.TCP {
			case fakeapiserver.TCPEOF, fakeapiserver.TCPAfterClose:
				label = "FIN"
			case fakeapiserver.TCPReset:
				label = "RST"
			case fakeapiserver.TCPServerClosed:
				label, from, to = "FIN", laneBackend, laneProxy
			}
			evs = append(evs, event{at: bl.Started.Sub(r.Started) + c.TCPAt, from: from, to: to, label: label, class: "tcp"})
		}
	}
	if b := r.Backend; b != nil && b.Exited {
		evs = append(evs, event{at: b.Started.Sub(r.Started) + b.ExitedAt, from: laneBackend, to: laneBackend, label: fmt.Sprintf("shell exited (%d)", b.ExitCode), class: "exited", isNote: true})
	}
	slices.SortStableFunc(evs, func(a, b event) int { return cmp.Compare(a.at, b.at) })
	switch {
	case len(r.Live) > 0:
		evs = append(evs, event{at: -1, from: laneBackend, to: laneBackend, label: fmt.Sprintf("after the grace period: %d alive", len(r.Live)), class: "live", isNote: true})
	case r.TimeToReap >= 0:
		evs = append(evs, event{at: -1, from: laneBackend, to: laneBackend, label: "every process gone", class: "gone", isNote: true})
	}
	if len(evs) == 0 {
		return nil
	}
	s := &sequence{Width: seqWidth, Lanes: []lane{{laneClient, "client"}, {laneProxy, "proxy"}, {laneBackend, "API server"}}}
	for i, e := range evs {
		st := step{Y: 70 + i*stepHeight, X1: e.from, X2: e.to, Label: e.label, Class: e.class, Across: e.across, Note: e.isNote}
		if e.at >= 0 {
			st.Time = harness.Millis(e.at)
		}
		st.LabelX = (e.from + e.to) / 2
		if e.from != e.to {
			d := 9
			if e.to < e.from {
				d = -9
			}
			st.Head = fmt.Sprintf("%d,%d %d,%d %d,%d", e.to, st.Y, e.to-d, st.Y-5, e.to-d, st.Y+5)
		}
		if st.Across {
			st.LabelX = (laneClient + laneBackend) / 2
		}
		if st.Note {
			st.NoteW = 7*len(e.label) + 16
			st.NoteX = min(seqWidth-st.NoteW-4, e.from-st.NoteW/2)
			st.LabelX = st.NoteX + st.NoteW/2
			st.NoteY = st.Y - 14
		}
		s.Steps = append(s.Steps, st)
	}
	s.Height = 70 + len(evs)*stepHeight + 10
	return s
}

// tcpEnd draws how the client's connection ended, from the client's error.
func tcpEnd(endErr string) (from, to int, label string) {
	switch {
	case endErr == execclient.ErrAborted.Error():
		return laneClient, laneProxy, "FIN"
	case endErr == execclient.ErrReset.Error():
		return laneClient, laneProxy, "RST"
	case strings.Contains(endErr, "reset by peer"):
		return laneProxy, laneClient, "RST"
	case strings.Contains(endErr, "1006"), strings.Contains(endErr, "EOF"):
		return laneProxy, laneClient, "FIN (no close frame)"
	}
	label = endErr
	if len(label) > 40 {
		label = label[:37] + "..."
	}
	return laneClient, laneProxy, label
}

// base64Exit reports whether payload is an exit in base64, as a proxy that
// frames for the base64 subprotocols sends it on a binary one.
func base64Exit(payload string) bool {
	b, err := base64.StdEncoding.DecodeString(strings.TrimRight(payload, "…"))
	return err == nil && harness.IsExitInput(string(b))
}
