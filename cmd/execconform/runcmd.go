package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/realapiserver"
	"github.com/execconform/execconform/report"
	"github.com/execconform/execconform/scenarios"
)

// runOptions are the flags of `execconform run`.
type runOptions struct {
	run        string
	cluster    bool
	protocols  string
	transports string
	dialect    string
	client     string
	executor   string
	levels     string
	parallel   int
	sessions   int
	grace      time.Duration
	variant    string
	out        string
	outSet     bool // --out was given (else outDir derives it)
	count      int
	list       bool
	verbose    bool
	quiet      bool
	json       bool
	reportURL  string
	seed       int64
	cpuProfile string

	// The target, when it is not the in-process reference proxy.
	proxyCmd     string
	startTimeout time.Duration
	stopTimeout  time.Duration
	noFDCheck    bool
	targetURL    string
	backend      backendOptions
	front        frontOptions
}

// backendOptions fix the fake API server that an already running proxy
// (--target-url) points at.
type backendOptions struct {
	listen    string
	token     string
	tokenFile string
	certDir   string
	insecure  bool
}

// register adds the flags of b to fs (run's and bench's).
func (b *backendOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&b.listen, "backend-listen", "127.0.0.1:9443", "with --target-url: the `address` of the fake API server the proxy points at")
	fs.StringVar(&b.token, "backend-token", "", "with --target-url: the bearer `token` the fake API server requires, visible in ps (default: random, printed)")
	fs.StringVar(&b.tokenFile, "backend-token-file", "", "with --target-url: read that token from this `file` (whitespace trimmed) instead; it is not printed")
	fs.StringVar(&b.certDir, "backend-cert-dir", "", "with --target-url: `directory` of the fake API server's CA (ca.crt, ca.key), made once and reused, so the proxy can trust ca.crt across runs (default: a new CA each run)")
	fs.BoolVar(&b.insecure, "backend-insecure-http", false, "with --target-url: the fake API server serves plain http")
}

// frontOptions are how the client reaches an external proxy.
type frontOptions struct {
	scheme     string
	pathPrefix string
	headers    multiFlag
	cookies    multiFlag
	origin     string
	caFile     string
	insecure   bool
	keepalive  optionalDuration
}

// register adds the flags of f but --keepalive (whose default each
// command says) to fs (run's and bench's).
func (f *frontOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&f.scheme, "scheme", "http", "the `scheme` the proxy serves: http or https")
	fs.StringVar(&f.pathPrefix, "path-prefix", "", "the `prefix` the proxy serves the API under (e.g. /api/kubernetes)")
	fs.Var(&f.headers, "header", "a `header` (\"Name: value\") the client sends to the proxy, e.g. its own auth (repeatable)")
	fs.Var(&f.cookies, "cookie", "a `cookie` (name=value) the client sends to the proxy (repeatable)")
	fs.StringVar(&f.origin, "origin", "", "the Origin `header` the client sends (a browser always sends one)")
	fs.StringVar(&f.caFile, "front-ca", "", "PEM `file` of the CA of the proxy's https certificate")
	fs.BoolVar(&f.insecure, "insecure-skip-verify", false, "do not verify the proxy's https certificate")
}

