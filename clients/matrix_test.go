package clients_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/clients/chromium"
	"github.com/execconform/execconform/clients/clientgo"
	"github.com/execconform/execconform/clients/kubectl"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

// run runs client's matrix (the cells matching only, if not nil, but
// those matching skip) against
// the reference proxy for real clients, variant v.
func run(t *testing.T, d clients.Dialer, v proxyundertest.Variant, only, skip *regexp.Regexp) *harness.Report {
	t.Helper()
	all, na := scenarios.ClientCases(scenarios.ForClient(d.Client()), d.Client())
	require.NotEmpty(t, na, "a real client cannot express every cell")
	cases := scenarios.Filter{Run: only, Skip: skip}.Apply(all)
	require.NotEmpty(t, cases)
	opts := harness.Options{KeepaliveBound: proxyundertest.SuiteKeepalive, RealClient: d.Client(), NotApplicable: na,
		Clients: map[scenarios.Client]clients.Dialer{d.Client(): d}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return harness.Run(ctx, mutants.ClientTarget(v, nil), cases, mutants.WithClientFront(mutants.WithFront(opts)))
}

// requirePass fails for every case of rep that did not pass (INFO cases
// only report).
func requirePass(t *testing.T, rep *harness.Report) {
	t.Helper()
	for _, r := range rep.Results {
		if r.Failed() {
			t.Errorf("%s %s: %s", r.Verdict, r.Name, strings.Join(r.Failures, "; "))
		}
	}
}

// kubectl's whole matrix through the reference proxy (client-go's is
// clients/clientgo's TestReferenceProxy, Chromium's endings its
// TestThroughReferenceProxy): every cell it can express, its own endings
// included, passes.
func TestReferenceProxyMatrices(t *testing.T) {
	kd, err := kubectl.New(kubectl.Options{})
	require.NoError(t, err)
	defer kd.Close()
	var skip *regexp.Regexp
	if raceEnabled {
		// Under the race detector the proxy drains a 1 MiB paste slower
		// than the grace period allows: the case measures the detector
		// (make conformance-clients runs it without).
		skip = regexp.MustCompile(`/busy/paste-in-flight$`)
	}
	rep := run(t, kd, proxyundertest.Correct, nil, skip)
	requirePass(t, rep)
	for _, r := range rep.Results {
		assert.Equal(t, string(scenarios.ClientKubectl), r.RealClient)
	}
}

// The checks fail on a proxy with the bug, through each real client:
// kubectl's SIGTERM and a tab's close leave a live shell behind a proxy
// that sends no exit.
func TestRealClientsCatchNoExit(t *testing.T) {
	kd, err := kubectl.New(kubectl.Options{})
	require.NoError(t, err)
	defer kd.Close()
	cd, err := chromium.New(chromium.Options{})
	require.NoError(t, err)
	defer cd.Close()
	for _, d := range []clients.Dialer{clientgo.New(), kd, cd} {
		t.Run(string(d.Client()), func(t *testing.T) {
			rep := run(t, d, proxyundertest.NoExit, regexp.MustCompile(`/tty/client-own/(sigterm|tab-close)$`), nil)
			require.NotEmpty(t, rep.Results)
			for _, r := range rep.Results {
				assert.Equal(t, harness.Fail, r.Verdict, r.Name)
				assert.True(t, strings.Contains(strings.Join(r.Failures, "; "), "still alive"), "%s: %v", r.Name, r.Failures)
			}
		})
	}
}
