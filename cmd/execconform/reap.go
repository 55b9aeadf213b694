package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/execconform/execconform/proctable"
)

// runReap kills processes that carry an execconform session tag but whose
// server process is gone (a test binary killed by a timeout, say). With
// --check it kills nothing and fails if there is any such process; with
// --all it considers every tagged process, live server or not.
func runReap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check", false, "kill nothing; exit 1 if any process left by a dead execconform process is alive")
	all := fs.Bool("all", false, "with --check: any tagged process counts, even one whose server still runs")
	if done, err := parseFlags(fs, args, stdout); done {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if *check {
		list := proctable.Default.Orphans
		if *all {
			list = proctable.Default.Tagged
		}
		procs, err := list(ctx)
		if err != nil {
			return err
		}
		for _, p := range procs {
			fmt.Fprintf(stdout, "alive: %s (%s=%s)\n", p, proctable.SessionEnv, p.Session)
		}
		if len(procs) > 0 {
			fmt.Fprintf(stderr, "execconform: %d process(es) started by execconform are still alive\n", len(procs))
			return exitError(1)
		}
		fmt.Fprintln(stdout, "no process left behind by execconform is alive")
		return nil
	}
	killed, dirs, err := sweepDeadRuns(ctx, 0)
	for _, p := range killed {
		fmt.Fprintf(stdout, "killed: %s\n", p)
	}
	for _, d := range dirs {
		fmt.Fprintf(stdout, "removed: %s\n", d)
	}
	fmt.Fprintf(stdout, "reaped %d process(es), %d temporary directories\n", len(killed), len(dirs))
	return err
}

// deadRunAge is how old an orphan must be for a run to sweep it at its
// start: a test binary beside it may be setting up orphans on purpose for
// a few seconds (proctable's own tests); what a SIGKILLed run left is
// swept by any run started this long after.
const deadRunAge = 10 * time.Second

// sweepDeadRuns kills what dead execconform processes left alive (their
// shells' children survive the shells' Pdeathsig), at least minAge old,
// and removes their temporary directories.
func sweepDeadRuns(ctx context.Context, minAge time.Duration) ([]proctable.Proc, []string, error) {
	killed, err := proctable.Default.SweepOlder(ctx, minAge)
	dirs, derr := proctable.SweepTempDirs()
	return killed, dirs, errors.Join(err, derr)
}
