package mutants_test

import (
	"context"
	"testing"
	"time"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

// The translating reference proxy passes every case of its dialect's
// matrix, over both of client-go's backend transports.
func TestTranslator(t *testing.T) {
	d := mustDialect(t, "json-operation")
	cases, na := scenarios.DialectCases(scenarios.All(), d)
	if len(cases) == 0 || len(na) == 0 {
		t.Fatalf("%d cases, %d not applicable", len(cases), len(na))
	}
	for _, spdy := range []bool{false, true} {
		name := map[bool]string{false: "fallback-executor", true: "spdy-executor"}[spdy]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			opts := mutants.WithFront(harness.Options{KeepaliveBound: proxyundertest.SuiteKeepalive})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			rep := harness.Run(ctx, mutants.TranslatorTarget("", d, spdy, nil), cases, opts)
			want := "v5.channel.k8s.io"
			if spdy {
				want = "v4.channel.k8s.io"
			}
			for _, r := range rep.Results {
				if r.Failed() {
					t.Errorf("%s: %s %v\nevidence: %v\nnotes: %v", r.Name, r.Verdict, r.Failures, r.Evidence, r.Notes)
				}
				if r.Observed.Protocol != want && r.Observed.Protocol != "" {
					t.Errorf("%s: the backend negotiated %q, want %q", r.Name, r.Observed.Protocol, want)
				}
			}
		})
	}
}

func mustDialect(t *testing.T, name string) *dialect.Dialect {
	t.Helper()
	d, err := dialect.Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
