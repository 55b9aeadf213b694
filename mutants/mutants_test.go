package mutants_test

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

func TestMain(m *testing.M) { leakguard.Main(m) }

// killers is a small slice of the matrix that kills every broken variant:
// make mutants runs the whole matrix and reports every killing case.
const killers = `^(v4.channel.k8s.io/tty/disconnect/client-close/1000|v5.channel.k8s.io/tty/(disconnect/client-close/1000|shell/user-types-exit|shell/half-typed-line|busy/stdout-flood|lb/client-leg/half-open|negotiation/unknown-offered-first|front-door/(wrong-credentials|lookalike-origin|foreign-host))|channel.k8s.io/tty/negotiation/offer/v1-then-base64|[^/]+/tty/busy/(paste-in-flight|stdout-flood)|v5.channel.k8s.io/tty/stdin/half-closed-then-drop|spdy/v4.channel.k8s.io/tty/(disconnect/client-tcp-fin|stdin/half-closed-then-drop))$`

// variantRun runs the killers against every variant, once for the tests
// that read it.
var variantRun = sync.OnceValue(func() []mutants.Result {
	cases := scenarios.Filter{Run: regexp.MustCompile(killers)}.Apply(scenarios.Cases(scenarios.All()))
	if len(cases) != 25 {
		panic(fmt.Sprintf("the killers are %d cases, want 25", len(cases)))
	}
	return mutants.Run(context.Background(), proxyundertest.Variants(), cases, harness.Options{}, 4)
})

// TestEveryVariantIsKilled: every broken variant fails at least one MUST
// or SHOULD case (or leaks goroutines), and the reference proxy none; and
// the report names each one's bug.
func TestEveryVariantIsKilled(t *testing.T) {
	if raceEnabled {
		t.Skip("the variants exercise the suite, not the proxy's concurrency: make mutants and make variants run them")
	}
	results := variantRun()
	var table bytes.Buffer
	mutants.Write(&table, results)
	t.Logf("\n%s", table.String())
	for _, r := range results {
		assert.Empty(t, r.Errors, "%s", r.Variant)
		if r.Variant == proxyundertest.Correct {
			assert.False(t, r.Killed, "the reference proxy was killed by %v (leaked %d goroutines, %d files)", r.By, r.LeakedGoroutines, r.LeakedFiles)
			continue
		}
		assert.True(t, r.Killed, "variant %s survived", r.Variant)
	}
}

// TestPatternsAreTrue: every "looks like" is shown by the variant that has
// its bug, and by no variant without it, nor by the reference proxy. A
// variant whose bug also leaves other true evidence behind (a drop with
// unread data is a reset; a writer's panic drops the exit) may show that
// pattern too, as listed.
//
// An exit that never ends the shell under a stdout flood costs the proxy
// half its close bound waiting for it; on a loaded machine the rest of the
// bound can run out while it drains the flood, and the proxy then closes
// with unread data, a true reset (seen in 2 of 3 make test runs of this
// test with the front-door rows added, in 1 case of 22 each).
func TestPatternsAreTrue(t *testing.T) {
	if raceEnabled {
		t.Skip("the variants exercise the suite, not the proxy's concurrency: make mutants and make variants run them")
	}
	type want struct {
		shows []string // the patterns it must show
		may   []string // and may show
	}
	lostExitUnderFlood := []string{"backend-reset"}
	wants := map[proxyundertest.Variant]want{
		proxyundertest.Correct:             {},
		proxyundertest.NoExit:              {shows: []string{"dropped-silently"}, may: []string{"backend-reset"}},
		proxyundertest.AlwaysBase64Exit:    {shows: []string{"base64-exit-on-binary"}, may: lostExitUnderFlood},
		proxyundertest.ExitThenDrop:        {shows: []string{"exit-then-drop"}, may: []string{"backend-reset"}},
		proxyundertest.CloseNoExit:         {shows: []string{"close-no-exit"}},
		proxyundertest.ExitCloseNoDrain:    {shows: []string{"backend-reset"}, may: []string{"dropped-silently"}},
		proxyundertest.ExitOnStdout:        {shows: []string{"exit-on-stdout"}, may: lostExitUnderFlood},
		proxyundertest.ExitNoNewline:       {shows: []string{"exit-no-newline"}, may: lostExitUnderFlood},
		proxyundertest.ExitNoInterrupt:     {shows: []string{"no-interrupt"}, may: lostExitUnderFlood},
		proxyundertest.NoKeepalive:         {shows: []string{"no-keepalive"}},
		proxyundertest.CloseNotRelayed:     {shows: []string{"close-not-relayed"}},
		proxyundertest.FirstProtocolOnly:   {shows: []string{"negotiation"}},
		proxyundertest.SortedOffers:        {shows: []string{"negotiation"}},
		proxyundertest.EchoClientProtocol:  {shows: []string{"negotiation"}},
		proxyundertest.ExitConcurrentWrite: {shows: []string{"second-writer"}, may: []string{"dropped-silently", "backend-reset"}},
		proxyundertest.FragmentedInput:     {shows: []string{"fragmented"}},
		proxyundertest.LeakGoroutine:       {},
		proxyundertest.FDLeak:              {},
		// The front door's failures speak for themselves (the knock that
		// got in): no pattern.
		proxyundertest.NoFrontAuth:           {},
		proxyundertest.FrontAuthPresenceOnly: {},
		proxyundertest.NoOriginCheck:         {},
		proxyundertest.OriginPrefixMatch:     {},
		proxyundertest.NoHostCheck:           {},
		proxyundertest.OpenDoor:              {},
		// A tunnel passes the client's goodbye on as it came: nothing
		// (FIN, RST) or GOAWAY, and a tty's stdin half-close too.
		proxyundertest.SPDYTunnel:            {shows: []string{"dropped-silently"}, may: []string{"close-no-exit", "tty-stdin-closed", "backend-reset"}},
		proxyundertest.WebSocketOnly:         {shows: []string{"no-spdy"}},
		proxyundertest.TTYHalfCloseForwarded: {shows: []string{"tty-stdin-closed"}},
	}
	shown := map[string]bool{}
	for _, r := range variantRun() {
		w, ok := wants[r.Variant]
		if !assert.True(t, ok, "variant %s: say which patterns it shows", r.Variant) {
			continue
		}
		for _, id := range w.shows {
			assert.Contains(t, r.LooksLikeIDs, id, "variant %s must show its bug (it showed %v)", r.Variant, r.LooksLikeIDs)
		}
		for _, id := range r.LooksLikeIDs {
			shown[id] = true
			assert.True(t, slices.Contains(w.shows, id) || slices.Contains(w.may, id), "variant %s shows %q, a bug it does not have (%v)", r.Variant, id, r.LooksLike)
		}
	}
	for _, ids := range translatorLooksLike {
		for _, id := range ids {
			shown[id] = true // by a translating variant (TestTranslatorVariantsAreKilled)
		}
	}
	for _, p := range harness.Patterns {
		assert.True(t, shown[p.ID], "pattern %s: no variant shows it, so nothing proves it true", p.ID)
	}
}