// runFlags are run's flags, by group in the usage (see writeRunUsage).
func (o *runOptions) flags(stderr io.Writer) (*flag.FlagSet, *bool) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.run, "run", "", "run only the cases whose name (protocol/mode/scenario) matches this `regexp`")
	fs.StringVar(&o.protocols, "protocol", "", "comma-separated `subprotocols` to run (\"none\" for none offered; \"spdy/v4.channel.k8s.io\" for a SPDY version; default all)")
	fs.StringVar(&o.transports, "transport", "", "comma-separated `transports` to run: websocket, spdy (default both)")
	fs.StringVar(&o.dialect, "dialect", "", "the client speaks this front `dialect` of a translating terminal (a built-in: "+strings.Join(dialect.Builtins()[1:], ", ")+"; or a dialect file, docs/dialects.md) instead of the exec subprotocols; the in-process target is then the translating reference proxy (default: kubernetes, the exec subprotocols)")
	fs.StringVar(&o.client, "client", "emulator", "who drives the cases: `client` emulator (the suite's own), client-go (client-go's remotecommand executors, each session a process of its own), kubectl (a real kubectl on a pty, built from the Go module proxy on first use) or chromium (headless Chromium running a web console's JavaScript client); a real client runs the cells it can express, and lists the others as not applicable (docs/clients.md)")
	fs.StringVar(&o.executor, "executor", "fallback", "with --dialect, the in-process translating proxy's `executor` to the API server: fallback (client-go's WebSocket v5, SPDY on an upgrade failure, as kubectl) or spdy (SPDY alone, as KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false)")
	fs.StringVar(&o.levels, "level", "", "comma-separated `levels` to run: MUST, SHOULD, INFO (default all)")
	fs.IntVar(&o.parallel, "parallel", 0, "`n` cases at once (default 8 per core; with --cluster 8)")
	fs.IntVar(&o.sessions, "max-sessions", 0, "at most `n` sessions in flight across cases (default: no bound; with --cluster "+strconv.Itoa(realapiserver.MaxSessions)+")")
	fs.DurationVar(&o.grace, "grace", 3*time.Second, "how long a shell may take to vanish after an ending")
	fs.StringVar(&o.variant, "variant", "", "run the reference proxy as a deliberately broken `variant` (see --list-variants)")
	fs.StringVar(&o.out, "out", "", "`directory` for the reports: results.json, junit.xml, report.html, summary.md; '' for none "+
		"(default: conformance-report/ for the reference proxy, conformance-report/variant-NAME/ for a broken variant, "+
		"conformance-report/proxy-cmd-NAME/ (NAME: the command's program), conformance-report/target-url-HOST_PORT/, and with --cluster conformance-report/cluster[-...]/)")
	fs.StringVar(&o.reportURL, "report-url", "", "where report.html will be for readers of summary.md and junit.xml, e.g. a CI artifact's `URL` (default: report.html beside them)")
	fs.BoolVar(&o.quiet, "quiet", false, "print only the outcome and the failed cases (no progress, no matrix); with --list, the case names alone")
	fs.BoolVar(&o.json, "json", false, "print results.json to stdout instead of the matrix (no progress); with --list, the cases as JSON")
	fs.Int64Var(&o.seed, "seed", 0, "shuffle the order the cases start in with this `seed` (0: the listed order); the seed is in every report")
	fs.IntVar(&o.count, "count", 1, "run the matrix `n` times in a row (flake hunting); any failure in any run fails; each run's reports go to OUT/run-K/, all runs together to OUT/")
	fs.BoolVar(&o.list, "list", false, "list the scenarios (level, description, subprotocols and modes) and exit")
	fs.BoolVar(&o.verbose, "v", false, "log component events to stderr")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the run (the suite, the fake API server and an in-process proxy; not the shells) to this `file`, for go tool pprof")
	listVariants := fs.Bool("list-variants", false, "list the broken variants of the reference proxy and exit")
	fs.StringVar(&o.proxyCmd, "proxy-cmd", "", "run this external proxy, one process per case: a shell `command` with Go template placeholders {{.Listen}} {{.Backend}} {{.CAFile}} {{.Token}} {{.TokenFile}} (see docs/testing-your-proxy.md)")
	fs.DurationVar(&o.startTimeout, "proxy-start-timeout", harness.DefaultStartTimeout, "how long the --proxy-cmd proxy may take to accept connections on {{.Listen}}")
	fs.DurationVar(&o.stopTimeout, "proxy-stop-timeout", harness.DefaultStopTimeout, "how long the --proxy-cmd proxy has between SIGTERM and SIGKILL")
	fs.BoolVar(&o.noFDCheck, "no-fd-check", false, "do not check that the --proxy-cmd proxy closes every file it opened for a case")
	fs.BoolVar(&o.cluster, "cluster", false, "exec into a real cluster instead of the fake API server: the pod named by the E2E_* environment that e2e-provider sets (see \"Run against your own cluster\" in the README); skips the load and bash cases unless --run names them")
	fs.StringVar(&o.targetURL, "target-url", "", "test a proxy that is already running at this `URL` (with its path prefix); it must point at --backend-listen")
	o.backend.register(fs)
	o.front.register(fs)
	fs.Var(&o.front.keepalive, "keepalive", "the longest `duration` the proxy promises to take to notice a silent client (ping interval + pong timeout); 0: none, so the half-open cases are only reported "+
		"(default: the reference proxy's own, "+proxyundertest.SuiteKeepalive.String()+"; none for --proxy-cmd and --target-url)")
	fs.Usage = func() { writeRunUsage(fs.Output(), fs) }
	return fs, listVariants
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o runOptions
	fs, listVariants := o.flags(stderr)
	if done, err := parseFlags(fs, args, stdout); done {
		return err
	}
	fs.Visit(func(f *flag.Flag) { o.outSet = o.outSet || f.Name == "out" })
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	d, err := o.frontDialect()
	if err != nil {
		return err
	}
	if *listVariants {
		if d != nil {
			for _, v := range proxyundertest.TranslatorVariants() {
				fmt.Fprintln(stdout, string(v))
			}
			return nil
		}
		for _, v := range proxyundertest.Variants() {
			fmt.Fprintln(stdout, v.String())
		}
		return nil
	}
	filter, err := o.filter()
	if err != nil {
		return err
	}
	if o.cluster && filter.Run == nil {
		// 200 shells in one small pod measure the node, not the proxy; a
		// busybox pod has no bash.
		filter.Skip = regexp.MustCompile(`/load/|/shell/bash$`)
	}
	if o.cluster && o.targetURL != "" {
		return fmt.Errorf("--cluster and --target-url: the proxy of --target-url points at a fake API server of ours")
	}
	client, err := scenarios.ParseClient(o.client)
	if err != nil {
		return fmt.Errorf("--client: %w", err)
	}
	if client != scenarios.ClientEmulator && d != nil {
		return fmt.Errorf("--client %s and --dialect: a dialect's front is spoken by the emulator (the real clients speak the exec subprotocols)", client)
	}
	all, notApplicable := scenarios.DialectCases(scenarios.All(), d)
	if client != scenarios.ClientEmulator {
		all, notApplicable = scenarios.ClientCases(scenarios.ForClient(client), client)
	}
	cases := filter.Apply(all)
	var skipped map[string]int
	if o.targetURL != "" {
		cases, skipped = withoutOwnTarget(cases)
	}
	if len(cases) == 0 {
		return fmt.Errorf("no case matches the filters")
	}
	if o.list {
		if err := writeList(stdout, cases, o); err != nil {
			return err
		}
		if !o.quiet && !o.json {
			harness.WriteNotApplicable(stdout, &harness.Report{Dialect: o.dialect, NotApplicable: notApplicable, RealClient: string(client)})
		}
		return nil
	}
	logger := slog.New(slog.DiscardHandler)
	if o.verbose {
		// The proxy logs here too: nothing may show a token subprotocol.
		logger = slog.New(harness.RedactingHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	target, name, err := o.target(logger, d)
	if err != nil {
		return err
	}
	if o.json && o.count > 1 {
		return fmt.Errorf("--json prints one run: not with --count")
	}
	if o.count < 1 {
		return fmt.Errorf("--count %d: want 1 or more", o.count)
	}
	opts := harness.Options{Parallel: o.parallel, MaxSessions: o.sessions, Grace: o.grace, Logger: logger, Seed: o.seed}
	if d != nil {
		opts.Dialect, opts.NotApplicable = d.Name, notApplicable
	}
	if client != scenarios.ClientEmulator {
		dialer, err := clientDialer(client, logger)
		if err != nil {
			return fmt.Errorf("--client %s: %w", client, err)
		}
		defer dialer.Close()
		opts.RealClient, opts.NotApplicable = client, notApplicable
		opts.Clients = map[scenarios.Client]clients.Dialer{client: dialer}
	}
	reference := o.proxyCmd == "" && o.targetURL == ""
	if err := o.front.apply(&opts, reference); err != nil {
		return err
	}
	if reference {
		opts = mutants.WithFront(opts) // the in-process reference proxy's own credential
		if client != scenarios.ClientEmulator {
			opts = mutants.WithClientFront(opts) // for the clients that send only a token
		}
	}
	// What the human reads goes to stdout, but for --json, whose stdout is
	// results.json alone.
	info := stdout
	if o.json {
		info = stderr
	}
	// Self-healing: what this run leaves should it be killed (its shells'
	// children, its temporary directories) goes when it dies, and what a
	// run killed without a janitor left goes now, not when someone runs
	// reap.
	startJanitor(stderr)
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	swept, dirs, err := sweepDeadRuns(sctx, deadRunAge)
	scancel()
	if err != nil {
		fmt.Fprintf(stderr, "execconform: sweeping what dead runs left: %v\n", err)
	}
	if len(swept)+len(dirs) > 0 {
		fmt.Fprintf(info, "swept what dead runs left behind: %d process(es), %d temporary directories\n\n", len(swept), len(dirs))
	}
	if o.cluster {
		cl, err := realapiserver.FromEnv()
		if err != nil {
			return fmt.Errorf("--cluster: %w", err)
		}
		srv, err := realapiserver.New(cl)
		if err != nil {
			return err
		}
		defer srv.Close()
		if err := srv.CheckVisible(ctx); err != nil {
			return err
		}
		opts.Server = srv
		opts.Secrets = append(opts.Secrets, cl.Token) // the ServiceAccount's: in no output
		// An exec through a node can take seconds to start its shell.
		opts.AnswerTimeout = 20 * time.Second
		if opts.Parallel == 0 {
			opts.Parallel = 8 // every exec crosses the API server, the kubelet and the runtime
		}
		if opts.MaxSessions == 0 {
			opts.MaxSessions = realapiserver.MaxSessions
		}
		fmt.Fprintf(info, "cluster: %s, pod %s/%s (processes: %s)\n\n", cl.APIServer, cl.Namespace, cl.Pod, cmp.Or(cl.Procs, realapiserver.ProcsHost))
	}
	if o.targetURL != "" {
		fake, err := o.backend.start(logger, stderr)
		if err != nil {
			return err
		}
		defer fake.Close()
		opts.Server = harness.SharedFakeServer(fake)
		token := fake.Token()
		if o.backend.tokenFile != "" {
			token = "the content of " + o.backend.tokenFile
		}
		fmt.Fprintf(info, "backend (point the proxy at it): %s\n  token: %s\n", fake.URL(), token)
		if ca := fake.CAFile(); ca != "" {
			fmt.Fprintf(info, "  CA: %s\n", ca)
		}
		for why, n := range skipped {
			fmt.Fprintf(info, "  skipped %d cases: %s (run the proxy with --proxy-cmd for those)\n", n, why)
		}
		fmt.Fprintln(info)
	}
	unbounded := 0
	for _, c := range cases {
		if harness.OnlyReported(c, opts.KeepaliveBound) {
			unbounded++
		}
	}
	if unbounded > 0 {
		fmt.Fprintf(info, "%s\n\n", o.front.keepaliveLine(unbounded))
	}
	out := o.outDir()
	if out != "" {
		if err := report.RemoveRunDirs(out); err != nil {
			return err
		}
	}
	mode := detectProgress(stdout)
	if o.quiet || o.json {
		mode = progressNone
	}
	var series *harness.Series
	if o.count > 1 {
		series = harness.NewSeries(o.count)
	}
	var file harness.ResultsFile
	var written []string
	for i := 0; i < o.count; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		prog := newProgress(stdout, mode, len(cases))
		opts.OnStart, opts.OnResult = prog.started, prog.finished
		rep := harness.Run(ctx, target, cases, opts)
		prog.close()
		file = harness.NewResultsFile(name, rep)
		dir := out
		if series != nil {
			if file, err = series.Add(file); err != nil {
				return err
			}
			if out != "" {
				dir = filepath.Join(out, report.RunDir(i+1))
			}
		}
		switch {
		case o.json:
			if err := report.WriteJSON(stdout, &file); err != nil {
				return err
			}
		case series != nil:
			failures := rep.Failed()
			fmt.Fprintf(stdout, "run %d/%d: %d cases, %d failed, %s\n", i+1, o.count, len(rep.Results), len(failures), rep.Duration.Round(time.Millisecond))
			for _, r := range failures {
				fmt.Fprintf(stdout, "  %s %s: %s\n", r.Verdict, r.Name, strings.Join(r.Failures, "; "))
			}
		case o.quiet:
			writeQuiet(stdout, &file)
		default:
			if mode != progressNone {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stdout, "target: %s\n\n", name)
			harness.WriteMatrix(stdout, rep)
			if looks := harness.LooksLike(rep); len(looks) > 0 {
				fmt.Fprintf(stdout, "%s\n\n", strings.Join(looks, "\n"))
			}
			fmt.Fprintln(stdout)
			harness.WriteReapStats(stdout, rep)
		}
		if dir != "" {
			if written, err = report.WriteAll(dir, &file, o.reportOptions(i+1)); err != nil {
				return err
			}
		}
	}
	if series != nil {
		file = series.File()
		writeSeries(stdout, &file)
		if out != "" {
			if written, err = report.WriteAll(out, &file, o.reportOptions(0)); err != nil {
				return err
			}
		}
	}
	if err := o.stepSummary(&file); err != nil {
		return err
	}
	for _, n := range file.Notices {
		switch n.Kind {
		case harness.NoticeNotFound:
			fmt.Fprintf(info, "\nERROR: %s\n", n.Message)
		case harness.NoticeInterrupted:
			fmt.Fprintf(info, "\nINTERRUPTED: %s\n", n.Message)
		}
	}
	if unbounded > 0 {
		fmt.Fprintf(info, "\n%s\n", o.front.keepaliveLine(unbounded))
	}
	if out != "" {
		fmt.Fprintf(info, "\nreports: %s\n", strings.Join(written, " "))
		if series != nil {
			fmt.Fprintf(info, "each run's own reports: %s/ to %s/\n", filepath.Join(out, report.RunDir(1)), filepath.Join(out, report.RunDir(o.count)))
		}
	}
	if series != nil {
		fmt.Fprintln(stdout, report.SeriesLine(&file, 5))
	}
	switch file.ExitCode {
	case harness.ExitMustFailed:
		return exitError(file.ExitCode)
	case harness.ExitSuiteError:
		fmt.Fprintln(stderr, "execconform: some cases could not run (ERROR)")
		return exitError(file.ExitCode)
	}
	return nil
}

