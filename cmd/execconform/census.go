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
	"strings"
	"time"

	"github.com/execconform/execconform/census"
)

// censusOptions are census's flags.
type censusOptions struct {
	kubeconfig, context   string
	namespace, selector   string
	container             string
	pods                  stringList
	allNamespaces         bool
	idle                  time.Duration
	max                   int
	includeNoTTY, busy    bool
	parallel              int
	timeout, reapGrace    time.Duration
	json, markdown, verbo bool
	out                   string
	reap, yes             bool
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// censusFlagGroups order census's flags in its usage.
var censusFlagGroups = []flagGroup{
	{"The cluster", []string{"kubeconfig", "context"}},
	{"Which containers", []string{"namespace", "all-namespaces", "selector", "pod", "container"}},
	{"The rules (docs/census.md)", []string{"idle", "include-busy", "include-notty", "max"}},
	{"How", []string{"parallel", "timeout"}},
	{"Cleaning", []string{"reap", "yes", "reap-grace"}},
	{"Output", []string{"json", "markdown", "out", "v"}},
}

func (o *censusOptions) flags(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("census", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "the cluster's kubeconfig (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&o.context, "context", "", "the kubeconfig's context (default: its current one)")
	fs.StringVar(&o.namespace, "namespace", "", "the namespace (default: the context's)")
	fs.BoolVar(&o.allNamespaces, "all-namespaces", false, "every namespace")
	fs.StringVar(&o.selector, "selector", "", "a label selector for the pods (app=db)")
	fs.Var(&o.pods, "pod", "this `pod` only (repeatable): read with a get, so that a role allowed to exec into a pod and get it, not to list pods, is enough")
	fs.StringVar(&o.container, "container", "", "this container only (default: every running container)")
	fs.DurationVar(&o.idle, "idle", census.DefaultIdle, "a tty shell is a likely orphan when its terminal had no input (and no output) for longer")
	fs.BoolVar(&o.busy, "include-busy", false, "flag an idle tty shell even when its terminal had output within --idle (a program writing to nobody: top, tail -f)")
	fs.BoolVar(&o.includeNoTTY, "include-notty", false, "flag exec'd processes without a tty running longer than --idle too")
	fs.IntVar(&o.max, "max", 0, "exit 1 when more likely orphans than this are found")
	fs.IntVar(&o.parallel, "parallel", 4, "execs in flight at once")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Second, "bound of each container's exec")
	fs.BoolVar(&o.reap, "reap", false, "end the likely orphans (SIGHUP, then SIGKILL): needs --yes")
	fs.BoolVar(&o.yes, "yes", false, "with --reap: yes, signal the flagged processes")
	fs.DurationVar(&o.reapGrace, "reap-grace", 2*time.Second, "with --reap: how long a tree has after SIGHUP before SIGKILL")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON (docs/census.schema.json) instead of the table")
	fs.BoolVar(&o.markdown, "markdown", false, "print the report as Markdown instead of the table")
	fs.StringVar(&o.out, "out", "", "`directory` to write census.json and census.md to (none by default)")
	fs.BoolVar(&o.verbo, "v", false, "list every exec'd tree, not only the flagged ones")
	fs.Usage = func() { writeCensusUsage(fs.Output(), fs) }
	return fs
}

// writeCensusUsage writes census's usage, its flags by group.
func writeCensusUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `usage: execconform census --kubeconfig PATH [flags]

Counts the orphaned shells of a cluster from outside: one exec into each
running container reads its process table from /proc (sh and cat are
enough), lists the trees that execs started, and flags the likely orphans
(docs/census.md). It changes nothing unless --reap --yes.
Exit status: 0 at most --max likely orphans, 1 more (or --reap left one
alive), 2 the census could not run or the flags are wrong. A container
that refuses the exec is reported, never fatal.
`)
	writeFlagGroups(w, fs, censusFlagGroups)
}

