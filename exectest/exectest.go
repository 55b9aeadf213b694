// Package exectest is the conformance suite as a library: a proxy
// maintainer calls TestProxy from a _test.go file with a Target that starts
// their proxy, and gets one subtest per case:
//
//	TestProxy/<subprotocol>/<tty|notty>/<scenario>
//
// (TestProxy/spdy/<version>/... over SPDY; TestProxy/<dialect>/... for a
// translating terminal, with Dialect.)
//
// Each case runs in isolation (its own fake API server with real shells,
// its own proxy) and in parallel with the others; whether a shell was left
// alive is read from the process table.
package exectest

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/report"
	"github.com/execconform/execconform/scenarios"
)

// Target starts the proxy under test in front of a backend; see harness.Target.
type Target = harness.Target

// Backend is what a Target proxies to; see harness.Backend.
type Backend = harness.Backend

// HandlerTarget serves an in-process http.Handler per case; see harness.HandlerTarget.
func HandlerTarget(newHandler func(b Backend) (http.Handler, error)) Target {
	return harness.HandlerTarget(newHandler)
}

// Option adjusts a run.
type Option func(*config)

type config struct {
	opts      harness.Options
	table     []scenarios.Scenario
	dialect   *dialect.Dialect
	client    clients.Dialer
	tableSet  bool
	filter    scenarios.Filter
	strict    bool // SHOULD failures fail the test
	logToTest bool
	reportDir string
	target    string
}

// Scenarios replaces the scenario table (default scenarios.All()).
func Scenarios(table []scenarios.Scenario) Option {
	return func(c *config) { c.table, c.tableSet = table, true }
}

// Run keeps only the cases whose name (protocol/mode/scenario) matches the expression.
func Run(expr string) Option {
	return func(c *config) { c.filter.Run = regexp.MustCompile(expr) }
}

// Skip drops the cases whose name matches the expression.
func Skip(expr string) Option {
	return func(c *config) { c.filter.Skip = regexp.MustCompile(expr) }
}

// Protocols keeps only these subprotocols.
func Protocols(ps ...execproto.Protocol) Option {
	return func(c *config) { c.filter.Protocols = ps }
}

// Levels keeps only these levels.
func Levels(ls ...scenarios.Level) Option {
	return func(c *config) { c.filter.Levels = ls }
}

// Grace sets how long shells may take to vanish after an ending (default 3s).
func Grace(d time.Duration) Option {
	return func(c *config) { c.opts.Grace = d }
}

// Keepalive declares the longest the proxy takes to notice a dead client
// that sends nothing (its ping interval plus pong timeout). Half-open cases
// wait this bound plus the grace period; without it they are INFO.
func Keepalive(d time.Duration) Option {
	return func(c *config) { c.opts.KeepaliveBound = d }
}

// Parallel sets how many cases run at once.
func Parallel(n int) Option {
	return func(c *config) { c.opts.Parallel = n }
}

// ClientHeader adds a header the client emulator sends (Origin, Cookie, ...).
func ClientHeader(key, value string) Option {
	return func(c *config) {
		if c.opts.ClientHeader == nil {
			c.opts.ClientHeader = map[string][]string{}
		}
		c.opts.ClientHeader[http.CanonicalHeaderKey(key)] = append(c.opts.ClientHeader[http.CanonicalHeaderKey(key)], value)
	}
}

// ShouldIsError makes SHOULD failures fail the test (default true: a
// reference implementation passes them); with false they are logged.
func ShouldIsError(b bool) Option {
	return func(c *config) { c.strict = b }
}

// ReportDir writes the run's reports (results.json, junit.xml,
// report.html, summary.md; see docs/reports.md) into dir once every case
// has ended; target names the proxy in them. A failed subtest then points
// at its page in report.html.
func ReportDir(dir, target string) Option {
	return func(c *config) { c.reportDir, c.target = dir, target }
}

// Logs routes component logs of each case to its subtest's log (noisy; for debugging).
func Logs() Option {
	return func(c *config) { c.logToTest = true }
}

