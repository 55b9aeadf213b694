// Package mutants proves the suite's sensitivity: it runs the conformance
// cases against every broken variant of the reference proxy and reports
// which cases kill each one (a MUST or SHOULD case fails), which survive,
// and whether the reference proxy itself is killed by any (it must not).
// In-process targets are also checked for leaked goroutines and open files.
package mutants

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

// Result is one variant's outcome.
type Result struct {
	Variant proxyundertest.Variant `json:"variant"`
	// Killed: at least one MUST or SHOULD case failed, or goroutines or files leaked.
	Killed bool     `json:"killed"`
	By     []string `json:"killed_by,omitempty"` // the failed MUST and SHOULD cases
	Must   int      `json:"must_failed"`
	Should int      `json:"should_failed"`
	Errors []string `json:"errors,omitempty"` // cases the suite could not run
	// Failures are the first failure of each case in By and Errors (cut
	// short): what a killing case, or an unexpected one, saw.
	Failures []string `json:"failures,omitempty"`
	// LeakedGoroutines is how many goroutines outlived LeakSessions
	// sessions (see LeakCheck).
	LeakedGoroutines int `json:"leaked_goroutines"`
	// LeakedFiles is how many open files of the process outlived them.
	LeakedFiles int      `json:"leaked_files"`
	LooksLike   []string `json:"looks_like,omitempty"`
	// LooksLikeIDs are the patterns (harness.Patterns) the matrix showed.
	LooksLikeIDs []string      `json:"looks_like_ids,omitempty"`
	Duration     time.Duration `json:"duration_ns"`
}

// firstFailure is r's name and first failure, cut to 300 bytes.
func firstFailure(r harness.Result) string {
	msg := "(no failure recorded)"
	if len(r.Failures) > 0 {
		msg = r.Failures[0]
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return r.Name + ": " + msg
}

// frontToken is the front credential of the in-process reference proxy
// (Target): random per process, sent by the client as the proxy's cookie
// (WithFront).
var frontToken = func() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "front-" + hex.EncodeToString(b)
}()

// WithFront is opts with the client sending Target's front credential
// (its cookie, as a browser console sends its session), besides the
// headers it already has.
func WithFront(opts harness.Options) harness.Options {
	h := http.Header(opts.ClientHeader).Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Add("Cookie", proxyundertest.DefaultFrontCookie+"="+frontToken)
	opts.ClientHeader = h
	return opts
}

// WithClientFront is opts for the real clients against ClientTarget:
// the front credential also as "Authorization: Bearer" (kubectl's
// kubeconfig, client-go's rest.Config send only a token), and the TLS
// that trusts ClientTarget's https front (FrontTLS, FrontCA).
func WithClientFront(opts harness.Options) harness.Options {
	h := http.Header(opts.ClientHeader).Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Authorization", "Bearer "+frontToken)
	opts.ClientHeader = h
	lt := loopbackTLS()
	opts.FrontTLS, opts.FrontCA = lt.Client, lt.CAPEM
	return opts
}

// loopbackTLS is the process's one certificate for ClientTarget's fronts.
var loopbackTLS = sync.OnceValue(func() *fakeapiserver.LoopbackTLS {
	lt, err := fakeapiserver.NewLoopbackTLS()
	if err != nil {
		panic(fmt.Sprintf("mutants: a loopback certificate: %v", err))
	}
	return lt
})

// Target serves the reference proxy as variant v, in-process, with the
// suite's keepalive (proxyundertest.SuiteKeepalive) and a front
// credential that the client must send (run it with WithFront's options).
// It logs to logger, and its warnings and errors also to the case's
// target output, as an external proxy's would be kept
// (Result.TargetOutput, TargetPanic).
func Target(v proxyundertest.Variant, logger *slog.Logger) harness.Target {
	return target(v, logger, false)
}

// ClientTarget is Target for the real clients (run them with
// WithClientFront's options): served over https (kubectl sends no
// credential over plain HTTP), and relaying what kubectl reads before an
// exec (discovery, the pod: proxyundertest.Config.RelayReads), as every
// pass-through proxy a user points kubectl at does.
func ClientTarget(v proxyundertest.Variant, logger *slog.Logger) harness.Target {
	return target(v, logger, true)
}

func target(v proxyundertest.Variant, logger *slog.Logger, forClients bool) harness.Target {
	newHandler := func(b harness.Backend) (http.Handler, error) {
		return proxyundertest.New(proxyundertest.Config{
			FrontToken: frontToken, RelayReads: forClients,
			Backend: b.URL, TLSConfig: b.TLSConfig, Token: b.Token, Variant: v, Logger: CaseLogger(logger, b),
			PingInterval: proxyundertest.SuitePingInterval, PongTimeout: proxyundertest.SuitePongTimeout,
		})
	}
	if forClients {
		return harness.TLSHandlerTarget(newHandler, loopbackTLS().Server)
	}
	return harness.HandlerTarget(newHandler)
}

