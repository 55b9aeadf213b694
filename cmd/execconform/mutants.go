package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

// runMutants runs the matrix against every broken variant of the
// reference proxy (and the reference itself, as the control) and prints
// which cases kill each. Exit 1 when a variant survives or the control is
// killed.
func runMutants(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mutants", flag.ContinueOnError)
	fs.SetOutput(stderr)
	run := fs.String("run", "", "only the cases whose name matches this `regexp`")
	skip := fs.String("skip", "/load/", "drop the cases whose name matches this `regexp` (the 200-session case by default: it kills nothing the others miss and costs the most)")
	only := fs.String("variant", "", "comma-separated `variants` (default: all, with the reference as the control)")
	out := fs.String("out", "conformance-report", "write mutants.json to this `directory` (empty: none)")
	atOnce := fs.Int("at-once", 2, "run this many variants' matrices at once (with --client: 1, each case being a process)")
	verbose := fs.Bool("v", false, "log the components' debug output to stderr")
	dialectName := fs.String("dialect", "", "the translating reference proxy's variants instead, its front speaking this `dialect` (a built-in or a file), against the dialect's cases")
	executor := fs.String("executor", "fallback", "with --dialect, the translating proxy's `executor`: fallback or spdy")
	clientName := fs.String("client", "emulator", "drive the reference proxy's variants with this real `client` (client-go, kubectl, chromium) over the cells it can express: which variants each real client catches (survivors are reported, not failed: a client cannot express every case)")
	if done, err := parseFlags(fs, args, stdout); done {
		return err
	}
	startJanitor(stderr)
	var f scenarios.Filter
	var err error
	if *run != "" {
		if f.Run, err = regexp.Compile(*run); err != nil {
			return fmt.Errorf("--run: %w", err)
		}
	}
	if *skip != "" {
		if f.Skip, err = regexp.Compile(*skip); err != nil {
			return fmt.Errorf("--skip: %w", err)
		}
	}
	if *dialectName != "" {
		return runTranslatorMutants(ctx, *dialectName, *executor, *only, f, *out, *atOnce, *verbose, stdout, stderr)
	}
	variants := proxyundertest.Variants()
	if *only != "" {
		variants = nil
		for _, s := range splitList(*only) {
			v := proxyundertest.Variant(s)
			if s == "correct" {
				v = proxyundertest.Correct
			}
			if !slices.Contains(proxyundertest.Variants(), v) {
				return fmt.Errorf("--variant: unknown variant %q (see run --list-variants)", s)
			}
			variants = append(variants, v)
		}
	}
	client, err := scenarios.ParseClient(*clientName)
	if err != nil {
		return fmt.Errorf("--client: %w", err)
	}
	cases := f.Apply(scenarios.Cases(scenarios.All()))
	opts := harness.Options{}
	if client != scenarios.ClientEmulator {
		all, _ := scenarios.ClientCases(scenarios.ForClient(client), client)
		cases = f.Apply(all)
		dialer, err := clientDialer(client, nil)
		if err != nil {
			return fmt.Errorf("--client %s: %w", client, err)
		}
		defer dialer.Close()
		opts.Clients, opts.RealClient = map[scenarios.Client]clients.Dialer{client: dialer}, client
		if !flagSet(fs, "at-once") {
			*atOnce = 1
		}
		opts = mutants.WithClientFront(opts)
	}
	if len(cases) == 0 {
		return fmt.Errorf("no case matches")
	}
	if *verbose {
		opts.Logger = slog.New(harness.RedactingHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	start := time.Now()
	results := mutants.Run(ctx, variants, cases, opts, *atOnce)
	fmt.Fprintf(stdout, "%d variants x %d cases in %s\n\n", len(variants), len(cases), time.Since(start).Round(time.Millisecond))
	if client != scenarios.ClientEmulator {
		err := finishMutants(stdout, stderr, results, *out, "mutants-client-"+strings.TrimPrefix(string(client), "client-")+".json",
			map[string]any{"real_client": string(client)}, "the reference proxy")
		var ee exitError
		if errors.As(err, &ee) && !clientRunBroken(results) {
			return nil // survivors: cells the client cannot express
		}
		return err
	}
	return finishMutants(stdout, stderr, results, *out, "mutants.json", nil, "the reference proxy")
}

// clientRunBroken reports whether a real client's run of the variants
// failed for itself: the control killed, or a case that could not run.
func clientRunBroken(results []mutants.Result) bool {
	for _, r := range results {
		if r.Variant == proxyundertest.Correct && r.Killed || len(r.Errors) > 0 {
			return true
		}
	}
	return false
}

// finishMutants prints the score, writes the results (with meta) to
// out/file, and fails (exit 1) if a variant survived, the control (what)
// was killed, or a case could not run.
func finishMutants(stdout, stderr io.Writer, results []mutants.Result, out, file string, meta map[string]any, what string) error {
	mutants.Write(stdout, results)
	killed, total := mutants.Score(results)
	fmt.Fprintf(stdout, "\nmutation score: %d of %d broken variants killed\n", killed, total)
	if out != "" {
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		doc := map[string]any{"schema": "execconform/mutants/v1", "results": results}
		for k, v := range meta {
			doc[k] = v
		}
		b, _ := json.MarshalIndent(doc, "", "  ")
		if err := os.WriteFile(filepath.Join(out, file), b, 0o644); err != nil {
			return err
		}
	}
	failed := killed < total
	for _, r := range results {
		if r.Variant == proxyundertest.Correct && r.Killed {
			fmt.Fprintf(stderr, "execconform: %s itself was killed\n", what)
			failed = true
		}
		if len(r.Errors) > 0 {
			failed = true
		}
	}
	if failed {
		return exitError(1)
	}
	return nil
}

// runTranslatorMutants is runMutants for the translating reference
// proxy: its variants against the cases of dialect name.
func runTranslatorMutants(ctx context.Context, name, executor, only string, f scenarios.Filter, out string, atOnce int, verbose bool, stdout, stderr io.Writer) error {
	d, err := dialect.Lookup(name)
	if err != nil || d == nil {
		return fmt.Errorf("--dialect %q: a translating terminal's dialect, not the exec subprotocols: %v", name, err)
	}
	if executor != "fallback" && executor != "spdy" {
		return fmt.Errorf("--executor %q: want fallback or spdy", executor)
	}
	variants := append([]proxyundertest.TranslatorVariant{proxyundertest.TranslatorCorrect}, proxyundertest.TranslatorVariants()...)
	if only != "" {
		variants = nil
		for _, s := range splitList(only) {
			v := proxyundertest.TranslatorVariant(s)
			if s == "correct" {
				v = proxyundertest.TranslatorCorrect
			}
			if !slices.Contains(append(proxyundertest.TranslatorVariants(), proxyundertest.TranslatorCorrect), v) {
				return fmt.Errorf("--variant: unknown variant %q (see run --dialect %s --list-variants)", s, d.Name)
			}
			variants = append(variants, v)
		}
	}
	if executor == "spdy" {
		// SPDY alone has no fallback to get wrong.
		variants = slices.DeleteFunc(variants, func(v proxyundertest.TranslatorVariant) bool { return v == proxyundertest.FallbackOnEveryError })
	}
	all, _ := scenarios.DialectCases(scenarios.All(), d)
	cases := f.Apply(all)
	if len(cases) == 0 {
		return fmt.Errorf("no case matches")
	}
	opts := harness.Options{}
	if verbose {
		opts.Logger = slog.New(harness.RedactingHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	start := time.Now()
	results := mutants.RunTranslator(ctx, d, executor == "spdy", variants, cases, opts, atOnce)
	fmt.Fprintf(stdout, "translating proxy (dialect %s, %s executor): %d variants x %d cases in %s\n\n", d.Name, executor, len(variants), len(cases), time.Since(start).Round(time.Millisecond))
	return finishMutants(stdout, stderr, results, out, "mutants-"+d.Name+"-"+executor+".json",
		map[string]any{"dialect": d.Name, "executor": executor}, "the translating reference proxy")
}

// flagSet reports whether flag name was given.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
