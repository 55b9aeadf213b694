package e2e

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/execconform/execconform/harness"
)

// ProviderRun is one provider's run of the reference proxy's cases: the
// real cluster's results, and the fake API server's for the same cases in
// the same run.
type ProviderRun struct {
	Provider   string // local, kind, cluster
	Real, Fake []harness.Result
}

// WriteProviders writes the table that puts the providers side by side:
// for each scenario and column, one mark per provider, in the order given:
// "=" where that provider's cluster agrees with the fake in every aspect,
// "k" where it differs only as KNOWN_DIFFERENCES.md explains, "!" where it
// differs otherwise, "." where it did not run the case. Then every case
// where two real providers differ from each other, aspect by aspect: the
// differences between clusters that the fake is not part of.
func WriteProviders(w io.Writer, runs []ProviderRun, known []*Known) {
	type key struct{ scenario, column string }
	var names []string
	marks := map[key][]byte{}
	var scenarioOrder, columns []string
	seenS, seenC := map[string]bool{}, map[string]bool{}
	column := func(r harness.Result) string {
		return r.ProtocolColumn() + "/" + map[bool]string{true: "tty", false: "notty"}[r.TTY]
	}
	for i, run := range runs {
		names = append(names, run.Provider)
		bad := map[string]byte{}
		for _, d := range Compare(run.Fake, run.Real, known) {
			if d.Known == nil {
				bad[d.Case] = '!'
			} else if bad[d.Case] == 0 {
				bad[d.Case] = 'k'
			}
		}
		for _, r := range run.Real {
			k := key{r.Scenario, column(r)}
			if !seenS[r.Scenario] {
				seenS[r.Scenario] = true
				scenarioOrder = append(scenarioOrder, r.Scenario)
			}
			if !seenC[k.column] {
				seenC[k.column] = true
				columns = append(columns, k.column)
			}
			if marks[k] == nil {
				marks[k] = []byte(strings.Repeat(".", len(runs)))
			}
			m := byte('=')
			if b := bad[r.Name]; b != 0 {
				m = b
			}
			marks[k][i] = m
		}
	}
	fmt.Fprintf(w, "Each cell: one mark per provider (%s): = agrees with the fake API server in every aspect, k differs only as KNOWN_DIFFERENCES.md explains, ! differs otherwise, . not run.\n\n", strings.Join(names, ", "))
	fmt.Fprintf(w, "| scenario | %s |\n|---|%s\n", strings.Join(columns, " | "), strings.Repeat("---|", len(columns)))
	for _, s := range scenarioOrder {
		row := make([]string, len(columns))
		for i, c := range columns {
			row[i] = string(marks[key{s, c}])
			if row[i] == "" {
				row[i] = "-"
			}
		}
		fmt.Fprintf(w, "| %s | %s |\n", s, strings.Join(row, " | "))
	}
	fmt.Fprintln(w)
	for _, run := range runs {
		agree := map[string]bool{}
		for _, r := range run.Real {
			agree[r.Name] = true
		}
		for _, d := range Compare(run.Fake, run.Real, known) {
			delete(agree, d.Case)
		}
		fmt.Fprintf(w, "- %s: %d of %d cases agree with the fake in every aspect\n", run.Provider, len(agree), len(run.Real))
	}
	// Real against real: the first provider is the reference.
	var between []string
	for i := 1; i < len(runs); i++ {
		for _, d := range Compare(runs[0].Real, runs[i].Real, nil) {
			between = append(between, fmt.Sprintf("- %s: %s: %s %q, %s %q", d.Case, d.Aspect, runs[0].Provider, d.Fake, runs[i].Provider, d.Real))
		}
	}
	sort.Strings(between)
	if len(runs) > 1 {
		fmt.Fprintf(w, "\n%d differences between the real clusters:\n", len(between))
		for _, b := range between {
			fmt.Fprintln(w, b)
		}
	}
}
