package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/execconform/execconform/bench"
	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
)

// benchOptions are the flags of `execconform bench`.
type benchOptions struct {
	bench       bench.Flags
	noReference bool
	dialect     string
	variant     string
	out         string
	json        bool
	verbose     bool

	proxyCmd     string
	name         string
	startTimeout time.Duration
	stopTimeout  time.Duration
	targetURL    string
	backend      backendOptions
	front        frontOptions
}

func (o *benchOptions) flags(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.bench.Register(fs)
	fs.BoolVar(&o.noReference, "no-reference", false, "with --proxy-cmd or --target-url, leave the reference proxy out (direct and yours only)")
	fs.StringVar(&o.dialect, "dialect", "", "also measure the translating reference proxy with this front `dialect` (client-go's fallback executor)")
	fs.StringVar(&o.variant, "variant", "", "measure the reference proxy as this broken `variant` instead")
	fs.StringVar(&o.out, "out", "bench-report", "`directory` for bench.json and bench.md ('' for none)")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON instead of the table")
	fs.BoolVar(&o.verbose, "v", false, "log progress to stderr")
	fs.StringVar(&o.proxyCmd, "proxy-cmd", "", "also measure this external proxy, one process per figure: a shell `command` with the placeholders of run --proxy-cmd")
	fs.StringVar(&o.name, "name", "", "the `name` of the --proxy-cmd or --target-url proxy in the tables (default: yours)")
	fs.DurationVar(&o.startTimeout, "proxy-start-timeout", harness.DefaultStartTimeout, "how long the --proxy-cmd proxy may take to accept connections")
	fs.DurationVar(&o.stopTimeout, "proxy-stop-timeout", harness.DefaultStopTimeout, "how long the --proxy-cmd proxy has between SIGTERM and SIGKILL")
	fs.StringVar(&o.targetURL, "target-url", "", "also measure a proxy already running at this `URL`; it must point at --backend-listen (its idle cost is not measured)")
	o.backend.register(fs)
	o.front.register(fs)
	fs.Var(&o.front.keepalive, "keepalive", "the longest `duration` your proxy takes to notice a silent client: the half-open mass drop waits --drop-bound beyond it (default 0)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: execconform bench [flags]\n\n"+
			"Measures what a proxy costs and how it cleans up at scale, beside direct (the client straight to the\n"+
			"fake API server) in the same run: keystroke latency, throughput per subprotocol, session set-up, idle\n"+
			"cost per session, mass drop (docs/bench.md). Default targets: direct and the reference proxy.\n\nflags:\n")
		fs.PrintDefaults()
	}
	return fs
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o benchOptions
	fs := o.flags(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return exitError(2)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	cfg, err := o.bench.Config()
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	logger := slog.New(slog.DiscardHandler)
	if o.verbose {
		logger = slog.New(harness.RedactingHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	}
	cfg.Logger = logger
	cfg.Keepalive = map[string]time.Duration{}

	targets, fake, err := o.targets(logger, stderr, cfg.Keepalive)
	if err != nil {
		return err
	}
	if fake != nil {
		defer fake.Close()
		cfg.Fake = fake
	}
	startJanitor(stderr)
	rep, err := bench.Run(ctx, targets, cfg)
	if rep == nil {
		return err
	}
	if o.json {
		_ = rep.WriteJSON(stdout)
	} else {
		rep.WriteTable(stdout)
		for _, g := range rep.Goals(referenceName) {
			fmt.Fprintln(stdout, g)
		}
	}
	if o.out != "" {
		if werr := writeBench(o.out, rep); werr != nil {
			return werr
		}
		if !o.json {
			fmt.Fprintf(stdout, "reports: %s\n", filepath.Join(o.out, "bench.md"))
		}
	}
	return err
}

// referenceName is the reference proxy's name in the bench's tables.
const referenceName = "reference"

// targets are the targets the flags ask for (after direct, which is
// always there), and the fake API server a --target-url proxy points at.
func (o benchOptions) targets(logger *slog.Logger, stderr io.Writer, keepalive map[string]time.Duration) ([]bench.Target, *fakeapiserver.Server, error) {
	if o.proxyCmd != "" && o.targetURL != "" {
		return nil, nil, fmt.Errorf("--proxy-cmd and --target-url: choose one")
	}
	front := mutants.WithFront(harness.Options{}).ClientHeader
	var targets []bench.Target
	if !o.noReference || (o.proxyCmd == "" && o.targetURL == "") {
		name := referenceName
		if o.variant != "" {
			name = "reference (" + o.variant + ")"
		}
		targets = append(targets, bench.Target{Name: name, Start: referenceTarget(proxyundertest.Variant(o.variant), logger), Header: front, Memory: bench.MemoryInProcess})
		keepalive[name] = proxyundertest.SuiteKeepalive
	}
	if o.dialect != "" {
		d, err := dialect.Lookup(o.dialect)
		if err != nil {
			return nil, nil, err
		}
		name := "translating (" + d.Name + ")"
		targets = append(targets, bench.Target{Name: name, Start: mutants.TranslatorTarget(proxyundertest.TranslatorCorrect, d, false, logger),
			Header: front, Dialect: d, Memory: bench.MemoryInProcess})
		keepalive[name] = proxyundertest.SuiteKeepalive
	}
	name := o.name
	if name == "" {
		name = "yours"
	}
	var opts harness.Options
	if err := o.front.apply(&opts, false); err != nil {
		return nil, nil, err
	}
	keepalive[name] = opts.KeepaliveBound
	switch {
	case o.proxyCmd != "":
		t, err := harness.CommandTarget(harness.CommandConfig{Template: o.proxyCmd, Scheme: o.front.scheme, PathPrefix: o.front.pathPrefix,
			StartTimeout: o.startTimeout, StopTimeout: o.stopTimeout, NoFDCheck: true})
		if err != nil {
			return nil, nil, err
		}
		targets = append(targets, bench.Target{Name: name, Start: t, Header: http.Header(opts.ClientHeader), FrontTLS: opts.FrontTLS, Memory: bench.MemoryProcess})
	case o.targetURL != "":
		u, err := url.Parse(o.targetURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, nil, fmt.Errorf("--target-url %q: want http(s)://host:port[/prefix]", o.targetURL)
		}
		fake, err := o.backend.start(logger, stderr)
		if err != nil {
			return nil, nil, err
		}
		if o.backend.token == "" && o.backend.tokenFile == "" {
			fmt.Fprintf(stderr, "execconform: fake API server at %s, token %s\n", fake.URL(), fake.Token())
		}
		targets = append(targets, bench.Target{Name: name, Start: harness.URLTarget(u), Header: http.Header(opts.ClientHeader), FrontTLS: opts.FrontTLS, Memory: bench.MemoryNone})
		return targets, fake, nil
	}
	return targets, nil, nil
}

// writeBench writes bench.json and bench.md to dir.
func writeBench(dir string, rep *bench.Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "bench.json"))
	if err != nil {
		return err
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	md, err := os.Create(filepath.Join(dir, "bench.md"))
	if err != nil {
		return err
	}
	rep.WriteMarkdown(md)
	return md.Close()
}
