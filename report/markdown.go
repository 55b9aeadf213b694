package report

import (
	"cmp"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/scenarios"
)

// MaxMarkdown bounds the Markdown summary by default: GitHub takes 65,536
// characters in a pull-request comment (1 MiB in $GITHUB_STEP_SUMMARY),
// and a byte is at most a character.
const MaxMarkdown = 60000

// unmatched is the Fix first row of the failures no known bug matches.
const unmatched = "no known bug matches: see the tables below"

// WriteMarkdown writes a summary for a pull-request comment or
// $GITHUB_STEP_SUMMARY, the most important first, so that the first
// screen says what to fix: the outcome and the counts per level; any
// notice (cases only reported); for a series of runs, which runs failed
// and which cases are flaky; "Fix first", the known bugs the failures look
// like by how many cases they hit, per subprotocol; then per level the
// cells not passed, grouped a row per scenario and mode with a column per
// subprotocol (each cell links to its page in report.html), beside the
// row's first failure and its key evidence. What does not fit in
// Options.MaxBytes is left out, and the summary says so.
func WriteMarkdown(w io.Writer, f *harness.ResultsFile, o Options) error {
	o = o.withDefaults()
	footer := fmt.Sprintf("\nFull report, with a frame timeline per case: [%s](%s)\n", o.HTMLLink, o.HTMLLink)
	d := &mdDoc{max: o.MaxBytes - len(footer), o: o, protocols: protocolsOf(f)}
	d.header(f)
	bad := failed(f)
	if len(bad) > 0 {
		d.fixFirst(f)
		d.flaky(f)
		rows := groupRows(f)
		for _, l := range levelOrder {
			d.levelTable(l, rows)
		}
	}
	d.b.WriteString(footer)
	_, err := io.WriteString(w, d.b.String())
	return err
}

// mdDoc is a summary being written within a size.
type mdDoc struct {
	b         strings.Builder
	max       int // bytes, the footer excluded
	cut       bool
	o         Options
	protocols []string
}

// add writes s if it fits and tells whether it did.
func (d *mdDoc) add(s string) bool {
	if d.b.Len()+len(s) > d.max {
		d.cut = true
		return false
	}
	d.b.WriteString(s)
	return true
}

// reserve is room kept for the line that says what a table left out.
const reserve = 400

// link is the URL of a case's page in the HTML report.
func (d *mdDoc) link(r harness.Result) string { return d.o.HTMLLink + "#" + CaseID(r.Name) }

func (d *mdDoc) header(f *harness.ResultsFile) {
	fmt.Fprintf(&d.b, "## execconform: %s\n\n", Headline(f))
	fmt.Fprintf(&d.b, "Target: %s · %d cases in %s · execconform %s · %s",
		mdCode(shorten(f.Target, 300)), len(f.Results), f.Duration.Round(100*time.Millisecond), f.Suite.Version, f.Schema)
	if f.Seed != 0 {
		fmt.Fprintf(&d.b, " · seed %d", f.Seed)
	}
	d.b.WriteString("\n\n")
	for _, n := range f.Notices {
		fmt.Fprintf(&d.b, "> **Note:** %s.\n\n", mdCell(shorten(n.Message, 400)))
	}
	if len(f.NotApplicable) > 0 {
		who := "Dialect " + f.Dialect
		if f.RealClient != "" {
			who = "Client " + f.RealClient
		}
		fmt.Fprintf(&d.b, "> **%s:** %d cells not applicable:", mdCell(who), len(f.NotApplicable))
		for _, g := range scenarios.ByWhy(f.NotApplicable) {
			fmt.Fprintf(&d.b, " %d %s;", len(g.Names), mdCell(shorten(g.Why, 200)))
		}
		d.b.WriteString("\n\n")
	}
	if len(f.Runs) > 1 {
		d.runs(f)
	}
	d.b.WriteString("| level |")
	for _, v := range verdictOrder {
		fmt.Fprintf(&d.b, " %s |", v)
	}
	d.b.WriteString("\n|---|")
	for range verdictOrder {
		d.b.WriteString("--:|")
	}
	d.b.WriteString("\n")
	for _, l := range levelOrder {
		vs, ok := f.Summary[l]
		if !ok {
			continue
		}
		fmt.Fprintf(&d.b, "| %s |", l)
		for _, v := range verdictOrder {
			if n := vs[v]; n > 0 {
				fmt.Fprintf(&d.b, " %d |", n)
			} else {
				d.b.WriteString("  |")
			}
		}
		d.b.WriteString("\n")
	}
	if len(f.Runs) > 1 {
		d.b.WriteString("\nEach case is counted once, with its worst verdict over the runs.\n")
	}
}

