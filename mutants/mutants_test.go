package mutants_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

func TestMain(m *testing.M) { leakguard.Main(m) }

// killers is a small slice of the matrix that kills every broken variant:
// make mutants runs the whole matrix and reports every killing case.
const killers = `^(v4.channel.k8s.io/tty/disconnect/client-close/1000|v5.channel.k8s.io/tty/(disconnect/client-close/1000|shell/user-types-exit|busy/stdout-flood|lb/client-leg/half-open|negotiation/unknown-offered-first)|channel.k8s.io/tty/negotiation/offer/v1-then-base64|[^/]+/tty/busy/(paste-in-flight|stdout-flood))$`

// TestEveryVariantIsKilled: every broken variant fails at least one MUST
// or SHOULD case (or leaks goroutines), and the reference proxy none; and
// the report names each one's bug.
func TestEveryVariantIsKilled(t *testing.T) {
	if raceEnabled {
		t.Skip("the variants exercise the suite, not the proxy's concurrency: make mutants and make variants run them")
	}
	cases := scenarios.Filter{Run: regexp.MustCompile(killers)}.Apply(scenarios.Cases(scenarios.All()))
	require.Len(t, cases, 18)
	results := mutants.Run(context.Background(), proxyundertest.Variants(), cases, harness.Options{}, 4)
	var table bytes.Buffer
	mutants.Write(&table, results)
	t.Logf("\n%s", table.String())
	// What each variant's report must recognise.
	looks := map[proxyundertest.Variant]string{
		proxyundertest.NoExit:              "neither an exit nor a close frame",
		proxyundertest.AlwaysBase64Exit:    "base64 text on a binary subprotocol",
		proxyundertest.ExitThenDrop:        "dropped without a close frame",
		proxyundertest.CloseNoExit:         "no exit is sent",
		proxyundertest.ExitOnStdout:        "on stdout",
		proxyundertest.ExitNoNewline:       "no line ending",
		proxyundertest.NoKeepalive:         "no keepalive",
		proxyundertest.CloseNotRelayed:     "not relayed",
		proxyundertest.FirstProtocolOnly:   "negotiation",
		proxyundertest.EchoClientProtocol:  "negotiation",
		proxyundertest.SortedOffers:        "negotiation",
		proxyundertest.LeakGoroutine:       "goroutine leaked",
		proxyundertest.ExitConcurrentWrite: "second writer",
		proxyundertest.FragmentedInput:     "continuation frames",
	}
	for _, r := range results {
		assert.Empty(t, r.Errors, "%s", r.Variant)
		if r.Variant == proxyundertest.Correct {
			assert.False(t, r.Killed, "the reference proxy was killed by %v (leaked %d goroutines, %d files)", r.By, r.LeakedGoroutines, r.LeakedFiles)
			continue
		}
		assert.True(t, r.Killed, "variant %s survived", r.Variant)
		if want, ok := looks[r.Variant]; ok {
			assert.Contains(t, strings.Join(r.LooksLike, "\n"), want, "variant %s: the report must recognise its bug", r.Variant)
		}
	}
}
