package mutants_test

import (
	"context"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

func mustDialect(t *testing.T, name string) *dialect.Dialect {
	t.Helper()
	d, err := dialect.Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// translatorLooksLike is the diagnosis of each translating variant: its
// bug's pattern. The patterns of a translating terminal's own ends are
// proven true here, not by TestPatternsAreTrue.
var translatorLooksLike = map[proxyundertest.TranslatorVariant][]string{
	proxyundertest.EOTOnly:               {"eot-only"},
	proxyundertest.StdinEOFOnly:          {"stdin-eof-only"},
	proxyundertest.TranslatorNoKeepalive: {"no-keepalive"},
	proxyundertest.ExitAsJSON:            {"exit-in-front-encoding"},
	// The correct one, ContextNeverCancelled (its check says it:
	// backend-held) and FallbackOnEveryError (a second shell): none.
}

// translatorKillers is the slice of the dialect matrix that kills every
// broken variant of the translating proxy.
const translatorKillers = `/(disconnect/client-tcp-fin|busy/foreground-sleep|shell/half-typed-line|busy/ignores-interrupt|lb/client-leg/half-open|backend/process-killed)$`

// Each broken variant of the translating proxy is caught, by exactly the
// cases predicted, over each backend transport it applies to, and its
// diagnosis names its bug; the correct one is caught by none and
// diagnosed with nothing.
func TestTranslatorVariantsAreKilled(t *testing.T) {
	if raceEnabled {
		t.Skip("the variants exercise the suite, not the proxy's concurrency: make mutants and make variants run them")
	}
	lost := []string{"disconnect/client-tcp-fin", "busy/foreground-sleep", "shell/half-typed-line", "lb/client-leg/half-open"}
	predicted := map[proxyundertest.TranslatorVariant][]string{
		proxyundertest.TranslatorCorrect:     nil,
		proxyundertest.EOTOnly:               {"busy/foreground-sleep", "shell/half-typed-line"},
		proxyundertest.StdinEOFOnly:          lost,
		proxyundertest.ContextNeverCancelled: {"busy/ignores-interrupt"},
		proxyundertest.TranslatorNoKeepalive: {"lb/client-leg/half-open"},
		proxyundertest.FallbackOnEveryError:  {"backend/process-killed"},
		proxyundertest.ExitAsJSON:            lost,
	}
	d := mustDialect(t, "json-operation")
	all, _ := scenarios.DialectCases(scenarios.All(), d)
	cases := scenarios.Filter{Run: regexp.MustCompile(translatorKillers)}.Apply(all)
	if len(cases) != 6 {
		t.Fatalf("the killer slice has %d cases, want 6", len(cases))
	}
	// Every run at once (they wait on shells and timers, not the CPU),
	// then the verdicts in order.
	type run struct {
		name string
		v    proxyundertest.TranslatorVariant
		rep  *harness.Report
	}
	var runs []*run
	var wg sync.WaitGroup
	variants := append([]proxyundertest.TranslatorVariant{proxyundertest.TranslatorCorrect}, proxyundertest.TranslatorVariants()...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, v := range variants {
		for _, spdy := range []bool{false, true} {
			if spdy && v == proxyundertest.FallbackOnEveryError {
				continue // SPDY alone has no fallback
			}
			name := string(v)
			if v == proxyundertest.TranslatorCorrect {
				name = "correct"
			}
			r := &run{name: name + "/" + map[bool]string{false: "fallback-executor", true: "spdy-executor"}[spdy], v: v}
			runs = append(runs, r)
			wg.Add(1)
			go func() {
				defer wg.Done()
				opts := mutants.WithFront(harness.Options{KeepaliveBound: proxyundertest.SuiteKeepalive})
				r.rep = harness.Run(ctx, mutants.TranslatorTarget(v, d, spdy, nil), cases, opts)
			}()
		}
	}
	wg.Wait()
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			var killed []string
			for _, res := range r.rep.Results {
				if res.Verdict == harness.Error {
					t.Errorf("%s: the suite could not run it: %v", res.Name, res.Failures)
				}
				if res.Failed() {
					killed = append(killed, res.Scenario)
				}
			}
			want := slices.Clone(predicted[r.v])
			slices.Sort(want)
			slices.Sort(killed)
			if !slices.Equal(killed, want) {
				t.Errorf("killed by %v, predicted %v", killed, want)
			}
			// The diagnosis names the variant's bug and nothing else (the
			// correct one's: nothing).
			if got, want := harness.LooksLikeIDs(r.rep), translatorLooksLike[r.v]; !slices.Equal(got, want) {
				t.Errorf("looks like %v, want %v", got, want)
			}
		})
	}
}
