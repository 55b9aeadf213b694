// Command execconform is the conformance suite for Kubernetes exec WebSocket
// proxies: it runs a fake API server with real shells, proxies under test,
// and a matrix of disconnect scenarios, and reports from the process table
// whether any shell was left alive.
//
//	execconform run             run the conformance matrix (default target: the reference proxy)
//	execconform fakeapiserver   run the fake API server alone
//	execconform proxy           run the reference proxy alone
//	execconform reap            kill shells left by dead execconform processes
//	execconform census          count (and --reap) the orphaned shells of a live cluster
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/execconform/execconform/internal/janitor"
)

func main() {
	janitor.RunIfJanitor() // before anything: a janitor is no CLI
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ee exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(int(ee))
	case err != nil:
		fmt.Fprintln(os.Stderr, "execconform:", err)
		os.Exit(2)
	}
}

// startJanitor starts the janitor of a command that starts shells: should
// the command die (SIGKILL, however), what its shells left and its
// temporary directories go at once, not at the next run.
func startJanitor(stderr io.Writer) {
	if err := janitor.Start(); err != nil {
		fmt.Fprintf(stderr, "execconform: %v (what a kill leaves waits for the next run or `execconform reap`)\n", err)
	}
}

// exitError is an exit code with nothing more to say.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `usage: execconform <command> [flags]

commands:
  run            run the conformance matrix against a proxy (default: the reference proxy)
  fakeapiserver  serve the fake Kubernetes API server (exec endpoint, real shells)
  proxy          serve the reference proxy
  reap           kill processes left behind by execconform processes that died
  mutants        run the matrix against every broken variant of the reference proxy: which cases kill each
  bench          measure what a proxy costs and how it cleans up at scale, beside direct (docs/bench.md)
  census         count the orphaned shells in a live cluster's pods, from outside (--reap ends them)
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	switch args[0] {
	case "fakeapiserver":
		return runFakeAPIServer(ctx, args[1:], stdout, stderr)
	case "run":
		return runRun(ctx, args[1:], stdout, stderr)
	case "proxy":
		return runProxy(ctx, args[1:], stdout, stderr)
	case "reap":
		return runReap(ctx, args[1:], stdout, stderr)
	case "mutants":
		return runMutants(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "census":
		return runCensus(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "execconform: unknown command %q\n\n%s", args[0], usage)
	return exitError(2)
}