// writeSeries prints, after the runs of a series, the cases that did not
// pass in some run, the flaky ones first (at most 50 lines).
func writeSeries(w io.Writer, f *harness.ResultsFile) {
	bad := report.NotPassed(f)
	fmt.Fprintf(w, "\n%s\n", report.Headline(f))
	for i, r := range bad {
		if i == 50 {
			fmt.Fprintf(w, "  ... and %d more (summary.md, results.json)\n", len(bad)-i)
			break
		}
		fmt.Fprintf(w, "  %s: %s\n", r.Name, report.RunVerdicts(r))
	}
}

// writeQuiet prints the outcome and the failed cases, for --quiet.
func writeQuiet(w io.Writer, f *harness.ResultsFile) {
	fmt.Fprintf(w, "%s (%d cases in %s: %s)\n", report.Headline(f), len(f.Results), f.Duration.Round(time.Millisecond), report.Counts(f))
	for _, r := range f.Results {
		if r.Failed() {
			fmt.Fprintf(w, "%s %s [%s]: %s\n", r.Verdict, r.Name, r.Level, strings.Join(r.Failures, "; "))
		}
	}
}

// reportOptions are the rendering options of run k's reports in a series
// (0: a single run, or the file combining a series). A --report-url
// ending in report.html points run k's at RunDir(k)/report.html beside it.
func (o runOptions) reportOptions(k int) report.Options {
	ro := report.Options{HTMLLink: o.reportURL}
	if k > 0 && o.count > 1 {
		ro.HTMLLink = ""
		if base, ok := strings.CutSuffix(o.reportURL, report.HTMLFile); ok {
			ro.HTMLLink = base + report.RunDir(k) + "/" + report.HTMLFile
		}
	}
	return ro
}

