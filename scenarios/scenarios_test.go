package scenarios_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/scenarios"
)

var namePattern = regexp.MustCompile(`^[a-z0-9-]+(/[a-z0-9-]+)*$`)

// TestTableIsWellFormed: every scenario has a unique slash-path name, a
// level, a description, a tty mode, an ending and an expectation that can
// fail.
func TestTableIsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range scenarios.All() {
		t.Run(s.Name, func(t *testing.T) {
			assert.Regexp(t, namePattern, s.Name)
			assert.False(t, seen[s.Name], "duplicate name")
			seen[s.Name] = true
			assert.Contains(t, []scenarios.Level{scenarios.MUST, scenarios.SHOULD, scenarios.INFO}, s.Level)
			assert.NotEmpty(t, s.Description)
			assert.NotEmpty(t, s.TTY, "at least one tty mode")
			assert.NotEmpty(t, s.End.Kind)
			if s.End.Kind == scenarios.EndClientClose {
				assert.NotZero(t, s.End.Code)
			}
			if s.Level != scenarios.INFO {
				assert.True(t, expectsSomething(s.Want), "an outcome that can fail: %+v", s.Want)
			}
			if s.NoTTY != nil {
				assert.NotEmpty(t, s.NoTTY.Why)
				assert.Contains(t, s.TTY, false, "an override for a mode the scenario does not run")
			}
			for _, a := range s.Script {
				assert.NotEmpty(t, a.Kind)
			}
		})
	}
}

// expectsSomething: a checked outcome. LiveProcesses is always checked
// (0 shells), so every outcome with 0 qualifies; others must check more.
func expectsSomething(o scenarios.Outcome) bool {
	return (o.LiveProcesses == 0 && !o.AnyLive) || o.ReleaseWithin > 0 || o.BackendCloseHandshake || o.ClientCloseCode != 0 || o.ClientClosed || o.ExitCode != nil
}

func TestCasesExpandProtocolsAndModes(t *testing.T) {
	table := []scenarios.Scenario{{
		Name: "a", Level: scenarios.SHOULD, TTY: []bool{true, false},
		NoTTY: &scenarios.Override{Level: scenarios.INFO, Want: scenarios.Outcome{LiveProcesses: 2}, Why: "x"},
	}}
	cases := scenarios.Cases(table)
	require.Len(t, cases, 2*len(execproto.AllProtocols))
	assert.Equal(t, "none/tty/a", cases[0].Name())
	assert.Equal(t, scenarios.SHOULD, cases[0].Level)
	assert.Equal(t, "none/notty/a", cases[1].Name())
	assert.Equal(t, scenarios.INFO, cases[1].Level)
	assert.Equal(t, 2, cases[1].Want.LiveProcesses)
	assert.Equal(t, scenarios.DefaultCommand, cases[0].Command())
}

func TestFilter(t *testing.T) {
	all := scenarios.Cases(scenarios.All())
	f := scenarios.Filter{Run: regexp.MustCompile(`^v5\.channel\.k8s\.io/tty/`), Levels: []scenarios.Level{scenarios.MUST}}
	got := f.Apply(all)
	require.NotEmpty(t, got)
	for _, c := range got {
		assert.Equal(t, execproto.ProtocolV5, c.Protocol)
		assert.True(t, c.TTY)
		assert.Equal(t, scenarios.MUST, c.Level)
	}
	got = scenarios.Filter{Protocols: []execproto.Protocol{execproto.ProtocolNone}}.Apply(all)
	for _, c := range got {
		assert.Equal(t, execproto.ProtocolNone, c.Protocol)
	}
}

// TestEveryCaseGetsWhatTheAPIServerPicks: the client's offer in every case
// negotiates (as the fake and a real API server do) to the case's protocol,
// so the protocol in a case's name is what a correct proxy must answer.
func TestEveryCaseGetsWhatTheAPIServerPicks(t *testing.T) {
	for _, c := range scenarios.Cases(scenarios.All()) {
		negotiate := execproto.Negotiate
		if c.SPDY() {
			negotiate = execproto.NegotiateSPDY
		}
		got, err := negotiate(c.Offer())
		require.NoError(t, err, c.Name())
		assert.Equal(t, c.Protocol, got, "%s: offer %q", c.Name(), c.Offer())
	}
}