// runCensus is `execconform census`.
func runCensus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o censusOptions
	fs := o.flags(stderr)
	if done, err := parseFlags(fs, args, stdout); done {
		return err
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "execconform census: unexpected argument %q\n", fs.Arg(0))
		return exitError(2)
	case o.allNamespaces && (o.namespace != "" || len(o.pods) > 0):
		fmt.Fprintln(stderr, "execconform census: --all-namespaces goes with neither --namespace nor --pod")
		return exitError(2)
	case o.reap && !o.yes:
		fmt.Fprintln(stderr, "execconform census: --reap signals processes in your pods (SIGHUP, then SIGKILL to every flagged tree); run the census without it first, then add --yes")
		return exitError(2)
	case o.yes && !o.reap:
		fmt.Fprintln(stderr, "execconform census: --yes goes with --reap")
		return exitError(2)
	case o.json && o.markdown:
		fmt.Fprintln(stderr, "execconform census: --json or --markdown, not both")
		return exitError(2)
	case o.idle <= 0 || o.max < 0 || o.parallel <= 0 || o.timeout <= 0 || o.reapGrace <= 0:
		fmt.Fprintln(stderr, "execconform census: --idle, --parallel, --timeout and --reap-grace must be positive, --max 0 or more")
		return exitError(2)
	}
	cl, err := census.Load(o.kubeconfig, o.context)
	if err != nil {
		return err
	}
	ns := o.namespace
	if ns == "" && !o.allNamespaces {
		ns = cl.Namespace
	}
	opts := census.Options{
		Scope:    census.Scope{Namespace: ns, AllNamespaces: o.allNamespaces, Selector: o.selector, Container: o.container, Pods: o.pods},
		Rules:    census.Rules{Idle: o.idle, IncludeBusy: o.busy, IncludeNoTTY: o.includeNoTTY},
		Max:      o.max,
		Parallel: o.parallel,
		Timeout:  o.timeout,
		Logger:   slog.New(slog.DiscardHandler),
	}
	rep, err := cl.Census(ctx, opts)
	if err != nil {
		return err
	}
	alive := 0
	if o.reap {
		rep.Reaped, alive = reapAll(ctx, cl, rep, opts, o.reapGrace)
	}
	if err := writeCensus(rep, o, stdout); err != nil {
		return err
	}
	switch {
	case rep.Totals.Flagged > o.max:
		fmt.Fprintf(stderr, "execconform census: %d likely orphan(s), more than --max %d\n", rep.Totals.Flagged, o.max)
		return exitError(1)
	case alive > 0:
		fmt.Fprintf(stderr, "execconform census: --reap left %d process(es) of flagged trees alive\n", alive)
		return exitError(1)
	}
	return nil
}

// reapAll reaps the flagged trees of every container of rep that has one,
// from a fresh dump of each (the tree's PIDs and start times are re-read,
// and re-checked again in the container before each signal). It returns
// what it did and how many processes are still alive.
func reapAll(ctx context.Context, cl *census.Cluster, rep *census.Report, o census.Options, grace time.Duration) ([]census.ReapResult, int) {
	var out []census.ReapResult
	alive := 0
	for _, p := range rep.Pods {
		if p.Flagged == 0 {
			continue
		}
		t := census.Target{Namespace: p.Namespace, Pod: p.Pod, Container: p.Container, Node: p.Node}
		res, snap := census.CensusOne(ctx, cl, t, o)
		if snap == nil {
			out = append(out, census.ReapResult{Namespace: p.Namespace, Pod: p.Pod, Container: p.Container,
				Targets: []census.ReapTarget{}, FlaggedAfter: -1, Error: res.Error})
			continue
		}
		rr := census.Reap(ctx, cl, t, snap, o, census.ReapOptions{Grace: grace})
		for _, tg := range rr.Targets {
			if tg.Outcome == "alive" {
				alive++
			}
		}
		out = append(out, rr)
	}
	return out, alive
}

// writeCensus prints the report (table, JSON or Markdown) and writes it
// to --out.
func writeCensus(rep *census.Report, o censusOptions, stdout io.Writer) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return err
		}
		var md strings.Builder
		rep.WriteMarkdown(&md)
		err := errors.Join(os.WriteFile(filepath.Join(o.out, "census.json"), b, 0o644),
			os.WriteFile(filepath.Join(o.out, "census.md"), []byte(md.String()), 0o644))
		if err != nil {
			return err
		}
	}
	switch {
	case o.json:
		_, err = stdout.Write(b)
	case o.markdown:
		rep.WriteMarkdown(stdout)
	default:
		rep.WriteTable(stdout, o.verbo)
	}
	return err
}