// runs says which runs of a series failed, with links to their reports
// (the failed ones first; at most 20).
func (d *mdDoc) runs(f *harness.ResultsFile) {
	bad := failedRuns(f)
	fmt.Fprintf(&d.b, "**%d runs** (`--count %d`): ", len(f.Runs), len(f.Runs))
	if len(bad) == 0 {
		d.b.WriteString("none failed")
	} else {
		fmt.Fprintf(&d.b, "%s failed", RunsWord(bad))
	}
	base := strings.TrimSuffix(d.o.HTMLLink, HTMLFile)
	if base == d.o.HTMLLink {
		base = ""
	}
	order := slices.Clone(f.Runs)
	slices.SortStableFunc(order, func(a, b harness.RunSummary) int {
		return boolRank(a.ExitCode == harness.ExitPass) - boolRank(b.ExitCode == harness.ExitPass)
	})
	d.b.WriteString(" · each run's own report:")
	for i, r := range order {
		if i == 20 {
			fmt.Fprintf(&d.b, " … and %d more in `%s/` to `%s/`", len(order)-i, RunDir(1), RunDir(len(f.Runs)))
			break
		}
		word, _ := headline(r.Summary)
		fmt.Fprintf(&d.b, " [run %d: %s](%s%s/%s)", r.Run, word, base, RunDir(r.Run), HTMLFile)
	}
	d.b.WriteString("\n\n")
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// protocolsOf are the subprotocols of f's cases, in the order of
// execproto.AllProtocols (any other after them).
func protocolsOf(f *harness.ResultsFile) []string {
	var out []string
	for _, r := range f.Results {
		if !slices.Contains(out, r.ProtocolColumn()) {
			out = append(out, r.ProtocolColumn())
		}
	}
	rank := func(p string) int {
		for i, q := range execproto.AllProtocols {
			if q.String() == p {
				return i
			}
		}
		if v, ok := strings.CutPrefix(p, "spdy/"); ok {
			for i, q := range execproto.KubeletSPDYProtocols {
				if string(q) == v {
					return len(execproto.AllProtocols) + 1 + i
				}
			}
		}
		return len(execproto.AllProtocols)
	}
	slices.SortStableFunc(out, func(a, b string) int { return rank(a) - rank(b) })
	return out
}

// protocolHeader is the header cells of the subprotocol columns, and
// their legend.
func (d *mdDoc) protocolHeader() (cells, sep, legend string) {
	var names []string
	for _, p := range d.protocols {
		s := harness.ShortProtocol(p)
		cells += " " + s + " |"
		sep += ":-:|"
		switch {
		case p == execproto.ProtocolNone.String():
			names = append(names, s+" = nothing offered")
		case strings.HasPrefix(p, "spdy/"):
			names = append(names, fmt.Sprintf("%s = `%s` over SPDY/3.1", s, strings.TrimPrefix(p, "spdy/")))
		case s != p:
			names = append(names, fmt.Sprintf("%s = `%s`", s, p))
		default:
			names = append(names, mdCode(p))
		}
	}
	return cells, sep, "Subprotocol columns: " + strings.Join(names, ", ") + "."
}

// bugRow is a known bug (or none) and the cases it was seen in.
type bugRow struct {
	bug      string
	total    int
	verdicts map[harness.Verdict]int
	protos   map[string]int
	scen     map[string]int
	order    []string // the scenarios, in matrix order
}

// fixFirst writes the known bugs the failures look like, most cases first,
// with the cases of each per subprotocol and the scenarios they are in.
func (d *mdDoc) fixFirst(f *harness.ResultsFile) {
	index := map[string]*bugRow{}
	var rows []*bugRow
	for _, r := range f.Results {
		if !r.Failed() {
			continue
		}
		bugs := r.LooksLike
		if len(bugs) == 0 {
			bugs = []string{unmatched}
		}
		for _, b := range bugs {
			br := index[b]
			if br == nil {
				br = &bugRow{bug: b, verdicts: map[harness.Verdict]int{}, protos: map[string]int{}, scen: map[string]int{}}
				index[b] = br
				rows = append(rows, br)
			}
			br.total++
			br.verdicts[r.Verdict]++
			br.protos[r.ProtocolColumn()]++
			if br.scen[r.Scenario] == 0 {
				br.order = append(br.order, r.Scenario)
			}
			br.scen[r.Scenario]++
		}
	}
	slices.SortStableFunc(rows, func(a, b *bugRow) int {
		return cmp.Or(b.total-a.total, b.verdicts[harness.Fail]-a.verdicts[harness.Fail], cmp.Compare(a.bug, b.bug))
	})
	cells, sep, legend := d.protocolHeader()
	var t strings.Builder
	fmt.Fprintf(&t, "\n### Fix first\n\n| # | looks like | cases |%s in scenarios |\n|--:|---|---|%s---|\n", cells, sep)
	for i, br := range rows {
		num := fmt.Sprint(i + 1)
		if br.bug == unmatched {
			num = "–"
		}
		fmt.Fprintf(&t, "| %s | %s | %s |", num, mdCell(br.bug), countWords(br.verdicts))
		for _, p := range d.protocols {
			if n := br.protos[p]; n > 0 {
				fmt.Fprintf(&t, " %d |", n)
			} else {
				t.WriteString("  |")
			}
		}
		scen := slices.Clone(br.order)
		slices.SortStableFunc(scen, func(a, b string) int { return br.scen[b] - br.scen[a] })
		var names []string
		for j, s := range scen {
			if j == 3 {
				names = append(names, fmt.Sprintf("and %d more", len(scen)-j))
				break
			}
			names = append(names, mdCode(s))
		}
		fmt.Fprintf(&t, " %s |\n", strings.Join(names, ", "))
	}
	fmt.Fprintf(&t, "\n%s\n", legend)
	d.add(t.String())
}

// countWords is verdict counts in words: "173 FAIL, 48 NON-STRICT".
func countWords(n map[harness.Verdict]int) string {
	var parts []string
	for _, v := range verdictOrder {
		if n[v] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[v], v))
		}
	}
	return strings.Join(parts, ", ")
}