// stepSummary appends the Markdown summary of f (one run, or every run of
// a series together) to $GITHUB_STEP_SUMMARY when it is set.
func (o runOptions) stepSummary(f *harness.ResultsFile) error {
	path := os.Getenv("GITHUB_STEP_SUMMARY")
	if path == "" {
		return nil
	}
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("$GITHUB_STEP_SUMMARY: %w", err)
	}
	werr := report.WriteMarkdown(fh, f, o.reportOptions(0))
	if err := errors.Join(werr, fh.Close()); err != nil {
		return fmt.Errorf("$GITHUB_STEP_SUMMARY: %w", err)
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
		if v, ok := strings.CutPrefix(s, "spdy/"); ok {
			p := execproto.Protocol(v)
			if !execproto.SPDYSupported(p) {
				return f, fmt.Errorf("--protocol: unknown SPDY version %q (want one of %v)", v, execproto.KubeletSPDYProtocols)
			}
			f.SPDYProtocols = append(f.SPDYProtocols, p)
			continue
		}
		p, err := execproto.ParseProtocol(s)
		if err != nil {
			return f, fmt.Errorf("--protocol: %w", err)
		}
		f.Protocols = append(f.Protocols, p)
	}
	for _, s := range splitList(o.transports) {
		t, err := execproto.ParseTransport(s)
		if err != nil {
			return f, fmt.Errorf("--transport: %w", err)
		}
		f.Transports = append(f.Transports, t)
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

// frontDialect is --dialect's dialect: nil for none or kubernetes.
func (o runOptions) frontDialect() (*dialect.Dialect, error) {
	if o.dialect == "" {
		return nil, nil
	}
	d, err := dialect.Lookup(o.dialect)
	if err != nil {
		return nil, fmt.Errorf("--dialect: %w", err)
	}
	return d, nil
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

// target is what the run tests, and its name for the report.
func (o runOptions) target(logger *slog.Logger, d *dialect.Dialect) (harness.Target, string, error) {
	if o.proxyCmd != "" && o.targetURL != "" {
		return nil, "", fmt.Errorf("--proxy-cmd and --target-url: choose one")
	}
	inProcess := o.proxyCmd == "" && o.targetURL == ""
	if o.executor != "fallback" && (d == nil || !inProcess) {
		return nil, "", fmt.Errorf("--executor is for the in-process translating proxy (with --dialect)")
	}
	if d != nil && inProcess {
		v := proxyundertest.TranslatorVariant(o.variant)
		if !slices.Contains(append(proxyundertest.TranslatorVariants(), proxyundertest.TranslatorCorrect), v) {
			return nil, "", fmt.Errorf("--variant %q: the translating proxy's variants are %v (--dialect %s --list-variants)", o.variant, proxyundertest.TranslatorVariants(), d.Name)
		}
		var spdy bool
		switch o.executor {
		case "fallback":
		case "spdy":
			spdy = true
		default:
			return nil, "", fmt.Errorf("--executor %q: want fallback or spdy", o.executor)
		}
		name := fmt.Sprintf("translating reference proxy (dialect %s, client-go %s executor)%s", d.Name, o.executor, variantSuffix(o.variant))
		return mutants.TranslatorTarget(v, d, spdy, logger), name, nil
	}
	if o.targetURL != "" {
		if o.variant != "" {
			return nil, "", fmt.Errorf("--variant is for the reference proxy, not --target-url")
		}
		u, err := url.Parse(o.targetURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, "", fmt.Errorf("--target-url %q: want http(s)://host:port[/prefix]", o.targetURL)
		}
		return harness.URLTarget(u), "url: " + o.targetURL, nil
	}
	if o.proxyCmd == "" {
		if o.client != "" && o.client != "emulator" {
			return mutants.ClientTarget(proxyundertest.Variant(o.variant), logger), "reference proxy (for real clients: https, relaying kubectl's reads)" + variantSuffix(o.variant), nil
		}
		return referenceTarget(proxyundertest.Variant(o.variant), logger), "reference proxy" + variantSuffix(o.variant), nil
	}
	if o.variant != "" {
		return nil, "", fmt.Errorf("--variant is for the reference proxy, not --proxy-cmd")
	}
	t, err := harness.CommandTarget(harness.CommandConfig{
		Template: o.proxyCmd, Scheme: o.front.scheme, PathPrefix: o.front.pathPrefix,
		StartTimeout: o.startTimeout, StopTimeout: o.stopTimeout, NoFDCheck: o.noFDCheck,
	})
	if err != nil {
		return nil, "", err
	}
	return t, "command: " + o.proxyCmd, nil
}

// start starts the fake API server an already running proxy points at;
// a warning goes to stderr if it listens beyond loopback.
func (b backendOptions) start(logger *slog.Logger, stderr io.Writer) (*fakeapiserver.Server, error) {
	token, err := tokenFrom(b.token, "backend-token", b.tokenFile, "backend-token-file")
	if err != nil {
		return nil, err
	}
	warnNotLoopback(stderr, "backend-listen", b.listen)
	if b.certDir != "" {
		if err := os.MkdirAll(b.certDir, 0o755); err != nil {
			return nil, err
		}
	}
	fake, err := fakeapiserver.New(fakeapiserver.Config{
		Addr: b.listen, Token: token, Insecure: b.insecure, CertDir: b.certDir, KeepCA: true, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	if err := fake.Start(); err != nil {
		fake.Close()
		return nil, fmt.Errorf("--backend-listen %s: %w", b.listen, err)
	}
	return fake, nil
}

// withoutOwnTarget leaves out the cases an already running proxy cannot
// take, and counts them by reason.
func withoutOwnTarget(cases []scenarios.Case) ([]scenarios.Case, map[string]int) {
	var kept []scenarios.Case
	skipped := map[string]int{}
	for _, c := range cases {
		if why := harness.NeedsOwnTarget(c); why != "" {
			skipped[why]++
			continue
		}
		kept = append(kept, c)
	}
	return kept, skipped
}

// apply sets the client's side of opts; reference says the target is the
// in-process reference proxy (which promises SuiteKeepalive).
func (f frontOptions) apply(opts *harness.Options, reference bool) error {
	switch {
	case f.keepalive.set:
		opts.KeepaliveBound = f.keepalive.d
	case reference:
		opts.KeepaliveBound = proxyundertest.SuiteKeepalive
	}
	hdr := http.Header{}
	for _, h := range f.headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return fmt.Errorf("--header %q: want \"Name: value\"", h)
		}
		hdr.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	for _, c := range f.cookies {
		if !strings.Contains(c, "=") {
			return fmt.Errorf("--cookie %q: want name=value", c)
		}
		hdr.Add("Cookie", c)
	}
	if f.origin != "" {
		hdr.Set("Origin", f.origin)
	}
	if len(hdr) > 0 {
		opts.ClientHeader = hdr
	}
	if f.caFile != "" || f.insecure {
		tc := &tls.Config{InsecureSkipVerify: f.insecure} //nolint:gosec // the user asked for it
		if f.caFile != "" {
			pem, err := os.ReadFile(f.caFile)
			if err != nil {
				return fmt.Errorf("--front-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--front-ca %s: no PEM certificate in it", f.caFile)
			}
			tc.RootCAs = pool
		}
		opts.FrontTLS = tc
	}
	return nil
}

// referenceTarget serves the reference proxy (or a broken variant) in-process.
func referenceTarget(v proxyundertest.Variant, logger *slog.Logger) harness.Target {
	return mutants.Target(v, logger)
}
