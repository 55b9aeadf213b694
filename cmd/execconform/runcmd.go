package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

// runOptions are the flags of `execconform run`.
type runOptions struct {
	run       string
	protocols string
	levels    string
	parallel  int
	grace     time.Duration
	variant   string
	out       string
	count     int
	list      bool
	verbose   bool
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o runOptions
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.run, "run", "", "run only the cases whose name (protocol/mode/scenario) matches this `regexp`")
	fs.StringVar(&o.protocols, "protocol", "", "comma-separated `subprotocols` to run (\"none\" for none offered; default all)")
	fs.StringVar(&o.levels, "level", "", "comma-separated `levels` to run: MUST, SHOULD, INFO (default all)")
	fs.IntVar(&o.parallel, "parallel", 0, "cases at once (default 8 per core)")
	fs.DurationVar(&o.grace, "grace", 3*time.Second, "how long a shell may take to vanish after an ending")
	fs.StringVar(&o.variant, "variant", "", "run the reference proxy as a deliberately broken `variant` (see --list-variants)")
	fs.StringVar(&o.out, "out", "conformance-report", "`directory` for results.json (empty: none)")
	fs.IntVar(&o.count, "count", 1, "run the matrix `n` times in a row (flake hunting); any failure in any run fails")
	fs.BoolVar(&o.list, "list", false, "list the cases and exit")
	fs.BoolVar(&o.verbose, "v", false, "log component events to stderr")
	listVariants := fs.Bool("list-variants", false, "list the broken variants of the reference proxy and exit")
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	if *listVariants {
		for _, v := range proxyundertest.Variants() {
			fmt.Fprintln(stdout, v.String())
		}
		return nil
	}
	filter, err := o.filter()
	if err != nil {
		return err
	}
	cases := filter.Apply(scenarios.Cases(scenarios.All()))
	if len(cases) == 0 {
		return fmt.Errorf("no case matches the filters")
	}
	if o.list {
		for _, c := range cases {
			fmt.Fprintf(stdout, "%-6s %s\n", c.Level, c.Name())
		}
		return nil
	}
	logger := slog.New(slog.DiscardHandler)
	if o.verbose {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	target := referenceTarget(proxyundertest.Variant(o.variant), logger)
	opts := harness.Options{Parallel: o.parallel, Grace: o.grace, Logger: logger, KeepaliveBound: proxyundertest.SuiteKeepalive}
	failed, suiteErr := false, false
	for i := 0; i < o.count; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rep := harness.Run(ctx, target, cases, opts)
		if o.count > 1 {
			fmt.Fprintf(stdout, "run %d/%d: ", i+1, o.count)
			failures := rep.Failed()
			fmt.Fprintf(stdout, "%d cases, %d failed, %s\n", len(rep.Results), len(failures), rep.Duration.Round(time.Millisecond))
			for _, r := range failures {
				fmt.Fprintf(stdout, "  %s %s: %s\n", r.Verdict, r.Name, strings.Join(r.Failures, "; "))
			}
		} else {
			fmt.Fprintf(stdout, "target: reference proxy%s\n\n", variantSuffix(o.variant))
			harness.WriteMatrix(stdout, rep)
			if looks := harness.LooksLike(rep); len(looks) > 0 {
				fmt.Fprintf(stdout, "%s\n\n", strings.Join(looks, "\n"))
			}
			fmt.Fprintln(stdout)
			harness.WriteReapStats(stdout, rep)
		}
		if o.out != "" {
			if err := writeResults(o.out, rep, o.variant); err != nil {
				return err
			}
		}
		for _, r := range rep.Results {
			switch {
			case r.Verdict == harness.Fail:
				failed = true
			case r.Verdict == harness.Error:
				suiteErr = true
			}
		}
	}
	if o.out != "" && o.count == 1 {
		fmt.Fprintf(stdout, "\nresults: %s\n", filepath.Join(o.out, "results.json"))
	}
	switch {
	case failed:
		return exitError(1)
	case suiteErr:
		fmt.Fprintln(stderr, "execconform: some cases could not run (ERROR)")
		return exitError(2)
	}
	return nil
}

func variantSuffix(v string) string {
	if v == "" {
		return ""
	}
	return " (broken variant: " + v + ")"
}

func (o runOptions) filter() (scenarios.Filter, error) {
	var f scenarios.Filter
	if o.run != "" {
		re, err := regexp.Compile(o.run)
		if err != nil {
			return f, fmt.Errorf("--run: %w", err)
		}
		f.Run = re
	}
	for _, s := range splitList(o.protocols) {
		p, err := execproto.ParseProtocol(s)
		if err != nil {
			return f, fmt.Errorf("--protocol: %w", err)
		}
		f.Protocols = append(f.Protocols, p)
	}
	for _, s := range splitList(o.levels) {
		l := scenarios.Level(strings.ToUpper(s))
		if l != scenarios.MUST && l != scenarios.SHOULD && l != scenarios.INFO {
			return f, fmt.Errorf("--level: unknown level %q", s)
		}
		f.Levels = append(f.Levels, l)
	}
	return f, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// referenceTarget serves the reference proxy (or a broken variant) in-process.
func referenceTarget(v proxyundertest.Variant, logger *slog.Logger) harness.Target {
	return mutants.Target(v, logger)
}

// resultsFile is the schema of results.json.
type resultsFile struct {
	Schema   string           `json:"schema"`
	Target   string           `json:"target"`
	Started  time.Time        `json:"started"`
	Duration time.Duration    `json:"duration_ns"`
	Summary  map[string]int   `json:"summary"`
	Results  []harness.Result `json:"results"`
}

func writeResults(dir string, rep *harness.Report, variant string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sum := map[string]int{}
	for l, vs := range rep.Counts() {
		for v, n := range vs {
			sum[string(l)+"/"+string(v)] = n
		}
	}
	f := resultsFile{
		Schema: "execconform/results/v1", Target: "reference-proxy" + variantSuffix(variant),
		Started: rep.Started, Duration: rep.Duration, Summary: sum, Results: rep.Results,
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644)
}