// TestRealOffers: the offers of real clients are rows of their own, each
// with its whole offer, in the protocol the API server picks, with a tty.
func TestRealOffers(t *testing.T) {
	want := map[string]execproto.Protocol{
		"kubectl-websocket":  execproto.ProtocolV5,
		"v5-then-v4":         execproto.ProtocolV5,
		"v4-then-v5":         execproto.ProtocolV5,
		"spdy-version-list":  execproto.ProtocolV5,
		"headlamp":           execproto.ProtocolV4,
		"browser-base64":     execproto.ProtocolBase64,
		"v1-then-base64":     execproto.ProtocolV1,
		"browser-with-token": execproto.ProtocolBase64,
		"console-extras":     execproto.ProtocolV4Base64,
	}
	offers := map[string]string{}
	got := map[string]execproto.Protocol{}
	for _, c := range scenarios.Cases(scenarios.Negotiation()) {
		name, ok := strings.CutPrefix(c.Scenario.Name, "negotiation/offer/")
		if !ok {
			continue
		}
		assert.Nil(t, c.Scenario.Protocols, "%s: the offer decides the protocol", name)
		assert.True(t, c.TTY, name)
		assert.Equal(t, scenarios.EndClientAbort, c.Scenario.End.Kind, "%s: a drop ends it", name)
		key := strings.Join(c.Offer(), ", ")
		assert.Empty(t, offers[key], "%s offers what %s does", name, offers[key])
		offers[key] = name
		got[name] = c.Protocol
	}
	assert.Equal(t, want, got)
	token := scenarios.Case{Scenario: &scenarios.Scenario{Offer: []string{scenarios.OfferToken, "channel.k8s.io"}}}
	assert.Equal(t, execproto.RedactedBearer, token.Offer()[0], "the token's place is spelt as outputs show it")
}

func TestCasesTakeTheProtocolFromTheOffer(t *testing.T) {
	cases := scenarios.Cases([]scenarios.Scenario{{Name: "x", TTY: []bool{true}, Offer: []string{"chat", "v4.channel.k8s.io", "v5.channel.k8s.io"}}})
	require.Len(t, cases, 1)
	assert.Equal(t, "v5.channel.k8s.io/tty/x", cases[0].Name())
	assert.Panics(t, func() { scenarios.Cases([]scenarios.Scenario{{Name: "y", TTY: []bool{true}, Offer: []string{"chat"}}}) })
}

// TestSPDYAxis: the rows of the SPDY axis run over SPDY too, in their
// versions and under a name of their own, and the SPDY filters select them.
func TestSPDYAxis(t *testing.T) {
	all := scenarios.Cases(scenarios.All())
	names := map[string]bool{}
	var spdy []scenarios.Case
	for _, c := range all {
		assert.False(t, names[c.Name()], "two cases named %s", c.Name())
		names[c.Name()] = true
		if c.SPDY() {
			spdy = append(spdy, c)
			assert.True(t, strings.HasPrefix(c.Name(), "spdy/"), c.Name())
			assert.True(t, execproto.SPDYSupported(c.Protocol), c.Name())
		}
	}
	require.NotEmpty(t, spdy)
	assert.True(t, names["spdy/v4.channel.k8s.io/tty/disconnect/client-tcp-fin"])
	assert.True(t, names["spdy/v2.channel.k8s.io/notty/shell/user-types-exit"])
	assert.True(t, names["v4.channel.k8s.io/tty/disconnect/client-tcp-fin"], "the WebSocket case keeps its name")
	assert.False(t, names["spdy/v4.channel.k8s.io/tty/disconnect/client-close/1001"], "SPDY has one clean close")

	got := scenarios.Filter{Transports: []execproto.Transport{execproto.TransportSPDY}}.Apply(all)
	assert.Len(t, got, len(spdy))
	got = scenarios.Filter{Protocols: []execproto.Protocol{execproto.ProtocolV4}}.Apply(all)
	for _, c := range got {
		assert.False(t, c.SPDY(), "--protocol v4.channel.k8s.io means the WebSocket subprotocol: %s", c.Name())
	}
	got = scenarios.Filter{SPDYProtocols: []execproto.Protocol{execproto.SPDYProtocolV2}}.Apply(all)
	require.NotEmpty(t, got)
	for _, c := range got {
		assert.True(t, c.SPDY() && c.Protocol == execproto.SPDYProtocolV2, c.Name())
	}
	got = scenarios.Filter{Transports: []execproto.Transport{execproto.TransportWebSocket}}.Apply(all)
	for _, c := range got {
		assert.False(t, c.SPDY(), c.Name())
	}
}