// flaky lists, for a series, the cases that did not pass in some runs but
// did in others (at most 30).
func (d *mdDoc) flaky(f *harness.ResultsFile) {
	var cases []harness.Result
	for _, r := range f.Results {
		if flaky(r) {
			cases = append(cases, r)
		}
	}
	if len(f.Runs) < 2 {
		return
	}
	if len(cases) == 0 {
		d.add("\nNo flaky case: every case had the same outcome in every run.\n")
		return
	}
	var t strings.Builder
	fmt.Fprintf(&t, "\n### Flaky: %d %s not passed in some runs only\n\n", len(cases), plural(len(cases), "case", "cases"))
	for i, r := range cases {
		if i == 30 {
			fmt.Fprintf(&t, "- … and %d more (the cells marked k/%d below)\n", len(cases)-i, len(f.Runs))
			break
		}
		fmt.Fprintf(&t, "- [%s](%s): %s\n", mdCode(r.Name), d.link(r), RunVerdicts(r))
	}
	d.add(t.String())
}

// mdRow is a row of the grouped tables: a scenario in one mode, a cell
// per subprotocol.
type mdRow struct {
	scenario string
	tty      bool
	level    scenarios.Level
	cells    map[string]harness.Result
	bad      []harness.Result // the cells not passed, in column order
}

// groupRows lays f's results out a row per scenario and mode (tty first),
// in matrix order.
func groupRows(f *harness.ResultsFile) []*mdRow {
	type key struct {
		scenario string
		tty      bool
	}
	index := map[key]*mdRow{}
	scenOrder := map[string]int{}
	var rows []*mdRow
	for _, r := range f.Results {
		k := key{r.Scenario, r.TTY}
		row := index[k]
		if row == nil {
			row = &mdRow{scenario: r.Scenario, tty: r.TTY, level: r.Level, cells: map[string]harness.Result{}}
			index[k] = row
			rows = append(rows, row)
			if _, ok := scenOrder[r.Scenario]; !ok {
				scenOrder[r.Scenario] = len(scenOrder)
			}
		}
		row.cells[r.ProtocolColumn()] = r
	}
	protocols := protocolsOf(f)
	for _, row := range rows {
		for _, p := range protocols {
			if r, ok := row.cells[p]; ok && r.Failed() {
				if len(row.bad) == 0 {
					row.level = r.Level
				}
				row.bad = append(row.bad, r)
			}
		}
	}
	slices.SortStableFunc(rows, func(a, b *mdRow) int {
		return cmp.Or(scenOrder[a.scenario]-scenOrder[b.scenario], boolRank(b.tty)-boolRank(a.tty))
	})
	return rows
}