// CaseLogger is logger, also writing warnings and errors to b's output
// (redacted, as text).
func CaseLogger(logger *slog.Logger, b harness.Backend) *slog.Logger {
	if b.Output == nil {
		return logger
	}
	out := harness.RedactingHandler(slog.NewTextHandler(b.Output, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if logger == nil {
		return slog.New(out)
	}
	return slog.New(slog.NewMultiHandler(logger.Handler(), out))
}

// Run runs cases against each variant (Correct included, as the control),
// atOnce variants at a time (at least 1), then checks each for leaked
// goroutines, one after the other (a leak check measures the whole
// process).
func Run(ctx context.Context, variants []proxyundertest.Variant, cases []scenarios.Case, opts harness.Options, atOnce int) []Result {
	relay := opts.RealClient != scenarios.ClientEmulator // a real client's run: ClientTarget
	return run(ctx, variants, func(v proxyundertest.Variant) harness.Target { return target(v, opts.Logger, relay) }, nil, cases, opts, atOnce)
}

// RunTranslator is Run for the translating reference proxy speaking d
// (over client-go's fallback executor, or SPDY alone): its variants
// (TranslatorCorrect included, as the control) against d's cases (from
// scenarios.DialectCases). Result.Variant holds each variant's name.
func RunTranslator(ctx context.Context, d *dialect.Dialect, forceSPDY bool, variants []proxyundertest.TranslatorVariant, cases []scenarios.Case, opts harness.Options, atOnce int) []Result {
	names := make([]proxyundertest.Variant, len(variants))
	for i, v := range variants {
		names[i] = proxyundertest.Variant(v)
	}
	return run(ctx, names, func(v proxyundertest.Variant) harness.Target {
		return TranslatorTarget(proxyundertest.TranslatorVariant(v), d, forceSPDY, opts.Logger)
	}, d, cases, opts, atOnce)
}

// run is Run with targetFor making each variant's target; leak checks
// speak d (nil: the exec subprotocols).
func run(ctx context.Context, variants []proxyundertest.Variant, targetFor func(proxyundertest.Variant) harness.Target, d *dialect.Dialect, cases []scenarios.Case, opts harness.Options, atOnce int) []Result {
	opts = WithFront(opts)
	opts.KeepaliveBound = proxyundertest.SuiteKeepalive
	out := make([]Result, len(variants))
	sem := make(chan struct{}, max(1, atOnce))
	var wg sync.WaitGroup
	for i, v := range variants {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			start := time.Now()
			rep := harness.Run(ctx, targetFor(v), cases, opts)
			res := Result{Variant: v, LooksLike: harness.LooksLike(rep), LooksLikeIDs: harness.LooksLikeIDs(rep)}
			for _, r := range rep.Results {
				switch {
				case r.Verdict == harness.Error:
					res.Errors = append(res.Errors, r.Name)
					res.Failures = append(res.Failures, firstFailure(r))
				case r.Verdict == harness.Fail:
					res.Must++
					res.By = append(res.By, r.Name)
					res.Failures = append(res.Failures, firstFailure(r))
				case r.Verdict == harness.NonStrict:
					res.Should++
					res.By = append(res.By, r.Name)
					res.Failures = append(res.Failures, firstFailure(r))
				}
			}
			res.Duration = time.Since(start)
			out[i] = res
		}()
	}
	wg.Wait()
	for i := range out {
		res := &out[i]
		start := time.Now()
		leaks, err := leakCheck(ctx, targetFor(res.Variant), d, opts)
		if err != nil {
			res.Errors = append(res.Errors, "leak check: "+err.Error())
		}
		res.LeakedGoroutines, res.LeakedFiles = leaks.Goroutines, leaks.Files
		if leaks.Goroutines > 0 {
			res.LooksLike = append(res.LooksLike, fmt.Sprintf("looks like: a goroutine leaked per session (%d after %d sessions)", leaks.Goroutines, LeakSessions))
		}
		if leaks.Files > 0 {
			res.LooksLike = append(res.LooksLike, fmt.Sprintf("looks like: an open file leaked per session (%d after %d sessions)", leaks.Files, LeakSessions))
		}
		res.Killed = res.Must+res.Should > 0 || leaks.Goroutines > 0 || leaks.Files > 0
		res.Duration += time.Since(start)
	}
	return out
}

// LeakSessions is how many sessions LeakCheck runs.
const LeakSessions = 10

// LeakCheck runs LeakSessions sessions (v5, tty, the user types exit:
// the one ending every variant survives) through target one after
// another, each with its own proxy, and returns how many goroutines
// outlived them: the count must come back to what it was before (a leak
// of one per session shows as LeakSessions). It measures the whole
// process, so nothing else may run meanwhile.
func LeakCheck(ctx context.Context, target harness.Target, opts harness.Options) (Leaks, error) {
	return leakCheck(ctx, target, nil, opts)
}

// leakCheck is LeakCheck with its case in dialect d (nil: v5).
func leakCheck(ctx context.Context, target harness.Target, d *dialect.Dialect, opts harness.Options) (Leaks, error) {
	cs, _ := scenarios.DialectCases(scenarios.Disconnects(), d)
	want := "v5.channel.k8s.io/tty/shell/user-types-exit"
	if !d.IsKubernetes() {
		want = d.Name + "/tty/shell/user-types-exit"
	}
	i := slices.IndexFunc(cs, func(c scenarios.Case) bool { return c.Name() == want })
	if i < 0 {
		return Leaks{}, fmt.Errorf("mutants: no case %s", want)
	}
	c := cs[i]
	// What the variant does wrong is the matrix's business; here a short
	// grace keeps a failing session from costing the full period.
	opts.Grace = 500 * time.Millisecond
	baseG := settled(ctx, runtime.NumGoroutine, -1)
	baseF := settled(ctx, openFiles, -1)
	for range LeakSessions {
		if r := harness.RunCase(ctx, target, c, opts); r.Verdict == harness.Error {
			return Leaks{}, fmt.Errorf("mutants: leak check case: %s", strings.Join(r.Failures, "; "))
		}
	}
	var l Leaks
	// Goroutines and files that come and go (the process-table scanner,
	// timers) make a few of noise; a leak per session shows as
	// LeakSessions.
	if n := settled(ctx, runtime.NumGoroutine, baseG) - baseG; n >= LeakSessions/2 {
		l.Goroutines = n
	}
	if n := settled(ctx, openFiles, baseF) - baseF; n >= LeakSessions/2 {
		l.Files = n
	}
	return l, nil
}

// Leaks is what LeakCheck found left after LeakSessions sessions.
type Leaks struct {
	Goroutines int // goroutines more than before
	Files      int // open file descriptors more than before
}

// openFiles counts this process's open file descriptors.
func openFiles() int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(fds)
}