func newConfig(opts []Option) *config {
	c := &config{table: scenarios.All(), strict: true}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Cases lists the cases a run with these options would run.
func Cases(opts ...Option) []scenarios.Case {
	return newConfig(opts).cases()
}

// NotApplicable lists the cells a run with these options cannot run in
// its dialect, and why (none for the exec subprotocols).
func NotApplicable(opts ...Option) []scenarios.NotApplicable {
	c := newConfig(opts)
	c.cases()
	return c.opts.NotApplicable
}

func (c *config) cases() []scenarios.Case {
	if c.client != nil {
		who := c.client.Client()
		table := c.table
		if !c.tableSet {
			table = scenarios.ForClient(who)
		}
		cases, na := scenarios.ClientCases(table, who)
		c.opts.RealClient, c.opts.NotApplicable = who, na
		c.opts.Clients = map[scenarios.Client]clients.Dialer{who: c.client}
		return c.filter.Apply(cases)
	}
	cases, na := scenarios.DialectCases(c.table, c.dialect)
	if !c.dialect.IsKubernetes() {
		c.opts.Dialect, c.opts.NotApplicable = c.dialect.Name, na
	}
	return c.filter.Apply(cases)
}

// group is a case's first subtest level: its name up to the mode.
func group(cs scenarios.Case) string {
	n := cs.Name()
	suffix := "/" + scenarios.ModeName(cs.TTY) + "/" + cs.Scenario.Name
	return strings.TrimSuffix(n, suffix)
}

// Dialect makes the client speak d (package dialect) to a translating
// terminal's front instead of the exec subprotocols: the matrix is the
// cases that apply to d (NotApplicable lists the rest, with why), and the
// target's URL is the front's base, under which d's paths are asked for.
func Dialect(d *dialect.Dialect) Option {
	return func(c *config) { c.dialect = d }
}

// Client makes a real client drive the cases instead of the suite's
// emulator: d is its dialer (clients/clientgo, clients/kubectl,
// clients/chromium), which the caller closes. The matrix is the cells
// that client can express, its own endings included (NotApplicable
// lists the rest, with why); subtests are named CLIENT/... .
func Client(d clients.Dialer) Option {
	return func(c *config) { c.client = d }
}

// TestProxy runs the conformance matrix against target as parallel
// subtests. A MUST failure (and by default a SHOULD failure) fails its
// subtest with every unmet expectation and its evidence; INFO cases log
// what happened.
func TestProxy(t *testing.T, target Target, opts ...Option) {
	t.Helper()
	c := newConfig(opts)
	cases := c.cases()
	if len(cases) == 0 {
		t.Fatal("exectest: no case matches the options")
	}
	// Group as protocol/mode/scenario subtests (spdy/VERSION over SPDY,
	// the dialect's name for a dialect).
	byProto := map[string][]scenarios.Case{}
	var order []string
	for _, cs := range cases {
		g := group(cs)
		if _, ok := byProto[g]; !ok {
			order = append(order, g)
		}
		byProto[g] = append(byProto[g], cs)
	}
	// Each selected subtest starts its case on the pool at once, then
	// parks in t.Parallel and waits for the result: the cases run as
	// parallel as the pool allows, whatever go test's -parallel is (cases
	// mostly wait on shells and sockets, not on the CPU).
	pool := harness.NewPool(c.opts.Parallel, c.opts.MaxSessions)
	var results *collected
	if c.reportDir != "" {
		results = &collected{started: time.Now(), index: map[string]int{}, results: make([]harness.Result, len(cases))}
		for i, cs := range cases {
			results.index[cs.Name()] = i
		}
		// Cleanup runs once every subtest, parallel ones included, is over.
		t.Cleanup(func() { results.write(t, c) })
	}
	for _, p := range order {
		t.Run(p, func(t *testing.T) {
			for _, cs := range byProto[p] {
				t.Run(scenarios.ModeName(cs.TTY)+"/"+cs.Scenario.Name, func(t *testing.T) {
					o := c.opts
					if c.logToTest {
						o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
					}
					done := make(chan harness.Result, 1)
					go func() {
						release := pool.Acquire(cs)
						defer release()
						done <- harness.RunCase(context.Background(), target, cs, o)
					}()
					t.Parallel()
					res := <-done
					if results != nil {
						results.add(res)
						if res.Failed() {
							t.Logf("frames, close handshake, processes: %s#%s", filepath.Join(c.reportDir, report.HTMLFile), report.CaseID(res.Name))
						}
					}
					reportResult(t, res, c.strict)
				})
			}
		})
	}
}

// collected gathers the results of TestProxy's subtests for ReportDir.
type collected struct {
	started time.Time
	mu      sync.Mutex
	index   map[string]int
	results []harness.Result
}

func (c *collected) add(r harness.Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.results[c.index[r.Name]] = r
}

// write writes the reports of the cases that ran (a -run pattern may
// leave some out).
func (c *collected) write(t *testing.T, cfg *config) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ran []harness.Result
	for _, r := range c.results {
		if r.Name != "" {
			ran = append(ran, r)
		}
	}
	rep := &harness.Report{Started: c.started, Duration: time.Since(c.started), Results: ran, Options: cfg.opts.RunOptions(),
		Dialect: cfg.opts.Dialect, NotApplicable: cfg.opts.NotApplicable, RealClient: string(cfg.opts.RealClient)}
	f := harness.NewResultsFile(cfg.target, rep)
	paths, err := report.WriteAll(cfg.reportDir, &f, report.Options{})
	if err != nil {
		t.Errorf("exectest: write the reports: %v", err)
		return
	}
	t.Logf("reports: %s", strings.Join(paths, " "))
}

func reportResult(t *testing.T, res harness.Result, strict bool) {
	t.Helper()
	for _, n := range res.Notes {
		t.Log(n)
	}
	if res.TimeToReap >= 0 {
		t.Logf("time to reap: %s", res.TimeToReap.Round(time.Microsecond))
	}
	switch res.Verdict {
	case harness.Fail, harness.Error:
		t.Errorf("%s %s:\n  %s", res.Level, res.Verdict, strings.Join(res.Failures, "\n  "))
	case harness.NonStrict:
		if strict {
			t.Errorf("SHOULD failed:\n  %s", strings.Join(res.Failures, "\n  "))
		} else {
			t.Logf("SHOULD failed (non-strict):\n  %s", strings.Join(res.Failures, "\n  "))
		}
	case harness.Info:
		t.Logf("INFO: %s", res.Scenario)
	}
}

// Check runs the matrix and returns the report with every result; it never
// stops early. For CLIs and custom gates.
func Check(ctx context.Context, target Target, opts ...Option) *harness.Report {
	c := newConfig(opts)
	cases := c.cases()
	return harness.Run(ctx, target, cases, c.opts)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
