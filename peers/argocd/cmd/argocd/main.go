// Command argocd runs the dialect matrix against Argo CD's web terminal
// (package argocd) and writes docs/peers/argocd.md and argocd.json, then
// the index docs/peers/README.md:
//
//	cd peers/argocd && go run ./cmd/argocd -out ../../docs/peers
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/janitor"
	"github.com/execconform/execconform/peers"
	"github.com/execconform/execconform/peers/argocd"
	"github.com/execconform/execconform/scenarios"
	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"
)

func main() {
	janitor.RunIfJanitor() // before anything: a janitor is no peers run
	if err := janitor.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "argocd: %v (what a kill leaves waits for `execconform reap`)\n", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("argocd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "../../docs/peers", "`directory` for argocd.md, argocd.json and README.md")
	runRE := fs.String("run", "", "only the cases whose name matches this `regexp` (default the whole dialect matrix)")
	parallel := fs.Int("parallel", 0, "cases at once (default 8 per core)")
	grace := fs.Duration("grace", 3*time.Second, "how long a shell may take to vanish after an ending")
	verbose := fs.Bool("v", false, "let Argo CD log (logrus) to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*verbose {
		// The terminal (logrus), client-go's executor (klog) and the
		// http.Server (log) log every broken session.
		logrus.SetOutput(io.Discard)
		klog.SetLogger(logr.Discard())
		log.SetOutput(io.Discard)
	}
	d, err := argocd.Dialect()
	if err != nil {
		return err
	}
	cases, na := scenarios.DialectCases(scenarios.All(), d)
	if *runRE != "" {
		re, err := regexp.Compile(*runRE)
		if err != nil {
			return fmt.Errorf("-run: %w", err)
		}
		cases = scenarios.Filter{Run: re}.Apply(cases)
	}
	if len(cases) == 0 {
		return fmt.Errorf("no case matches -run")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	p := argocd.Peer()
	// Argo CD pings every 5 s but never reads a pong or sets a read
	// deadline: no keepalive bound, so the half-open cases are INFO.
	opts := harness.Options{Parallel: *parallel, Grace: *grace, ClientHeader: p.ClientHeader,
		Namespace: argocd.PodNamespace, Pod: argocd.PodName}
	info := peers.NewInfo(p, opts, len(cases), *runRE)
	info.Dialect, info.NotApplicable, info.Command = d.Name, na, peers.ArgoCDCommand
	fmt.Fprintf(stdout, "%s (%s %s): %d cases in dialect %s (%d not applicable) ...\n", p.Name, info.Module, info.Version, len(cases), d.Name, len(na))
	prev, prevErr := peers.ReadFile(*out, p.Name)
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
	switch {
	case prevErr == nil:
		extra = append(extra, peers.Stability(prev, rep, stdout))
	case !errors.Is(prevErr, iofs.ErrNotExist):
		fmt.Fprintf(stdout, "  the previous run is not compared: %v\n", prevErr)
	}
	var md bytes.Buffer
	peers.WriteDoc(&md, p, file, extra)
	if err := os.WriteFile(filepath.Join(*out, p.Name+".md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	if err := peers.WriteFile(*out, file); err != nil {
		return err
	}
	path, err := peers.WriteIndexDir(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", path)
	return nil
}