// settled waits (up to 5 s) until count() is at most want (any count if
// want < 0, after it stopped falling) and returns it.
func settled(ctx context.Context, count func() int, want int) int {
	deadline := time.Now().Add(5 * time.Second)
	n := count()
	stable := 0
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if want >= 0 && n <= want {
			return n
		}
		t := time.NewTimer(20 * time.Millisecond)
		<-t.C // a sampling period of the count, not a synchronisation
		m := count()
		if want < 0 {
			if m >= n {
				if stable++; stable >= 5 {
					return m
				}
			} else {
				stable = 0
			}
		}
		n = m
	}
	return n
}

// Write prints the table of variants and the cases that kill them.
func Write(w io.Writer, results []Result) {
	fmt.Fprintf(w, "%-22s %-9s %5s %6s %7s  %s\n", "variant", "verdict", "MUST", "SHOULD", "leaks", "killed by (first cases)")
	for _, r := range results {
		verdict := "SURVIVED"
		if r.Killed {
			verdict = "KILLED"
		}
		if r.Variant == proxyundertest.Correct {
			verdict = "control:" + map[bool]string{true: "KILLED", false: "clean"}[r.Killed]
		}
		by := r.By
		more := ""
		if len(by) > 3 {
			more = fmt.Sprintf(" ... (+%d)", len(by)-3)
			by = by[:3]
		}
		fmt.Fprintf(w, "%-22s %-9s %5d %6d %7s  %s%s\n", r.Variant, verdict, r.Must, r.Should, fmt.Sprintf("%dg/%df", r.LeakedGoroutines, r.LeakedFiles), strings.Join(by, ", "), more)
		for _, l := range r.LooksLike {
			fmt.Fprintf(w, "%-22s   %s\n", "", l)
		}
		for _, e := range r.Errors {
			fmt.Fprintf(w, "%-22s   ERROR: %s\n", "", e)
		}
	}
}

// Score is the killed share of the broken variants (Correct excluded).
func Score(results []Result) (killed, total int) {
	for _, r := range results {
		if r.Variant == proxyundertest.Correct {
			continue
		}
		total++
		if r.Killed {
			killed++
		}
	}
	return killed, total
}

// TranslatorTarget serves the translating reference proxy as variant v,
// in-process, speaking d at its front (nil: json-operation), over
// client-go's fallback executor or, with forceSPDY, its SPDY executor
// alone; keepalive and front credential as Target's.
func TranslatorTarget(v proxyundertest.TranslatorVariant, d *dialect.Dialect, forceSPDY bool, logger *slog.Logger) harness.Target {
	proxyundertest.DiscardClientGoLogs()
	return harness.HandlerTarget(func(b harness.Backend) (http.Handler, error) {
		var ca []byte
		if b.CAFile != "" {
			var err error
			if ca, err = os.ReadFile(b.CAFile); err != nil {
				return nil, err
			}
		}
		return proxyundertest.NewTranslator(proxyundertest.TranslatorConfig{
			Config: proxyundertest.Config{
				FrontToken: frontToken,
				Backend:    b.URL, TLSConfig: b.TLSConfig, Token: b.Token, Logger: CaseLogger(logger, b),
				PingInterval: proxyundertest.SuitePingInterval, PongTimeout: proxyundertest.SuitePongTimeout,
			},
			BackendCA: ca, Dialect: d, ForceSPDY: forceSPDY, Broken: v, ExitWait: proxyundertest.SuiteExitWait,
		})
	})
}
