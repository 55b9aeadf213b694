//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/clients/clientgo"
	"github.com/execconform/execconform/clients/kubectl"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/realapiserver"
	"github.com/execconform/execconform/scenarios"
)

// provider names the cluster the tests run against (E2E_PROVIDER, set by
// e2e-provider; scripts/e2e-local.sh's is "local").
func provider() string { return getenv("E2E_PROVIDER", "local") }

// reportRoot is where e2e runs write their results (E2E_REPORT_DIR, default
// ../e2e-report from this package's directory): a directory per provider,
// and the table of all providers.
func reportRoot() string { return getenv("E2E_REPORT_DIR", filepath.Join("..", "e2e-report")) }

// reportDir is this provider's directory of results.
func reportDir(t *testing.T) string {
	dir := filepath.Join(reportRoot(), provider())
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

func writeJSON(t *testing.T, name string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(reportDir(t), name), b, 0o644))
}

// TestReferenceProxy runs the cases through the reference proxy into the
// real pod: it must pass every MUST and SHOULD case. Then the same cases
// run against the fake API server, and every aspect in which the two
// outcomes differ must be explained in KNOWN_DIFFERENCES.md.
func TestReferenceProxy(t *testing.T) {
	srv := realServer(t)
	cases := e2eCases(t)
	real := run(t, srv, proxyundertest.Correct, cases)
	fake := run(t, nil, proxyundertest.Correct, cases)
	writeJSON(t, "reference-real.json", real)
	writeJSON(t, "reference-fake.json", fake)
	var matrix bytes.Buffer
	harness.WriteMatrix(&matrix, real)
	harness.WriteReapStats(&matrix, real)
	t.Logf("real cluster (%s), reference proxy: %s\n%s", provider(), real.Duration.Round(1e6), matrix.String())

	t.Run("verdicts", func(t *testing.T) {
		for _, r := range real.Results {
			if r.Failed() {
				t.Errorf("%s %s: %s: %s", r.Verdict, r.Level, r.Name, strings.Join(r.Failures, "; "))
			}
		}
		for _, r := range fake.Results {
			if r.Failed() {
				t.Errorf("against the fake API server: %s %s: %s: %s", r.Verdict, r.Level, r.Name, strings.Join(r.Failures, "; "))
			}
		}
	})
	t.Run("fidelity", func(t *testing.T) {
		checkFidelity(t, "reference", fake.Results, real.Results)
	})
	writeProviders(t)
}

