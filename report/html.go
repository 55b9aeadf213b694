package report

import (
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/proctable"
	"github.com/execconform/execconform/scenarios"
)

//go:embed report.html.tmpl
var htmlSource string

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"lower": strings.ToLower,
	"join":  strings.Join,
	"dur":   func(d time.Duration) string { return d.Round(time.Millisecond).String() },
}).Parse(htmlSource))

// WriteHTML writes f as one self-contained HTML file: no network, no
// external file; it works opened from disk. It holds the matrix with
// filters (level, verdict, subprotocol) and, per case, a page (shown when
// its anchor is the URL's fragment) with the failure in words, the key
// evidence, the close handshake drawn as a sequence, the frames of both
// legs side by side, and the process table after the grace period.
func WriteHTML(w io.Writer, f *harness.ResultsFile) error {
	return htmlTemplate.Execute(w, newPage(f))
}

type page struct {
	F         *harness.ResultsFile
	Headline  string
	Bad       bool
	Counts    []countRow
	Verdicts  []harness.Verdict
	Levels    []scenarios.Level
	Protocols []string
	Cols      []colView
	Rows      []rowView
	Failing   []caseLink
	Cases     []caseView
	Runs      []runView
	BadRuns   string
}

// runView is a run of a series, in the combined report.
type runView struct {
	Run           int
	Word, Detail  string
	Failed        int
	Link          string
	Bad           bool
	Started, Took string
}

// runCell is a combined case's verdict in one run, linking to the case's
// page in that run's report.
type runCell struct {
	Run     int
	Verdict harness.Verdict
	Link    string
}

type countRow struct {
	Level scenarios.Level
	N     []int
}

type colView struct {
	Name, Protocol string
}

type rowView struct {
	Scenario, Description string
	Level                 scenarios.Level
	Cells                 []cellView
}

type cellView struct {
	ID, Protocol, Text, Title string
	Verdict                   harness.Verdict
	Ran                       bool
}

type caseLink struct {
	ID, Name, First string
	Verdict         harness.Verdict
}

type caseView struct {
	ID, Name, Scenario, Description, Protocol, Mode string
	Level                                           scenarios.Level
	Verdict                                         harness.Verdict
	Failures, Notes, LooksLike, Evidence            []string
	Facts                                           [][2]string
	Live                                            []proctable.Proc
	Reap                                            string
	Sequence                                        *sequence
	Timeline                                        []tlRow
	TimelineNote                                    string
	TargetOutput                                    string
	Run                                             int
	Runs                                            []runCell
}

// tlRow is a row of the side-by-side timeline: a frame on one leg, or a
// marker (the ending, the shell's exit, a TCP end, frames not kept).
type tlRow struct {
	T       string
	at      time.Duration
	order   int
	Client  *frameView
	Backend *frameView
	Marker  string
}

type frameView struct {
	Arrow, Opcode, Channel, Payload, Class string
	Length                                 int64
}

func newPage(f *harness.ResultsFile) *page {
	p := &page{F: f, Headline: Headline(f), Verdicts: verdictOrder, Levels: levelOrder}
	p.Bad = f.ExitCode != harness.ExitPass
	for _, l := range levelOrder {
		if vs, ok := f.Summary[l]; ok {
			row := countRow{Level: l}
			for _, v := range verdictOrder {
				row.N = append(row.N, vs[v])
			}
			p.Counts = append(p.Counts, row)
		}
	}
	rep := f.Report()
	m := harness.NewMatrix(rep)
	for _, c := range m.Cols {
		p.Cols = append(p.Cols, colView{Name: c.Name(), Protocol: c.Key()})
		if !slices.Contains(p.Protocols, c.Key()) {
			p.Protocols = append(p.Protocols, c.Key())
		}
	}
	descriptions := map[string]string{}
	for _, s := range scenarios.All() {
		descriptions[s.Name] = s.Description
	}
	for _, row := range m.Rows {
		rv := rowView{Scenario: row, Level: m.Level[row], Description: descriptions[row]}
		for _, c := range m.Cols {
			r, ok := m.Cell(row, c)
			cv := cellView{Protocol: c.Key(), Ran: ok}
			if ok {
				cv.ID, cv.Verdict, cv.Text = CaseID(r.Name), r.Verdict, cellWord(r)
				cv.Title = r.Name + ": " + string(r.Verdict)
				if len(r.Failures) > 0 {
					cv.Title += " — " + r.Failures[0]
				}
			}
			rv.Cells = append(rv.Cells, cv)
		}
		p.Rows = append(p.Rows, rv)
	}
	for _, r := range failed(f) {
		first := ""
		if len(r.Failures) > 0 {
			first = r.Failures[0]
		}
		p.Failing = append(p.Failing, caseLink{ID: CaseID(r.Name), Name: r.Name, First: first, Verdict: r.Verdict})
	}
	for _, r := range f.Results {
		p.Cases = append(p.Cases, newCase(r, descriptions[r.Scenario]))
	}
	for _, r := range f.Runs {
		word, detail := headline(r.Summary)
		p.Runs = append(p.Runs, runView{Run: r.Run, Word: word, Detail: detail, Failed: len(r.Failed), Bad: r.ExitCode != harness.ExitPass,
			Link: RunDir(r.Run) + "/" + HTMLFile, Started: r.Started.UTC().Format("15:04:05"), Took: r.Duration.Round(time.Millisecond).String()})
	}
	if bad := failedRuns(f); len(bad) > 0 {
		p.BadRuns = RunsWord(bad)
	}
	return p
}

