package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/execconform/execconform/harness"
)

// Aspect is one fact in which the fake API server's outcome of a case is
// compared with the real cluster's.
type Aspect struct {
	Name string
	Of   func(harness.Result) string
}

// Aspects are the facts compared: the verdict, the subprotocol the API
// server negotiated for what the proxy offered it, whether a shell was left
// alive, who closed the backend connection first and with what codes,
// what the client was told, and the status on the error channel.
var Aspects = []Aspect{
	{"verdict", func(r harness.Result) string { return string(r.Verdict) }},
	{"protocol", func(r harness.Result) string {
		if r.Observed.Protocol == "" {
			return "no session"
		}
		return r.Observed.Protocol
	}},
	{"live", func(r harness.Result) string { return fmt.Sprint(r.Observed.LiveProcesses > 0) }},
	{"first-close", func(r harness.Result) string { return orNone(r.Observed.CloseFirstBy) }},
	{"server-close-code", func(r harness.Result) string { return code(r.Observed.ServerCloseCode) }},
	{"client-close-code", func(r harness.Result) string { return code(r.Observed.ClientCloseCode) }},
	{"status", func(r harness.Result) string { return r.Observed.Status }},
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func code(c int) string {
	if c <= 0 {
		return "none"
	}
	return fmt.Sprint(c)
}

// Difference is one aspect of one case in which fake and real disagree.
type Difference struct {
	Case, Aspect, Fake, Real string
	Known                    *Known // the entry of KNOWN_DIFFERENCES.md that explains it, if any
}

// Known is one entry of KNOWN_DIFFERENCES.md: a table row
//
//	| case pattern | aspect | fake | real | reason |
//
// where the pattern is a case name with * for any text, and fake and real
// are the values (* for any).
type Known struct {
	Pattern, Aspect, Fake, Real, Reason string
	re                                  *regexp.Regexp
	Used                                int
}

// Explains reports whether k explains d.
func (k *Known) Explains(d Difference) bool {
	return k.re.MatchString(d.Case) && (k.Aspect == "*" || k.Aspect == d.Aspect) &&
		(k.Fake == "*" || k.Fake == d.Fake) && (k.Real == "*" || k.Real == d.Real)
}

// ParseKnown reads the table rows of KNOWN_DIFFERENCES.md (rows whose
// first cell is a case pattern in backquotes).
func ParseKnown(r io.Reader) ([]*Known, error) {
	var out []*Known
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 5 {
			return nil, fmt.Errorf("line %d: want 5 cells (case pattern, aspect, fake, real, reason), got %d", n, len(cells))
		}
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "`")
		}
		k := &Known{Pattern: cells[0], Aspect: cells[1], Fake: cells[2], Real: cells[3], Reason: cells[4]}
		if k.Reason == "" {
			return nil, fmt.Errorf("line %d: a known difference needs its reason", n)
		}
		parts := strings.Split(k.Pattern, "*")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		k.re = regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
		out = append(out, k)
	}
	return out, sc.Err()
}

// Compare lists every difference between the two runs of the same cases,
// each with the known entry that explains it (the first that matches).
func Compare(fake, real []harness.Result, known []*Known) []Difference {
	byName := map[string]harness.Result{}
	for _, r := range fake {
		byName[r.Name] = r
	}
	var out []Difference
	for _, rr := range real {
		fr, ok := byName[rr.Name]
		if !ok {
			continue
		}
		for _, a := range Aspects {
			f, r := a.Of(fr), a.Of(rr)
			if f == r {
				continue
			}
			d := Difference{Case: rr.Name, Aspect: a.Name, Fake: f, Real: r}
			for _, k := range known {
				if k.Explains(d) {
					k.Used++
					d.Known = k
					break
				}
			}
			out = append(out, d)
		}
	}
	return out
}

// WriteAgreement writes the agreement table: a row per scenario, a column
// per protocol and mode; "=" where fake and real agree in every aspect,
// "k" where they differ only in known ways, else the aspects that differ.
func WriteAgreement(w io.Writer, real []harness.Result, diffs []Difference) {
	type key struct{ scenario, column string }
	cell := map[key]string{}
	var scenariosOrder, columns []string
	seenS, seenC := map[string]bool{}, map[string]bool{}
	for _, r := range real {
		col := r.ProtocolColumn() + "/" + map[bool]string{true: "tty", false: "notty"}[r.TTY]
		if !seenS[r.Scenario] {
			seenS[r.Scenario] = true
			scenariosOrder = append(scenariosOrder, r.Scenario)
		}
		if !seenC[col] {
			seenC[col] = true
			columns = append(columns, col)
		}
		cell[key{r.Scenario, col}] = "="
	}
	byCase := map[string][]Difference{}
	for _, d := range diffs {
		byCase[d.Case] = append(byCase[d.Case], d)
	}
	for _, r := range real {
		ds := byCase[r.Name]
		if len(ds) == 0 {
			continue
		}
		col := r.ProtocolColumn() + "/" + map[bool]string{true: "tty", false: "notty"}[r.TTY]
		var unknown []string
		for _, d := range ds {
			if d.Known == nil {
				unknown = append(unknown, d.Aspect)
			}
		}
		if len(unknown) == 0 {
			cell[key{r.Scenario, col}] = "k"
		} else {
			sort.Strings(unknown)
			cell[key{r.Scenario, col}] = "DIFF:" + strings.Join(unknown, ",")
		}
	}
	fmt.Fprintf(w, "| scenario | %s |\n|---|%s\n", strings.Join(columns, " | "), strings.Repeat("---|", len(columns)))
	for _, s := range scenariosOrder {
		row := make([]string, len(columns))
		for i, c := range columns {
			row[i] = cell[key{s, c}]
			if row[i] == "" {
				row[i] = "-"
			}
		}
		fmt.Fprintf(w, "| %s | %s |\n", s, strings.Join(row, " | "))
	}
	fmt.Fprintln(w, "\n= fake and real agree in every aspect; k: they differ only as KNOWN_DIFFERENCES.md explains; DIFF: unexplained differences; -: not run")
}

// loadKnown reads e2e/KNOWN_DIFFERENCES.md.
func loadKnown(path string) ([]*Known, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseKnown(f)
}
