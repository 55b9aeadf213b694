package e2e

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/harness"
)

func result(name, scenario, proto string, tty bool, v harness.Verdict, live int, first string) harness.Result {
	return harness.Result{Name: name, Scenario: scenario, Protocol: proto, TTY: tty, Verdict: v,
		Observed: harness.Observed{LiveProcesses: live, CloseFirstBy: first, ClientCloseCode: 1000, Status: "none"}}
}

func TestCompareExplainsOnlyWhatIsListed(t *testing.T) {
	known, err := ParseKnown(strings.NewReader(`
| case pattern | aspect | fake | real | reason |
|---|---|---|---|---|
| ` + "`none/*`" + ` | verdict | PASS | ERROR | the real API server refuses an exec with no subprotocol |
`))
	require.NoError(t, err)
	fake := []harness.Result{
		result("none/tty/a", "a", "none", true, harness.Pass, 0, "client"),
		result("v4.channel.k8s.io/tty/a", "a", "v4.channel.k8s.io", true, harness.Pass, 0, "client"),
		result("v4.channel.k8s.io/notty/a", "a", "v4.channel.k8s.io", false, harness.Pass, 0, "client"),
	}
	real := []harness.Result{
		result("none/tty/a", "a", "none", true, harness.Error, 0, "client"),
		result("v4.channel.k8s.io/tty/a", "a", "v4.channel.k8s.io", true, harness.Pass, 1, "server"),
		result("v4.channel.k8s.io/notty/a", "a", "v4.channel.k8s.io", false, harness.Pass, 0, "client"),
	}
	diffs := Compare(fake, real, known)
	require.Len(t, diffs, 3)
	assert.Equal(t, Difference{Case: "none/tty/a", Aspect: "verdict", Fake: "PASS", Real: "ERROR", Known: known[0]}, diffs[0])
	assert.Equal(t, "live", diffs[1].Aspect)
	assert.Nil(t, diffs[1].Known, "a difference the file does not list is unexplained")
	assert.Equal(t, "first-close", diffs[2].Aspect)
	assert.Equal(t, 1, known[0].Used)

	var out bytes.Buffer
	WriteAgreement(&out, real, diffs)
	assert.Contains(t, out.String(), "| scenario | none/tty | v4.channel.k8s.io/tty | v4.channel.k8s.io/notty |")
	assert.Contains(t, out.String(), "| a | k | DIFF:first-close,live | = |")
}

func TestParseKnownRejectsRowsWithoutReason(t *testing.T) {
	_, err := ParseKnown(strings.NewReader("| `x/*` | live | true | false | |\n"))
	assert.ErrorContains(t, err, "needs its reason")
	_, err = ParseKnown(strings.NewReader("| `x/*` | live | true |\n"))
	assert.ErrorContains(t, err, "want 5 cells")
}

// The committed list parses, and every entry names a known aspect.
func TestKnownDifferencesFileParses(t *testing.T) {
	f, err := os.Open("KNOWN_DIFFERENCES.md")
	require.NoError(t, err)
	defer f.Close()
	known, err := ParseKnown(f)
	require.NoError(t, err)
	names := map[string]bool{"*": true}
	for _, a := range Aspects {
		names[a.Name] = true
	}
	for _, k := range known {
		assert.True(t, names[k.Aspect], "%s: unknown aspect %q", k.Pattern, k.Aspect)
	}
}

func TestWriteProvidersMarksEachProvider(t *testing.T) {
	known, err := ParseKnown(strings.NewReader("| `*/a` | first-close | * | * | a race |\n"))
	require.NoError(t, err)
	fake := []harness.Result{
		result("p/tty/a", "a", "p", true, harness.Pass, 0, "client"),
		result("p/tty/b", "b", "p", true, harness.Pass, 0, "client"),
	}
	local := []harness.Result{
		result("p/tty/a", "a", "p", true, harness.Pass, 0, "client"),
		result("p/tty/b", "b", "p", true, harness.Pass, 0, "client"),
	}
	kind := []harness.Result{
		result("p/tty/a", "a", "p", true, harness.Pass, 0, "server"), // known
		result("p/tty/b", "b", "p", true, harness.Fail, 1, "client"), // not known
	}
	var b bytes.Buffer
	WriteProviders(&b, []ProviderRun{{"local", local, fake}, {"kind", kind, fake}}, known)
	out := b.String()
	assert.Contains(t, out, "| a | =k |")
	assert.Contains(t, out, "| b | =! |")
	assert.Contains(t, out, "- local: 2 of 2 cases agree")
	assert.Contains(t, out, "- kind: 0 of 2 cases agree")
	assert.Contains(t, out, "3 differences between the real clusters")
	assert.Contains(t, out, `- p/tty/b: live: local "false", kind "true"`)
}

// TestCompareTheNegotiatedProtocol: a case in which the fake negotiates
// another protocol than the real API server for the same offer is a
// difference in the protocol aspect (the fake's execproto.Negotiate, as
// before v5-anywhere, against a 1.30+ server).
func TestCompareTheNegotiatedProtocol(t *testing.T) {
	name := "v5.channel.k8s.io/tty/negotiation/offer/v4-then-v5"
	fake := result(name, "negotiation/offer/v4-then-v5", "v5.channel.k8s.io", true, harness.Fail, 0, "")
	fake.Observed.Protocol = "v4.channel.k8s.io"
	real := result(name, "negotiation/offer/v4-then-v5", "v5.channel.k8s.io", true, harness.Pass, 0, "")
	real.Observed.Protocol = "v5.channel.k8s.io"
	diffs := Compare([]harness.Result{fake}, []harness.Result{real}, nil)
	require.Len(t, diffs, 2)
	assert.Equal(t, Difference{Case: name, Aspect: "protocol", Fake: "v4.channel.k8s.io", Real: "v5.channel.k8s.io"}, diffs[1])
	noSession := result(name, "negotiation/offer/v4-then-v5", "v5.channel.k8s.io", true, harness.Fail, 0, "")
	assert.Equal(t, "no session", Aspects[1].Of(noSession))
}
