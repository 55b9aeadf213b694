package harness_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/execconform/execconform/harness"
)

func TestLooksLikeNamesKnownBugs(t *testing.T) {
	rep := &harness.Report{Results: []harness.Result{
		{Name: "v4.channel.k8s.io/tty/disconnect/client-tcp-rst", Verdict: harness.Fail, Failures: []string{
			`1 of the session's processes still alive 3s after the ending: pid=1 sid=1 state=S sh -i; after the ending the backend received: text frame on channel 48 "Aw1leGl0DQ==", close 1000; TCP: closed after the close handshake`}},
		{Name: "v5.channel.k8s.io/tty/disconnect/client-tcp-fin", Verdict: harness.Fail, Failures: []string{
			`1 of the session's processes still alive 3s after the ending: pid=2 sid=2 state=S sh -i; after the ending the backend received: close 1000; TCP: closed after the close handshake`}},
		{Name: "v5.channel.k8s.io/tty/disconnect/client-close/1000", Verdict: harness.Pass},
	}}
	assert.Equal(t, []string{
		"looks like: the close handshake is done but no exit is sent (1 failed cases)",
		"looks like: the exit is framed as base64 text on a binary subprotocol (1 failed cases)",
	}, harness.LooksLike(rep))
	assert.Empty(t, harness.LooksLike(&harness.Report{Results: []harness.Result{{Verdict: harness.Pass}}}))
}