// cellWord is a matrix cell's text: the verdict and, for a pass, the time
// to reap.
func cellWord(r harness.Result) string {
	if flaky(r) {
		return cellMark(r) // a verdict of a series and in how many runs: "FAIL 1/3"
	}
	switch r.Verdict {
	case harness.Pass:
		if r.TimeToReap >= 0 {
			return "PASS " + shortMS(r.TimeToReap)
		}
		return "PASS"
	case harness.NonStrict:
		return "NON-STRICT"
	}
	return string(r.Verdict)
}

func shortMS(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return d.Round(time.Second).String()
}

func newCase(r harness.Result, description string) caseView {
	ev := harness.EvidenceOf(r)
	c := caseView{
		ID: CaseID(r.Name), Name: r.Name, Scenario: r.Scenario, Description: description,
		Protocol: r.ProtocolColumn(), Mode: scenarios.ModeName(r.TTY), Level: r.Level, Verdict: r.Verdict,
		Failures: r.Failures, Notes: r.Notes, LooksLike: r.LooksLike, Evidence: evidence(r),
		Live: r.Live, Reap: ev.Reap, TargetOutput: r.TargetOutput,
	}
	if len(r.Client.Offered) > 0 {
		c.Facts = append(c.Facts, [2]string{"subprotocols offered", strings.Join(r.Client.Offered, ", ")})
	}
	if r.SPDY() {
		c.Facts = append(c.Facts, [2]string{"transport", "SPDY/3.1"})
	}
	c.Facts = append(c.Facts, [2]string{"subprotocol (negotiated)", orNone(r.Client.Protocol)})
	if p := r.Observed.Protocol; p != "" && p != orNone(r.Client.Protocol) {
		c.Facts = append(c.Facts, [2]string{"subprotocol the API server negotiated", p})
	}
	c.Facts = append(c.Facts, [2]string{"duration", harness.Millis(r.Duration)})
	if r.EndedAt > 0 {
		c.Facts = append(c.Facts, [2]string{"ending at", harness.Millis(r.EndedAt)})
	}
	if r.TimeToReap >= 0 {
		c.Facts = append(c.Facts, [2]string{"time to reap", harness.Millis(r.TimeToReap)})
	}
	c.Facts = append(c.Facts, [2]string{"status on the error channel", r.Observed.Status})
	if r.Client.EndErr != "" {
		c.Facts = append(c.Facts, [2]string{"client's connection ended", r.Client.EndErr})
	}
	if b := r.Backend; b != nil {
		c.Facts = append(c.Facts, [2]string{"command", strings.Join(b.Command, " ")})
		if b.Exited {
			c.Facts = append(c.Facts, [2]string{"shell exited", fmt.Sprintf("code %d at %s", b.ExitCode, harness.Millis(b.Started.Sub(r.Started)+b.ExitedAt))})
		}
	}
	for _, l := range []scenarios.Leg{scenarios.ClientLeg, scenarios.BackendLeg} {
		if v := r.Legs[l]; v != nil && v.Link != nil {
			c.Facts = append(c.Facts, [2]string{string(l) + " leg bytes (up/down)", fmt.Sprintf("%d / %d", v.Link.UpstreamBytes, v.Link.DownstreamBytes)})
		}
	}
	if len(r.RunVerdicts) > 1 {
		c.Run = r.Run
		for i, v := range r.RunVerdicts {
			c.Runs = append(c.Runs, runCell{Run: i + 1, Verdict: v, Link: RunDir(i+1) + "/" + HTMLFile + "#" + c.ID})
		}
	}
	c.Timeline, c.TimelineNote = timeline(r)
	c.Sequence = newSequence(r)
	return c
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// channelWord names an exec channel for display.
func channelWord(ch int, proto string) string {
	switch {
	case ch < 0:
		return ""
	case ch == int(execproto.StreamClose) && !execproto.Protocol(proto).StreamClose():
		return "255 (invalid)"
	}
	names := map[int]string{0: "stdin", 1: "stdout", 2: "stderr", 3: "error", 4: "resize", 255: "close-signal"}
	if n, ok := names[ch]; ok {
		return n
	}
	return strconv.Itoa(ch)
}

// quote shows a payload with its control characters escaped.
func quote(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func newFrame(f fakeapiserver.FrameRecord, proto string, fromLeft bool) *frameView {
	payload, cut := f.Payload, f.Truncated
	if r := []rune(payload); len(r) > maxShownPayload {
		payload, cut = string(r[:maxShownPayload]), true
	}
	v := &frameView{Opcode: f.Opcode, Channel: channelWord(f.Channel, proto), Length: f.Length, Payload: quote(payload)}
	if cut {
		v.Payload += "…"
	}
	if fromLeft {
		v.Arrow = "→"
	} else {
		v.Arrow = "←"
	}
	switch f.Opcode {
	case "close":
		v.Class = "close"
		v.Payload = fmt.Sprintf("close %d %s", f.CloseCode, quote(f.Reason))
	case "ping", "pong":
		v.Class = "ctl"
	case "continuation":
		v.Class = "bad"
	}
	switch {
	case f.Channel == int(execproto.StreamStdin) && harness.IsExitInput(f.Payload):
		v.Class = "exit"
	case f.Opcode == "text" && !strings.Contains(proto, "base64") && base64Exit(f.Payload):
		v.Class = "bad"
		v.Payload += " (an exit in base64: framing for another subprotocol)"
	}
	return v
}

// maxShownPayload is how much of a payload a timeline row shows (results.json
// has what the recorder kept).
const maxShownPayload = 96

// maxTimeline bounds the rows of one case's timeline.
const maxTimeline = 600

// timeline merges the frames of both legs by time, with markers.
func timeline(r harness.Result) ([]tlRow, string) {
	var rows []tlRow
	n := 0
	add := func(row tlRow) {
		row.order = n
		n++
		rows = append(rows, row)
	}
	var dropped []string
	for _, l := range []scenarios.Leg{scenarios.ClientLeg, scenarios.BackendLeg} {
		rec := r.Trace(l)
		if rec == nil {
			continue
		}
		if rec.FramesDropped > 0 {
			dropped = append(dropped, fmt.Sprintf("%s leg: %d of %d frames kept (the first and the last)", l, len(rec.Frames), int64(len(rec.Frames))+rec.FramesDropped))
		}
		var prev int64
		for _, f := range rec.Frames {
			t := r.FrameAt(rec, f)
			if prev != 0 && f.Seq > prev+1 {
				add(tlRow{at: t, Marker: fmt.Sprintf("%s leg: %d frames not kept", l, f.Seq-prev-1)})
			}
			prev = f.Seq
			fv := newFrame(f, rec.Protocol, f.Dir == fakeapiserver.FromClient)
			if l == scenarios.ClientLeg {
				add(tlRow{at: t, Client: fv})
			} else {
				add(tlRow{at: t, Backend: fv})
			}
		}
		if c := rec.Close; c.TCP != "" && l == scenarios.BackendLeg {
			add(tlRow{at: rec.Started.Sub(r.Started) + c.TCPAt, Marker: "backend TCP: " + harness.TCPWords(c.TCP, "the proxy")})
		}
	}
	if r.EndedAt > 0 {
		add(tlRow{at: r.EndedAt, Marker: "the ending (" + endWord(r) + ")"})
	}
	if r.Client.EndAt > 0 {
		what := "the client's connection ended"
		if r.Client.EndErr != "" {
			what += ": " + r.Client.EndErr
		}
		add(tlRow{at: r.Client.EndAt, Marker: what})
	}
	if b := r.Backend; b != nil && b.Exited {
		add(tlRow{at: b.Started.Sub(r.Started) + b.ExitedAt, Marker: fmt.Sprintf("the shell exited (code %d)", b.ExitCode)})
	}
	slices.SortStableFunc(rows, func(a, b tlRow) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return a.order - b.order
	})
	note := strings.Join(dropped, "; ")
	if len(rows) > maxTimeline {
		note = strings.TrimPrefix(note+fmt.Sprintf("; %d rows shown of %d (the first and the last; results.json has them all)", maxTimeline, len(rows)), "; ")
		rows = append(rows[:maxTimeline/2:maxTimeline/2], rows[len(rows)-maxTimeline/2:]...)
	}
	for i := range rows {
		rows[i].T = harness.Millis(rows[i].at)
	}
	return rows, note
}

// endWord says what the ending was, from the scenario's name.
func endWord(r harness.Result) string {
	return strings.TrimPrefix(r.Scenario, harness.Group(r.Scenario)+"/")
}