// writeProviders writes fidelity.md in the report root: every provider
// whose reference run is there (this one and earlier runs of others, e.g.
// make e2e-local then make e2e-kind), side by side.
func writeProviders(t *testing.T) {
	known, err := loadKnown("KNOWN_DIFFERENCES.md")
	require.NoError(t, err)
	var runs []ProviderRun
	for _, p := range []string{"local", "kind", "cluster"} {
		var real, fake harness.Report
		if readJSON(filepath.Join(reportRoot(), p, "reference-real.json"), &real) != nil ||
			readJSON(filepath.Join(reportRoot(), p, "reference-fake.json"), &fake) != nil {
			continue
		}
		runs = append(runs, ProviderRun{Provider: p, Real: real.Results, Fake: fake.Results})
	}
	var b bytes.Buffer
	WriteProviders(&b, runs, known)
	require.NoError(t, os.WriteFile(filepath.Join(reportRoot(), "fidelity.md"), b.Bytes(), 0o644))
	t.Logf("the providers side by side (%s):\n%s", filepath.Join(reportRoot(), "fidelity.md"), b.String())
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// checkFidelity compares fake and real outcomes, writes the agreement
// table, and fails on every difference KNOWN_DIFFERENCES.md does not explain.
func checkFidelity(t *testing.T, name string, fake, real []harness.Result) {
	known, err := loadKnown("KNOWN_DIFFERENCES.md")
	require.NoError(t, err)
	diffs := Compare(fake, real, known)
	var table bytes.Buffer
	WriteAgreement(&table, real, diffs)
	agree := len(real)
	seen := map[string]bool{}
	for _, d := range diffs {
		if !seen[d.Case] {
			seen[d.Case] = true
			agree--
		}
	}
	fmt.Fprintf(&table, "\n%d of %d cases agree in every aspect (%s); %d differences, of which %d known.\n",
		agree, len(real), aspectNames(), len(diffs), countKnown(diffs))
	for _, d := range diffs {
		why := "UNEXPLAINED"
		if d.Known != nil {
			why = "known: " + d.Known.Reason
		}
		fmt.Fprintf(&table, "- %s: %s: fake %q, real %q (%s)\n", d.Case, d.Aspect, d.Fake, d.Real, why)
	}
	require.NoError(t, os.WriteFile(filepath.Join(reportDir(t), name+"-fidelity.md"), table.Bytes(), 0o644))
	t.Logf("fidelity (%s):\n%s", name, table.String())
	for _, d := range diffs {
		if d.Known == nil {
			t.Errorf("%s: %s: the fake API server gives %q, the real cluster %q; fix the fake or explain it in e2e/KNOWN_DIFFERENCES.md", d.Case, d.Aspect, d.Fake, d.Real)
		}
	}
}

func aspectNames() string {
	var n []string
	for _, a := range Aspects {
		n = append(n, a.Name)
	}
	return strings.Join(n, ", ")
}

func countKnown(diffs []Difference) int {
	n := 0
	for _, d := range diffs {
		if d.Known != nil {
			n++
		}
	}
	return n
}

// variantCases are the cases the broken variants run: where a proxy's
// farewell decides the outcome (every ending on the client's side), plus
// the cases where it does not (the shell's own exit, a backend kill), which
// a variant must pass.
func variantCases(t *testing.T) []scenarios.Case {
	var out []scenarios.Case
	for _, c := range e2eCases(t) {
		switch c.Scenario.Name {
		case "disconnect/client-close/1000", "disconnect/client-close/1001", "disconnect/client-tcp-fin",
			"disconnect/client-tcp-rst", "lb/client-leg/idle-timeout-fin", "lb/client-leg/half-open",
			"shell/user-types-exit", "backend/process-killed":
			out = append(out, c)
		}
	}
	return out
}

// negotiationCases are the cases the negotiation variants run: every
// negotiation row (offers of several names, where they differ from the
// reference proxy).
func negotiationCases(t *testing.T) []scenarios.Case {
	var out []scenarios.Case
	for _, c := range e2eCases(t) {
		if strings.HasPrefix(c.Scenario.Name, "negotiation/") {
			out = append(out, c)
		}
	}
	return out
}

// frontDoorCases are the front-door rows: the open-door variant's
// (its API request knock gets the real pod, with the ServiceAccount's
// token).
func frontDoorCases(t *testing.T) []scenarios.Case {
	var out []scenarios.Case
	for _, c := range e2eCases(t) {
		if strings.HasPrefix(c.Scenario.Name, "front-door/") {
			out = append(out, c)
		}
	}
	return out
}

// TestBrokenVariants: each broken variant, in front of the real API server,
// fails exactly the cases it fails in front of the fake one, and some: the
// exit variants on the client-side endings, the negotiation variants on
// the offers (so the fake's negotiation is checked on a real API server
// through proxies that get it wrong, too).
func TestBrokenVariants(t *testing.T) {
	srv := realServer(t)
	exits, offers, doors := variantCases(t), negotiationCases(t), frontDoorCases(t)
	for _, vc := range []struct {
		v     proxyundertest.Variant
		cases []scenarios.Case
	}{
		{proxyundertest.NoExit, exits}, {proxyundertest.AlwaysBase64Exit, exits},
		{proxyundertest.FirstProtocolOnly, offers}, {proxyundertest.SortedOffers, offers}, {proxyundertest.EchoClientProtocol, offers},
		{proxyundertest.OpenDoor, doors},
	} {
		v, cases := vc.v, vc.cases
		t.Run(string(v), func(t *testing.T) {
			real := run(t, srv, v, cases)
			fake := run(t, nil, v, cases)
			writeJSON(t, "variant-"+string(v)+"-real.json", real)
			caught := 0
			fakeFailed := map[string]bool{}
			for _, r := range fake.Results {
				fakeFailed[r.Name] = r.Failed()
			}
			for _, r := range real.Results {
				if r.Verdict == harness.Error {
					t.Errorf("%s: the case could not run: %s", r.Name, strings.Join(r.Failures, "; "))
					continue
				}
				if r.Failed() {
					caught++
				}
				if r.Failed() != fakeFailed[r.Name] {
					t.Errorf("%s: %s on the real cluster (%s), but failed=%v on the fake", r.Name, r.Verdict, strings.Join(r.Failures, "; "), fakeFailed[r.Name])
				}
			}
			t.Logf("variant %s: caught in %d of %d cases on the real cluster", v, caught, len(real.Results))
			if caught == 0 {
				t.Errorf("variant %s passed every case on the real cluster", v)
			}
		})
	}
}

// TestRealClients runs the real clients' matrices (client-go's executors
// as processes of their own, a real kubectl on a pty) through the reference proxy into the real
// cluster: each client's own endings, its stdin's end then a drop, with
// the pod's process table as the judge.
func TestRealClients(t *testing.T) {
	srv := realServer(t)
	kd, err := kubectl.New(kubectl.Options{})
	require.NoError(t, err, "build kubectl")
	defer kd.Close()
	for _, d := range []clients.Dialer{clientgo.New(), kd} {
		t.Run(string(d.Client()), func(t *testing.T) {
			all, _ := scenarios.ClientCases(scenarios.ForClient(d.Client()), d.Client())
			cases := e2eFilter(t).Apply(all)
			opts := harness.Options{
				Server: srv, KeepaliveBound: proxyundertest.SuiteKeepalive, Parallel: parallel(),
				AnswerTimeout: 20 * time.Second, MaxSessions: realapiserver.MaxSessions,
				Clients: map[scenarios.Client]clients.Dialer{d.Client(): d}, RealClient: d.Client(),
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			rep := harness.Run(ctx, mutants.ClientTarget(proxyundertest.Correct, nil), cases, mutants.WithClientFront(mutants.WithFront(opts)))
			writeJSON(t, "clients-"+string(d.Client())+"-real.json", rep)
			var matrix bytes.Buffer
			harness.WriteMatrix(&matrix, rep)
			t.Logf("real cluster (%s), reference proxy, client %s: %s\n%s", provider(), d.Client(), rep.Duration.Round(1e6), matrix.String())
			for _, r := range rep.Results {
				if r.Failed() {
					t.Errorf("%s %s: %s: %s", r.Verdict, r.Level, r.Name, strings.Join(r.Failures, "; "))
				}
			}
		})
	}
}
