// Command peers runs the full conformance matrix against each peer (real
// third-party exec proxies, see package peers), one after the other, and
// writes per peer docs/peers/<peer>.md and <peer>.json, and the index
// docs/peers/README.md:
//
//	cd peers && go run ./cmd/peers -out ../docs/peers
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/janitor"
	"github.com/execconform/execconform/peers"
	"github.com/execconform/execconform/scenarios"
	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

func main() {
	janitor.RunIfJanitor() // before anything: a janitor is no peers run
	if err := janitor.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "peers: %v (what a kill leaves waits for `execconform reap`)\n", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "../docs/peers", "`directory` for <peer>.md, <peer>.json and README.md")
	only := fs.String("peer", "", "comma-separated `peers` to run (default all: "+names()+")")
	runRE := fs.String("run", "", "only the cases whose name matches this `regexp` (default the full matrix)")
	filterRun := fs.String("filter-run", `^v5\.channel\.k8s\.io/tty/disconnect/`, "the cases (`regexp`) of the short run of kubectl proxy with its default request filter (empty: skip it)")
	parallel := fs.Int("parallel", 0, "cases at once (default 8 per core)")
	grace := fs.Duration("grace", 3*time.Second, "how long a shell may take to vanish after an ending")
	verbose := fs.Bool("v", false, "let the peers log (klog) to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*verbose {
		// kubectl proxy and UpgradeAwareHandler log every broken tunnel.
		klog.SetLogger(logr.Discard())
	}
	list := peers.All()
	if *only != "" {
		list = nil
		for _, n := range strings.Split(*only, ",") {
			p, ok := peers.ByName(strings.TrimSpace(n))
			if !ok {
				return fmt.Errorf("-peer: unknown peer %q (%s)", n, names())
			}
			list = append(list, p)
		}
	}
	var f scenarios.Filter
	if *runRE != "" {
		re, err := regexp.Compile(*runRE)
		if err != nil {
			return fmt.Errorf("-run: %w", err)
		}
		f.Run = re
	}
	cases := f.Apply(scenarios.Cases(scenarios.All()))
	if len(cases) == 0 {
		return fmt.Errorf("no case matches -run")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	// A peer's keepalive is unknown: no bound is declared, so the
	// half-open cases are reported as INFO rather than judged.
	opts := harness.Options{Parallel: *parallel, Grace: *grace}
	for _, p := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := runPeer(ctx, p, cases, opts, *out, *runRE, *filterRun, stdout); err != nil {
			return err
		}
	}
	return writeIndex(*out, stdout)
}

func names() string {
	var n []string
	for _, p := range peers.All() {
		n = append(n, p.Name)
	}
	return strings.Join(n, ", ")
}

// runPeer runs the matrix against p and writes its page and JSON file.
func runPeer(ctx context.Context, p peers.Peer, cases []scenarios.Case, opts harness.Options, out, runRE, filterRun string, stdout io.Writer) error {
	info := peers.NewInfo(p, opts, len(cases), runRE)
	fmt.Fprintf(stdout, "%s (%s %s): %d cases ...\n", p.Name, info.Module, info.Version, len(cases))
	prev, prevErr := peers.ReadFile(out, p.Name)
	opts.ClientHeader = p.ClientHeader
	rep := harness.Run(ctx, p.Target, cases, opts)
	if err := ctx.Err(); err != nil {
		return err // an interrupted run is not written
	}
	file := peers.NewFile(info, rep)
	fmt.Fprintf(stdout, "  %s in %s\n", peers.CountsLine(rep), rep.Duration.Round(100*time.Millisecond))
	for _, l := range harness.LooksLike(rep) {
		fmt.Fprintf(stdout, "  %s\n", l)
	}
	var extra []peers.Section
	if p.Name == peers.KubectlProxy().Name && filterRun != "" {
		s, err := defaultFilterRun(ctx, opts, filterRun, stdout)
		if err != nil {
			return err
		}
		extra = append(extra, s)
	}
	switch {
	case prevErr == nil:
		extra = append(extra, peers.Stability(prev, rep, stdout))
	case !errors.Is(prevErr, fs.ErrNotExist):
		// An older schema, or a damaged file: say so rather than skip.
		fmt.Fprintf(stdout, "  the previous run is not compared: %v\n", prevErr)
		extra = append(extra, peers.Section{Title: "Stability", Body: fmt.Sprintf("The run recorded here before this one could not be read (%v), so it is not compared; the next run will be.\n", prevErr)})
	}
	var md bytes.Buffer
	peers.WriteDoc(&md, p, file, extra)
	if err := os.WriteFile(filepath.Join(out, p.Name+".md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	return peers.WriteFile(out, file)
}

// defaultFilterRun runs a few cases against kubectl proxy with its
// default request filter, which refuses exec.
func defaultFilterRun(ctx context.Context, opts harness.Options, expr string, stdout io.Writer) (peers.Section, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return peers.Section{}, fmt.Errorf("-filter-run: %w", err)
	}
	cases := scenarios.Filter{Run: re}.Apply(scenarios.Cases(scenarios.All()))
	if len(cases) == 0 {
		return peers.Section{}, fmt.Errorf("-filter-run: no case matches %q", expr)
	}
	p := peers.KubectlProxyDefaultFilter()
	rep := harness.Run(ctx, p.Target, cases, opts)
	fmt.Fprintf(stdout, "  %s: %s\n", p.Name, peers.CountsLine(rep))
	var b strings.Builder
	fmt.Fprintf(&b, "Configured %s.\n\n", p.Config[0])
	fmt.Fprintf(&b, "A short run of %d cases (`%s`), in %s: %s.\n\n", len(cases), expr, rep.Duration.Round(time.Millisecond), peers.CountsLine(rep))
	// The cases, grouped by what they reported.
	var outcomes []string
	byOutcome := map[string][]string{}
	for _, r := range rep.Results {
		o := string(r.Verdict)
		if len(r.Failures) > 0 {
			o += ": " + strings.Join(r.Failures, "; ")
		}
		if _, ok := byOutcome[o]; !ok {
			outcomes = append(outcomes, o)
		}
		byOutcome[o] = append(byOutcome[o], r.Name)
	}
	for _, o := range outcomes {
		fmt.Fprintf(&b, "- `%s`: %s\n", strings.Join(byOutcome[o], "`, `"), o)
	}
	fmt.Fprintln(&b)
	fmt.Fprint(&b, "The filter answers 403 Forbidden before anything reaches the API server, so no shell is started: "+
		"kubectl proxy as it starts is safe from orphans because it refuses exec altogether. Users who want a shell "+
		"through it turn the filter off (`--disable-filter`, or `--reject-paths` without the exec pattern), which is the "+
		"configuration of the matrix above.")
	return peers.Section{Title: "With the default request filter", Body: b.String()}, nil
}

// writeIndex writes README.md from the JSON files of the peers in out.
func writeIndex(out string, stdout io.Writer) error {
	path, err := peers.WriteIndexDir(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", path)
	return nil
}