// levelTable writes the rows of level l with cells not passed.
func (d *mdDoc) levelTable(l scenarios.Level, all []*mdRow) {
	var rows []*mdRow
	n := map[harness.Verdict]int{}
	for _, row := range all {
		if len(row.bad) > 0 && row.level == l {
			rows = append(rows, row)
			for _, r := range row.bad {
				n[r.Verdict]++
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	title := fmt.Sprintf("\n### %s not met: %s in %d %s\n\n", l, countWords(n), len(rows), plural(len(rows), "row", "rows"))
	if d.cut {
		d.add(strings.TrimSuffix(title, "\n\n") + ": not shown, to keep this summary within GitHub's size limit (see the full report)\n")
		return
	}
	cells, sep, _ := d.protocolHeader()
	head := fmt.Sprintf("%s| scenario | mode |%s first failure | key evidence |\n|---|---|%s---|---|\n", title, cells, sep)
	if d.b.Len()+len(head)+reserve > d.max {
		d.cut = true
		d.add(strings.TrimSuffix(title, "\n\n") + ": not shown, to keep this summary within GitHub's size limit (see the full report)\n")
		return
	}
	d.b.WriteString(head)
	for i, row := range rows {
		line := d.row(row)
		if d.b.Len()+len(line)+reserve > d.max {
			d.cut = true
			left := 0
			for _, r := range rows[i:] {
				left += len(r.bad)
			}
			d.add(fmt.Sprintf("\n… and %d more %s (%d %s) left out to keep this summary within GitHub's size limit: see the full report.\n",
				len(rows)-i, plural(len(rows)-i, "row", "rows"), left, plural(left, "case", "cases")))
			return
		}
		d.b.WriteString(line)
	}
}

// digits finds numbers, so that failures that differ only in PIDs and
// times count as one.
var digits = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)

// row is one row of a grouped table.
func (d *mdDoc) row(row *mdRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| %s | %s |", mdCode(row.scenario), scenarios.ModeName(row.tty))
	for _, p := range d.protocols {
		r, ok := row.cells[p]
		if !ok {
			b.WriteString(" – |")
			continue
		}
		fmt.Fprintf(&b, " [%s](%s) |", cellMark(r), d.link(r))
	}
	first := row.bad[0]
	what := "_" + harness.ShortProtocol(first.ProtocolColumn()) + ":_ "
	if len(first.Failures) > 0 {
		what += shorten(first.Failures[0], 240)
		if more := len(first.Failures) - 1; more > 0 {
			what += fmt.Sprintf(" (+%d more %s)", more, plural(more, "failure", "failures"))
		}
	} else {
		what += string(first.Verdict)
	}
	distinct := map[string]bool{}
	for _, r := range row.bad {
		if len(r.Failures) > 0 {
			distinct[digits.ReplaceAllString(r.Failures[0], "N")] = true
		}
	}
	if len(distinct) > 1 {
		what += fmt.Sprintf("<br>(%d different failures in this row: see each cell)", len(distinct))
	}
	var ev []string
	if first.Verdict != harness.Error {
		for _, l := range evidence(first) {
			ev = append(ev, shorten(l, 160))
		}
	}
	fmt.Fprintf(&b, " %s | %s |\n", mdCell(what), mdCell(strings.Join(ev, "<br>")))
	return b.String()
}

// cellMark is a grouped table's cell: the verdict (a check mark for a
// pass), and for a case of a series that did not pass in every run, in
// how many.
func cellMark(r harness.Result) string {
	mark := map[harness.Verdict]string{harness.Pass: "✓", harness.Info: "info"}[r.Verdict]
	if mark == "" {
		mark = string(r.Verdict)
	}
	if flaky(r) {
		mark += fmt.Sprintf(" %d/%d", badRuns(r), len(r.RunVerdicts))
	}
	return mark
}

// shorten cuts s to about max bytes: at a "; " between the parts of a
// message if it has some (saying how many are left out), else at a space.
func shorten(s string, max int) string {
	if len(s) <= max {
		return s
	}
	if parts := strings.Split(s, "; "); len(parts) > 1 && len(parts[0]) <= max-20 {
		out, n := parts[0], 1
		for n < len(parts) && len(out)+2+len(parts[n]) <= max-20 {
			out += "; " + parts[n]
			n++
		}
		return out + fmt.Sprintf("; … and %d more", len(parts)-n)
	}
	cut := strings.LastIndexByte(s[:max], ' ')
	if cut < max/2 {
		cut = max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
	}
	return s[:cut] + " …"
}

// mdCode quotes s as inline code.
func mdCode(s string) string { return "`" + strings.ReplaceAll(s, "`", "'") + "`" }

// mdCell makes s safe inside a Markdown table cell (keeping <br>).
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "<br>", "\x00")
	s = strings.NewReplacer("<", "&lt;", ">", "&gt;", "*", "\\*").Replace(s)
	return strings.ReplaceAll(s, "\x00", "<br>")
}
