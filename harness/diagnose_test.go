package harness_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
)

// failed is a failed result of protocol p with findings fs.
func failed(name, p string, tty bool, fs ...harness.Finding) harness.Result {
	return harness.Result{Name: name, Protocol: p, TTY: tty, Verdict: harness.Fail, Findings: fs, Client: harness.ClientView{CloseCode: -1}}
}

func live(in harness.BackendInput) harness.Finding {
	return harness.Finding{Check: harness.CheckLive, Message: "whatever the words", Input: &in}
}

// TestPatternsReadEvidence: each pattern matches the evidence of its bug,
// whatever the messages say, and the evidence of the others does not make
// it match. (mutants.TestPatternsAreTrue shows the same on the variants
// that have the bugs, and on the reference proxy.)
func TestPatternsReadEvidence(t *testing.T) {
	closed := fakeapiserver.TCPAfterClose
	for _, tc := range []struct {
		name string
		r    harness.Result
		want []string
	}{
		{"base64 exit on v4", failed("a", "v4.channel.k8s.io", true, live(harness.BackendInput{
			Other: []harness.InputFrame{{Opcode: "text", Channel: '0', Payload: "Aw1leGl0DQ=="}}, CloseCode: 1000, TCP: closed})),
			[]string{"base64-exit-on-binary"}},
		{"exit on stdout", failed("a", "v5.channel.k8s.io", true, live(harness.BackendInput{
			Other: []harness.InputFrame{{Opcode: "binary", Channel: 1, Payload: "\x03\rexit\r"}}, CloseCode: 1000, TCP: closed})),
			[]string{"exit-on-stdout"}},
		{"no newline", failed("a", "v5.channel.k8s.io", true, live(harness.BackendInput{Stdin: "exit", CloseCode: 1000, TCP: closed})),
			[]string{"exit-no-newline"}},
		{"dropped", failed("a", "v5.channel.k8s.io", true, live(harness.BackendInput{TCP: fakeapiserver.TCPEOF})),
			[]string{"dropped-silently"}},
		{"dropped behind a paste in flight", failed("a", "v5.channel.k8s.io", true, live(harness.BackendInput{Stdin: "pasted text\r", TCP: fakeapiserver.TCPEOF})),
			[]string{"dropped-silently"}},
		{"close, no exit", failed("a", "v5.channel.k8s.io", true, live(harness.BackendInput{CloseCode: 1000, TCP: closed})),
			[]string{"close-no-exit"}},
		{"exit then drop", failed("a", "v5.channel.k8s.io", false, harness.Finding{Check: harness.CheckBackendNoClose,
			Input: &harness.BackendInput{Stdin: "exit\n", TCP: fakeapiserver.TCPEOF}}),
			[]string{"exit-then-drop"}},
		{"no Ctrl-C", failed("a", "v5.channel.k8s.io", true, live(harness.BackendInput{Stdin: "exit\r", CloseCode: 1000, TCP: closed})),
			[]string{"no-interrupt"}},
		{"the reference's exit, lost all the same, is not a bug we know", failed("a", "v5.channel.k8s.io", true,
			live(harness.BackendInput{Stdin: "\x03\rexit\r", CloseCode: 1000, TCP: closed})), nil},
		{"no Ctrl-C on pipes is no bug", failed("a", "v5.channel.k8s.io", false, live(harness.BackendInput{Stdin: "exit\n", CloseCode: 1000, TCP: closed})), nil},
		{"reset after close", failed("a", "v5.channel.k8s.io", true, harness.Finding{Check: harness.CheckBackendReset}),
			[]string{"backend-reset"}},
		{"fragmented", failed("a", "v5.channel.k8s.io", true, harness.Finding{Check: harness.CheckFragmented}), []string{"fragmented"}},
		{"wrong protocol", failed("a", "v5.channel.k8s.io", true, harness.Finding{Check: harness.CheckWrongProtocol}), []string{"negotiation"}},
		{"a 403 for one offered name is auth, not negotiation", failed("a", "v5.channel.k8s.io", true,
			harness.Finding{Check: harness.CheckUpgradeRefused, HTTPStatus: 403}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, bugs := harness.Diagnose(tc.r)
			assert.Equal(t, tc.want, ids)
			assert.Len(t, bugs, len(tc.want))
		})
	}

	t.Run("a half-open client never noticed", func(t *testing.T) {
		r := failed("a", "v5.channel.k8s.io", true, harness.Finding{Check: harness.CheckBackendOpen, Input: &harness.BackendInput{}})
		ids, _ := harness.Diagnose(r)
		assert.Empty(t, ids, "only for a case that needs the keepalive")
		r.NeedsKeepalive = true
		ids, _ = harness.Diagnose(r)
		assert.Equal(t, []string{"no-keepalive"}, ids)
	})
	t.Run("the backend's close not relayed", func(t *testing.T) {
		r := failed("a", "v5.channel.k8s.io", true, harness.Finding{Check: harness.CheckClientNoClose})
		ids, _ := harness.Diagnose(r)
		assert.Empty(t, ids, "the backend sent no close: nothing to relay")
		r.Observed.CloseFirstBy, r.Observed.ServerCloseCode = "server", 1000
		ids, _ = harness.Diagnose(r)
		assert.Empty(t, ids, "the backend's close never reached the proxy (a dead backend leg): nothing to relay")
		r.Observed.TargetCloseCode = 1000
		ids, _ = harness.Diagnose(r)
		assert.Equal(t, []string{"close-not-relayed"}, ids)
	})
	t.Run("a second writer needs its panic", func(t *testing.T) {
		r := failed("busy/paste-in-flight", "v5.channel.k8s.io", true, live(harness.BackendInput{TCP: fakeapiserver.TCPEOF}))
		ids, _ := harness.Diagnose(r)
		assert.Equal(t, []string{"dropped-silently"}, ids, "no exit was sent: not a second writer")
		r.TargetPanic = "concurrent write to websocket connection"
		ids, _ = harness.Diagnose(r)
		assert.Equal(t, []string{"dropped-silently", "second-writer"}, ids)
	})
}

func TestLooksLikeCountsCases(t *testing.T) {
	base64 := live(harness.BackendInput{Other: []harness.InputFrame{{Opcode: "text", Channel: '0', Payload: "Aw1leGl0DQ=="}}, CloseCode: 1000})
	noExit := live(harness.BackendInput{CloseCode: 1000})
	rep := &harness.Report{Results: []harness.Result{
		failed("v4.channel.k8s.io/tty/disconnect/client-tcp-rst", "v4.channel.k8s.io", true, base64),
		failed("v5.channel.k8s.io/tty/disconnect/client-tcp-fin", "v5.channel.k8s.io", true, noExit),
		failed("v5.channel.k8s.io/tty/disconnect/client-tcp-rst", "v5.channel.k8s.io", true, noExit),
		{Name: "v5.channel.k8s.io/tty/disconnect/client-close/1000", Verdict: harness.Pass, Findings: []harness.Finding{noExit}},
	}}
	assert.Equal(t, []string{
		"looks like: the close handshake is done but no exit is sent (2 failed cases)",
		"looks like: the exit is framed as base64 text on a binary subprotocol (1 failed cases)",
	}, harness.LooksLike(rep))
	assert.Equal(t, []string{"base64-exit-on-binary", "close-no-exit"}, harness.LooksLikeIDs(rep))
	assert.Empty(t, harness.LooksLike(&harness.Report{Results: []harness.Result{{Verdict: harness.Pass}}}))
}
