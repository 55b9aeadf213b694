package scenarios_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/scenarios"
)

// Each reason a cell cannot run in a dialect is given where it holds, and
// only there.
func TestDialectCases(t *testing.T) {
	argo, err := dialect.Builtin("json-operation")
	require.NoError(t, err)
	cases, na := scenarios.DialectCases(scenarios.All(), argo)
	why := map[string]string{}
	for _, n := range na {
		why[n.Name] = n.Why
	}
	for name, reason := range map[string]string{
		"json-operation/tty/negotiation/offer/kubectl-websocket": "a negotiation",
		"json-operation/tty/front-door/rebinding":                "a knock",
		"json-operation/tty/stdin/half-closed-then-drop":         "no stdin close",
		"json-operation/notty/disconnect/client-tcp-fin":         "always has a tty",
	} {
		assert.Contains(t, why[name], reason, name)
	}
	names := map[string]bool{}
	for _, c := range cases {
		names[c.Name()] = true
		assert.Empty(t, why[c.Name()], "a case is not also inapplicable")
	}
	assert.True(t, names["json-operation/tty/shell/bash"], "bash -i in a tty is {shell} bash")
	assert.True(t, names["json-operation/tty/busy/ignores-interrupt"])

	raw, err := dialect.Builtin("raw-binary")
	require.NoError(t, err)
	cases, _ = scenarios.DialectCases(scenarios.All(), raw)
	assert.True(t, slicesHas(cases, "raw-binary/notty/disconnect/client-tcp-fin"), "a tty by request runs notty rows")

	// A dialect without a resize, and one with its own shell.
	resize := scenarios.Scenario{Name: "x/resizes", Level: scenarios.MUST, TTY: []bool{true},
		Script: []scenarios.Action{scenarios.Resize(80, 24)}, End: scenarios.End{Kind: scenarios.EndClientAbort}}
	bash := scenarios.Scenario{Name: "x/bash", Level: scenarios.MUST, TTY: []bool{true}, Command: []string{"bash", "-i"},
		End: scenarios.End{Kind: scenarios.EndClientAbort}}
	portainer, err := dialect.Builtin("raw")
	require.NoError(t, err)
	fixed, err := dialect.Parse([]byte("name: fixed\nbase: json-operation\npath: /t?container={container}\n"))
	require.NoError(t, err)
	_, na = scenarios.DialectCases([]scenarios.Scenario{resize}, portainer)
	require.Len(t, na, 1)
	assert.Contains(t, na[0].Why, "cannot resize")
	_, na = scenarios.DialectCases([]scenarios.Scenario{bash}, fixed)
	require.Len(t, na, 1)
	assert.Contains(t, na[0].Why, "the terminal's own shell")

	// The exec subprotocols: every case, nothing inapplicable.
	all, na := scenarios.DialectCases(scenarios.All(), nil)
	assert.Empty(t, na)
	assert.Len(t, all, len(scenarios.Cases(scenarios.All())))
}

func slicesHas(cs []scenarios.Case, name string) bool {
	for _, c := range cs {
		if strings.EqualFold(c.Name(), name) {
			return true
		}
	}
	return false
}
