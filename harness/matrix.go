package harness

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/scenarios"
)

// ShortProtocol names a subprotocol in matrix headers: none, v1 (channel.k8s.io),
// b64, v4, v4b64, v5.
func ShortProtocol(p string) string {
	if v, ok := strings.CutPrefix(p, "spdy/"); ok {
		return "spdy-" + ShortProtocol(v)
	}
	switch p {
	case execproto.ProtocolNone.String():
		return "none"
	case string(execproto.ProtocolV1):
		return "v1"
	case string(execproto.ProtocolBase64):
		return "b64"
	case string(execproto.ProtocolV4):
		return "v4"
	case string(execproto.ProtocolV4Base64):
		return "v4b64"
	case string(execproto.ProtocolV5):
		return "v5"
	case string(execproto.SPDYProtocolV2):
		return "v2"
	case string(execproto.SPDYProtocolV3):
		return "v3"
	}
	return p
}

// Column is one column of a matrix: a transport, a subprotocol and a
// tty mode.
type Column struct {
	Transport string // Result.Transport: "" (WebSocket) or "spdy"
	Protocol  string
	TTY       bool
}

// Key names the column's transport and subprotocol: the subprotocol, or
// "spdy/" and the version over SPDY (Result.ProtocolColumn).
func (c Column) Key() string { return protocolColumn(c.Transport, c.Protocol) }

func protocolColumn(transport, protocol string) string {
	if transport != "" {
		return transport + "/" + protocol
	}
	return protocol
}

// ProtocolColumn is the key of r's subprotocol column (Column.Key).
func (r Result) ProtocolColumn() string { return protocolColumn(r.Transport, r.Protocol) }

// Name is the column's header, e.g. "v5/tty", or "spdy-v4/tty" over SPDY.
func (c Column) Name() string {
	if c.Transport != "" {
		return c.Transport + "-" + ShortProtocol(c.Protocol) + "/" + scenarios.ModeName(c.TTY)
	}
	return ShortProtocol(c.Protocol) + "/" + scenarios.ModeName(c.TTY)
}

// Matrix lays results out: a row per scenario in report order, a column
// per subprotocol and mode (tty first), and each row's level (a row's
// INFO cases give way to its judged ones).
type Matrix struct {
	Rows  []string
	Cols  []Column
	Level map[string]scenarios.Level
	cells map[string]map[Column]Result
}

// NewMatrix lays out rep.
func NewMatrix(rep *Report) *Matrix {
	m := &Matrix{Level: map[string]scenarios.Level{}, cells: map[string]map[Column]Result{}}
	for _, r := range rep.Results {
		col := Column{r.Transport, r.Protocol, r.TTY}
		if !slices.Contains(m.Cols, col) {
			m.Cols = append(m.Cols, col)
		}
		if m.cells[r.Scenario] == nil {
			m.Rows = append(m.Rows, r.Scenario)
			m.cells[r.Scenario] = map[Column]Result{}
		}
		m.cells[r.Scenario][col] = r
		if l, ok := m.Level[r.Scenario]; !ok || l == scenarios.INFO {
			m.Level[r.Scenario] = r.Level
		}
	}
	slices.SortStableFunc(m.Cols, func(a, b Column) int {
		switch {
		case a.TTY == b.TTY:
			return 0
		case a.TTY:
			return -1
		}
		return 1
	})
	return m
}

// Cell is the result of row's scenario in column c, if that case ran.
func (m *Matrix) Cell(row string, c Column) (Result, bool) {
	r, ok := m.cells[row][c]
	return r, ok
}

