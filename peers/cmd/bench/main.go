// Command bench measures, in one run and beside direct (the client
// straight to the fake API server), what each proxy costs and how it
// cleans up at scale: the reference proxy, the translating reference
// proxy, and the peers (real third-party proxies, package peers). It
// writes docs/bench/README.md and docs/bench/bench.json:
//
//	cd peers && go run ./cmd/bench -out ../docs/bench
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/execconform/execconform/bench"
	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/janitor"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/peers"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

func main() {
	janitor.RunIfJanitor() // before anything: a janitor is no bench run
	if err := janitor.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v (what a kill leaves waits for `execconform reap`)\n", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "../docs/bench", "`directory` for README.md and bench.json ('' for none)")
	only := fs.String("target", "", "comma-separated `targets` to measure besides direct (default all: "+strings.Join(names(), ", ")+")")
	largeDrop := fs.String("reference-drop-sizes", "max", "the reference proxy's mass drop at scale, in a run of its own after the side-by-side one: these sizes (\"\": none; \"max\": the most this machine's limits allow)")
	scaleOnly := fs.Bool("scale-only", false, "only the reference proxy's mass drop at scale (scale.md, scale.json): leave README.md and bench.json as they are")
	verbose := fs.Bool("v", false, "log progress to stderr")
	var flags bench.Flags
	flags.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := flags.Config()
	if err != nil {
		return err
	}
	klog.SetLogger(logr.Discard()) // the peers' own logs
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(harness.RedactingHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	}
	cfg.Logger = logger
	cfg.Keepalive = map[string]time.Duration{}

	all, err := targets(logger, cfg.Keepalive)
	if err != nil {
		return err
	}
	var chosen []bench.Target
	for _, t := range all {
		if *only == "" || contains(strings.Split(*only, ","), t.Name) {
			chosen = append(chosen, t)
		}
	}
	// The side-by-side run, then the reference proxy's mass drop at
	// scale in a run of its own (direct, which keeps every shell, is
	// not measured there).
	var rep *bench.Report
	if !*scaleOnly {
		if rep, err = bench.Run(ctx, chosen, cfg); err != nil {
			return err
		}
	}
	var large *bench.Report
	if *largeDrop != "" && (*only == "" || contains(strings.Split(*only, ","), "reference")) && (len(cfg.Figures) == 0 || contains(cfg.Figures, bench.GroupDrop)) {
		lf := bench.Flags{}
		lfs := flag.NewFlagSet("large", flag.ContinueOnError)
		lf.Register(lfs)
		if err := lfs.Parse([]string{"-figures", "drop", "-drop-sizes", *largeDrop, "-drop-kinds", strings.Join(cfg.DropKinds, ","),
			"-runs", fmt.Sprint(cfg.Runs), "-drop-runs-above", fmt.Sprint(cfg.DropRunsAbove), "-drop-bound", cfg.DropBound.String()}); err != nil {
			return err
		}
		lcfg, err := lf.Config()
		if err != nil {
			return err
		}
		lcfg.Logger, lcfg.Keepalive, lcfg.NoDirect = logger, cfg.Keepalive, true
		ref := all[0]
		if large, err = bench.Run(ctx, []bench.Target{ref}, lcfg); err != nil {
			return err
		}
	}
	if rep != nil {
		rep.WriteTable(stdout)
		for _, t := range rep.Targets {
			for _, g := range rep.Goals(t.Name) {
				fmt.Fprintln(stdout, g)
			}
		}
	}
	if large != nil {
		fmt.Fprintln(stdout)
		large.WriteTable(stdout)
	}
	if *out == "" {
		return nil
	}
	return write(*out, rep, large)
}

// targets are the reference proxy, the translating reference proxy and
// each peer, in report order.
func targets(logger *slog.Logger, keepalive map[string]time.Duration) ([]bench.Target, error) {
	front := mutants.WithFront(harness.Options{}).ClientHeader
	d, err := dialect.Builtin("json-operation")
	if err != nil {
		return nil, err
	}
	out := []bench.Target{
		{Name: "reference", Start: mutants.Target(proxyundertest.Correct, logger), Header: front, Memory: bench.MemoryInProcess},
		{Name: "translating", Start: mutants.TranslatorTarget(proxyundertest.TranslatorCorrect, d, false, logger), Header: front, Dialect: d, Memory: bench.MemoryInProcess},
	}
	keepalive["reference"], keepalive["translating"] = proxyundertest.SuiteKeepalive, proxyundertest.SuiteKeepalive
	for _, p := range peers.All() {
		out = append(out, bench.Target{Name: p.Name, Start: p.Target, Header: p.ClientHeader, Memory: bench.MemoryInProcess})
	}
	return out, nil
}

func names() []string {
	out := []string{"reference", "translating"}
	for _, p := range peers.All() {
		out = append(out, p.Name)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if strings.TrimSpace(v) == s {
			return true
		}
	}
	return false
}

// write writes README.md and bench.json (the side-by-side run), and
// scale.md and scale.json (the reference proxy's mass drop at scale);
// a nil report leaves its files as they are.
func write(dir string, rep, large *bench.Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if rep != nil {
		var md strings.Builder
		md.WriteString("# What each proxy costs, side by side\n\n" +
			"Generated by `make bench-proxies` (`cd peers && go run ./cmd/bench -out ../docs/bench`); what each figure is and how it is measured: [docs/bench.md](../bench.md). " +
			"Targets: **direct** (the client straight to the fake API server: the baseline), **reference** (this project's reference proxy), " +
			"**translating** (the translating reference proxy: front dialect json-operation, client-go's fallback executor to the API server), " +
			"and the peers of [docs/peers](../peers/README.md), in-process with the configuration described there. " +
			"The reference proxy's mass drop at the most sessions this machine allows: [scale.md](scale.md).\n\n")
		rep.WriteMarkdown(&md)
		md.WriteString("\n## Goals\n\n")
		for _, t := range rep.Targets {
			for _, g := range rep.Goals(t.Name) {
				md.WriteString("- " + g.String() + "\n")
			}
		}
		if err := writeFiles(dir, "README.md", "bench.json", md.String(), rep); err != nil {
			return err
		}
	}
	if large != nil {
		var md strings.Builder
		md.WriteString("# The reference proxy's mass drop at scale\n\n" +
			"Generated by `make bench-proxies` (the run after [the side-by-side one](README.md)): every client connection of N open sessions dropped at once, " +
			"then the time until the process table shows none of their shells ([docs/bench.md](../bench.md)). N is the most sessions this machine's limits allow; one run per kind.\n\n")
		large.WriteMarkdown(&md)
		if err := writeFiles(dir, "scale.md", "scale.json", md.String(), large); err != nil {
			return err
		}
	}
	return nil
}

func writeFiles(dir, mdName, jsonName, md string, rep *bench.Report) error {
	if err := os.WriteFile(filepath.Join(dir, mdName), []byte(md), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, jsonName))
	if err != nil {
		return err
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
