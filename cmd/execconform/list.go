package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/scenarios"
)

// listedCase is a case as run --list --json gives it.
type listedCase struct {
	Name        string          `json:"name"`
	Scenario    string          `json:"scenario"`
	Protocol    string          `json:"protocol"`
	Transport   string          `json:"transport,omitempty"` // "spdy", absent for WebSocket
	TTY         bool            `json:"tty"`
	Level       scenarios.Level `json:"level"`
	Description string          `json:"description"`
	// NeedsKeepalive: judged only against a target that declares a
	// keepalive bound (--keepalive); else reported as INFO.
	NeedsKeepalive bool `json:"needs_keepalive,omitempty"`
}

// writeList lists cases: with --json as a JSON array, with --quiet a
// line per case (level and name, for scripts), else a row per scenario
// with its level, the modes and subprotocols it runs in and its
// description, then the totals.
func writeList(w io.Writer, cases []scenarios.Case, o runOptions) error {
	switch {
	case o.json:
		out := make([]listedCase, len(cases))
		for i, c := range cases {
			out[i] = listedCase{Name: c.Name(), Scenario: c.Scenario.Name, Protocol: c.Protocol.String(), TTY: c.TTY,
				Transport: map[bool]string{true: "spdy"}[c.SPDY()],
				Level:     c.Level, Description: c.Scenario.Description, NeedsKeepalive: c.Want.KeepaliveBound}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case o.quiet:
		for _, c := range cases {
			fmt.Fprintf(w, "%-6s %s\n", c.Level, c.Name())
		}
		return nil
	}
	type row struct {
		s         *scenarios.Scenario
		levels    map[bool]scenarios.Level // per tty mode
		modes     []bool
		protocols []execproto.Protocol
		spdy      []execproto.Protocol
		n         int
	}
	var rows []*row
	index := map[*scenarios.Scenario]*row{}
	levels := map[scenarios.Level]int{}
	width := 0
	for _, c := range cases {
		r := index[c.Scenario]
		if r == nil {
			r = &row{s: c.Scenario, levels: map[bool]scenarios.Level{}}
			index[c.Scenario] = r
			rows = append(rows, r)
			width = max(width, len(c.Scenario.Name))
		}
		r.levels[c.TTY] = c.Level
		if !slices.Contains(r.modes, c.TTY) {
			r.modes = append(r.modes, c.TTY)
		}
		switch {
		case c.DialectName() != "":
			// A dialect's one column: its name stands for the protocol.
			if d := execproto.Protocol(c.DialectName()); !slices.Contains(r.protocols, d) {
				r.protocols = append(r.protocols, d)
			}
		case c.SPDY():
			if !slices.Contains(r.spdy, c.Protocol) {
				r.spdy = append(r.spdy, c.Protocol)
			}
		case !slices.Contains(r.protocols, c.Protocol):
			r.protocols = append(r.protocols, c.Protocol)
		}
		r.n++
		levels[c.Level]++
	}
	for _, r := range rows {
		level := string(r.levels[r.modes[0]])
		if len(r.modes) > 1 && r.levels[r.modes[1]] != r.levels[r.modes[0]] {
			level = fmt.Sprintf("%s (%s: %s)", r.levels[r.modes[0]], scenarios.ModeName(r.modes[1]), r.levels[r.modes[1]])
		}
		var modes []string
		for _, m := range r.modes {
			modes = append(modes, scenarios.ModeName(m))
		}
		fmt.Fprintf(w, "%-*s  %-20s %-10s %s · %d %s\n", width, r.s.Name, level, strings.Join(modes, "+"),
			protocolsWord(r.protocols, r.spdy), r.n, plural(r.n, "case", "cases"))
		desc := r.s.Description
		if r.s.Want.KeepaliveBound {
			desc += " Judged only with a keepalive bound (--keepalive; the reference proxy has one): without it, reported as INFO."
		}
		for _, l := range wrap(desc, 96) {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
	var per []string
	for _, l := range []scenarios.Level{scenarios.MUST, scenarios.SHOULD, scenarios.INFO} {
		if levels[l] > 0 {
			per = append(per, fmt.Sprintf("%d %s", levels[l], l))
		}
	}
	fmt.Fprintf(w, "\n%d cases (%d scenarios): %s\n", len(cases), len(rows), strings.Join(per, ", "))
	return nil
}

// protocolsWord names the subprotocols a scenario runs with: "all 6
// subprotocols", or their short names; then its SPDY versions, "+ spdy v4,v2".
func protocolsWord(ps, spdy []execproto.Protocol) string {
	var out string
	if len(ps) == len(execproto.AllProtocols) {
		out = fmt.Sprintf("all %d subprotocols", len(ps))
	} else {
		var names []string
		for _, p := range ps {
			names = append(names, harness.ShortProtocol(p.String()))
		}
		out = strings.Join(names, ",")
	}
	if len(spdy) > 0 {
		var names []string
		for _, p := range spdy {
			names = append(names, harness.ShortProtocol(p.String()))
		}
		if out != "" {
			out += " + "
		}
		out += "spdy " + strings.Join(names, ",")
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