// WriteMatrix prints the results as a matrix: a row per scenario, a column
// per subprotocol and tty mode; each cell is the verdict and the time to
// reap. It then lists every failure with its evidence.
func WriteMatrix(w io.Writer, rep *Report) {
	m := NewMatrix(rep)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprint(tw, "scenario\tlevel")
	for _, c := range m.Cols {
		fmt.Fprintf(tw, "\t%s", c.Name())
	}
	fmt.Fprintln(tw)
	for _, row := range m.Rows {
		fmt.Fprintf(tw, "%s\t%s", row, m.Level[row])
		for _, c := range m.Cols {
			r, ok := m.Cell(row, c)
			fmt.Fprintf(tw, "\t%s", cellText(r, ok))
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()

	counts := rep.Counts()
	fmt.Fprintf(w, "\n%d cases in %s:", len(rep.Results), rep.Duration.Round(time.Millisecond))
	for _, l := range []scenarios.Level{scenarios.MUST, scenarios.SHOULD, scenarios.INFO} {
		if c := counts[l]; c != nil {
			var parts []string
			for _, v := range []Verdict{Pass, Fail, NonStrict, Info, Error} {
				if c[v] > 0 {
					parts = append(parts, fmt.Sprintf("%d %s", c[v], v))
				}
			}
			fmt.Fprintf(w, " %s %s;", l, strings.Join(parts, ", "))
		}
	}
	fmt.Fprintln(w)
	WriteNotApplicable(w, rep)
	for _, r := range rep.Results {
		if !r.Failed() {
			continue
		}
		fmt.Fprintf(w, "\n%s %s [%s]\n", r.Verdict, r.Name, r.Level)
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  - %s\n", f)
		}
	}
}

func cellText(r Result, ok bool) string {
	if !ok {
		return "-"
	}
	switch r.Verdict {
	case Pass:
		if r.TimeToReap >= 0 {
			return "ok " + shortDur(r.TimeToReap)
		}
		return "ok"
	case NonStrict:
		return "NS"
	case Info:
		return "info"
	}
	return string(r.Verdict)
}

func shortDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dus", d.Microseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return d.Round(time.Second).String()
}

// ReapStat summarises the time to reap of one scenario's passing cases.
type ReapStat struct {
	Scenario      string
	N             int
	P50, P99, Max time.Duration
}

// ReapStats gives time-to-reap percentiles per scenario, in report order.
func ReapStats(rep *Report) []ReapStat {
	var order []string
	by := map[string][]time.Duration{}
	for _, r := range rep.Results {
		if r.TimeToReap < 0 {
			continue
		}
		if _, ok := by[r.Scenario]; !ok {
			order = append(order, r.Scenario)
		}
		by[r.Scenario] = append(by[r.Scenario], r.TimeToReap)
	}
	var out []ReapStat
	for _, sc := range order {
		ds := by[sc]
		out = append(out, ReapStat{Scenario: sc, N: len(ds), P50: Percentile(ds, 50), P99: Percentile(ds, 99), Max: Percentile(ds, 100)})
	}
	return out
}

// WriteReapStats prints ReapStats as a table.
func WriteReapStats(w io.Writer, rep *Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "time to reap	n	p50	p99	max")
	for _, s := range ReapStats(rep) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", s.Scenario, s.N, shortDur(s.P50), shortDur(s.P99), shortDur(s.Max))
	}
	_ = tw.Flush()
}

// WriteNotApplicable lists, for a dialect run, the cells the dialect
// cannot run, grouped by why.
func WriteNotApplicable(w io.Writer, rep *Report) {
	if len(rep.NotApplicable) == 0 {
		return
	}
	fmt.Fprintf(w, "%d cells not applicable %s:\n", len(rep.NotApplicable), rep.NotApplicableFor())
	for _, g := range scenarios.ByWhy(rep.NotApplicable) {
		fmt.Fprintf(w, "  %d: %s (%s)\n", len(g.Names), g.Why, summarize(g.Names, 3))
	}
}

// NotApplicableFor says for what the run's cells are not applicable:
// "in dialect D", "for client C".
func (rep *Report) NotApplicableFor() string {
	if rep.RealClient != "" {
		return "for client " + rep.RealClient
	}
	return "in dialect " + rep.Dialect
}

// summarize names the first n of names, and how many more.
func summarize(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}
