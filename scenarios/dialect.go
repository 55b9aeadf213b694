package scenarios

import (
	"fmt"
	"slices"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/execproto"
)

// NotApplicable is a cell that cannot run in a dialect, and why: listed
// in the matrix's reports, never silently dropped.
type NotApplicable struct {
	Name string `json:"name"` // the case name it would have had
	Why  string `json:"why"`
}

// NotApplicableGroup is the cells that cannot run for one reason.
type NotApplicableGroup struct {
	Why   string
	Names []string
}

// ByWhy groups cells by why they cannot run, in the order the reasons
// first appear.
func ByWhy(na []NotApplicable) []NotApplicableGroup {
	var out []NotApplicableGroup
	index := map[string]int{}
	for _, n := range na {
		i, ok := index[n.Why]
		if !ok {
			i = len(out)
			index[n.Why] = i
			out = append(out, NotApplicableGroup{Why: n.Why})
		}
		out[i].Names = append(out[i].Names, n.Name)
	}
	return out
}

// DialectApplies says whether scenario s in tty mode can run through a
// front that speaks d, and if not why. Everything whose meaning survives
// the dialect runs unchanged: the script types, waits for output and
// resizes through the dialect; the endings are the same TCP and
// WebSocket endings; the judge reads the backend leg as ever.
func DialectApplies(s *Scenario, tty bool, d *dialect.Dialect) (bool, string) {
	switch {
	case s.Offer != nil || len(s.OfferFirst) > 0 || s.SPDYOffer != nil:
		return false, "a negotiation of the exec subprotocols: the dialect's front has none (its backend transport is its executor's)"
	case s.Knock != "":
		return false, "a knock on the pass-through front (the exec path, the API): not the dialect's paths"
	case !tty && d.TTY == dialect.TTYAlways:
		return false, fmt.Sprintf("dialect %s always has a tty", d.Name)
	}
	for _, a := range s.Script {
		switch {
		case a.Kind == ActCloseStdin:
			return false, fmt.Sprintf("dialect %s has no stdin close", d.Name)
		case a.Kind == ActResize && d.Resize == nil:
			return false, fmt.Sprintf("dialect %s cannot resize", d.Name)
		}
	}
	if s.Command != nil {
		switch d.CommandMode() {
		case "fixed":
			return false, fmt.Sprintf("dialect %s runs the terminal's own shell, not %q", d.Name, s.Command)
		case "shell":
			if len(s.Command) > 1 && !(tty && slices.Equal(s.Command[1:], []string{"-i"})) {
				return false, fmt.Sprintf("dialect %s carries one word of a command, not %q", d.Name, s.Command)
			}
		}
	}
	return true, ""
}

// DialectCases expands the table for a front that speaks d: one case per
// scenario and tty mode that applies (DialectApplies), in table order,
// and the cells that do not apply. The case's Protocol is empty: the
// backend's protocol is whatever the proxy's executor negotiates. A nil
// or Kubernetes d is Cases (nothing is inapplicable).
func DialectCases(table []Scenario, d *dialect.Dialect) ([]Case, []NotApplicable) {
	if d.IsKubernetes() {
		return Cases(table), nil
	}
	var out []Case
	var na []NotApplicable
	for i := range table {
		s := &table[i]
		for _, tty := range s.TTY {
			c := Case{Scenario: s, Transport: execproto.TransportWebSocket, TTY: tty, Level: s.Level, Want: s.Want, Dialect: d}
			if !tty && s.NoTTY != nil {
				c.Level, c.Want = s.NoTTY.Level, s.NoTTY.Want
			}
			if ok, why := DialectApplies(s, tty, d); !ok {
				na = append(na, NotApplicable{Name: c.Name(), Why: why})
				continue
			}
			out = append(out, c)
		}
	}
	return out, na
}
