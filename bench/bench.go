// Package bench measures what an exec proxy costs and how it cleans up at
// scale, always beside "direct" (the client straight to the fake API
// server) in the same run, so that every figure reads as a difference or a
// ratio to direct on the same machine:
//
//	client ──> [ target: a proxy, or nothing for direct ] ──> fakeapiserver ──> real shells
//	   │                                                            │               │
//	   └── keystroke echo, throughput, set-up time      sessions, process table ───┘
//
// The figures: keystroke latency (idle and beside busy sessions),
// throughput per subprotocol (stdout and stdin), session set-up, the
// proxy's idle cost per session, and mass drop: every client connection
// dropped at once, then the time until the operating system's process
// table shows no shell of theirs. A figure is measured Runs times and
// reported as min, median and max. The bench is a measurement, not a
// test: it asserts nothing about times (its Goals are reported).
package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
)

// Target is one proxy the bench measures.
type Target struct {
	// Name names the target in the tables ("direct" is taken).
	Name string
	// Start starts the proxy in front of the bench's fake API server,
	// once per figure.
	Start harness.Target
	// Header is what the client sends the proxy (its credentials).
	Header http.Header
	// FrontTLS trusts an https front.
	FrontTLS *tls.Config
	// Dialect is the front dialect of a translating proxy (nil: the exec
	// subprotocols). A dialect's sessions have a tty and an interactive
	// shell; figures it cannot carry (notty throughput) are left out.
	Dialect *dialect.Dialect
	// Memory says how the proxy's idle cost is measured: MemoryInProcess
	// (this process's Go heap and goroutines, less direct's),
	// MemoryProcess (the resident memory and threads of the processes a
	// harness.CommandTarget started) or MemoryNone.
	Memory string
}

// How a target's idle cost is measured.
const (
	MemoryInProcess = "in-process"
	MemoryProcess   = "process"
	MemoryNone      = "none"
)

// DirectName is the name of the target without a proxy.
const DirectName = "direct"

// Config is what to measure, and how much.
type Config struct {
	// Runs is how many times each figure is measured (default 3).
	Runs int
	// Keystrokes per latency run (default 1000) and the busy sessions
	// beside the second latency figure (default 50; 0 leaves it out).
	Keystrokes int
	Busy       int
	// StdoutBytes and StdinBytes per throughput run (defaults 32 MiB and
	// 16 MiB).
	StdoutBytes int64
	StdinBytes  int64
	// Setups is the number of sessions per set-up run (default 200).
	Setups int
	// IdleSizes are the numbers of idle sessions the idle cost is
	// measured at (default 100 and 1000).
	IdleSizes []int
	// DropSizes are the numbers of sessions dropped at once (default
	// 1000); each size is measured Runs times but those above
	// DropRunsAbove, once.
	DropSizes     []int
	DropRunsAbove int
	// DropKinds are the ways the clients go (default all of DropKinds).
	DropKinds []string
	// DropBound is how long a mass drop waits for the shells to go
	// (default 10 s); half-open adds the target's Keepalive.
	DropBound time.Duration
	// Keepalive is what each target promises for a silent client (ping
	// interval + pong timeout), by target name; the half-open drop waits
	// DropBound beyond it.
	Keepalive map[string]time.Duration
	// Figures, if non-empty, are the groups to measure (Groups); default
	// all.
	Figures []string
	// NoDirect leaves direct out: for a run whose figures are not
	// compared (the reference proxy's mass drop at scale).
	NoDirect bool
	// Open is how many sessions are opened at once (default 32).
	Open int
	// Fake, if set, is the fake API server to use (one a proxy already
	// running points at); Run neither starts nor closes it. Default: a
	// fake of Run's own.
	Fake *fakeapiserver.Server
	// Logger receives progress (nil discards).
	Logger *slog.Logger
}

// The figure groups.
const (
	GroupKeystroke  = "keystroke"
	GroupThroughput = "throughput"
	GroupSetup      = "setup"
	GroupIdle       = "idle"
	GroupDrop       = "drop"
)

// Groups are the figure groups in report order.
func Groups() []string {
	return []string{GroupKeystroke, GroupThroughput, GroupSetup, GroupIdle, GroupDrop}
}

// The ways every client connection is dropped at once.
const (
	DropFIN      = "fin"        // each client closes TCP (FIN), no close frame
	DropRST      = "rst"        // each client resets TCP (RST)
	DropLBReset  = "lb-restart" // a load balancer on the client leg restarts: it closes every connection both ways
	DropHalfOpen = "half-open"  // the client leg goes silent (no FIN, no RST): only a keepalive can tell
)

// DropKinds are the drop kinds in report order.
func DropKinds() []string { return []string{DropFIN, DropRST, DropLBReset, DropHalfOpen} }

func (c Config) withDefaults() Config {
	if c.Runs <= 0 {
		c.Runs = 3
	}
	if c.Keystrokes <= 0 {
		c.Keystrokes = 1000
	}
	if c.Busy < 0 {
		c.Busy = 0
	}
	if c.StdoutBytes <= 0 {
		c.StdoutBytes = 32 << 20
	}
	if c.StdinBytes <= 0 {
		c.StdinBytes = 16 << 20
	}
	if c.Setups <= 0 {
		c.Setups = 200
	}
	if len(c.IdleSizes) == 0 {
		c.IdleSizes = []int{100, 1000}
	}
	if len(c.DropSizes) == 0 {
		c.DropSizes = []int{1000}
	}
	if c.DropRunsAbove <= 0 {
		c.DropRunsAbove = 1000
	}
	if len(c.DropKinds) == 0 {
		c.DropKinds = DropKinds()
	}
	if c.DropBound <= 0 {
		c.DropBound = 10 * time.Second
	}
	if len(c.Figures) == 0 {
		c.Figures = Groups()
	}
	if c.Open <= 0 {
		c.Open = 32
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate says what is wrong with c, if anything.
func (c Config) Validate() error {
	var errs []error
	for _, g := range c.Figures {
		if !slices.Contains(Groups(), g) {
			errs = append(errs, fmt.Errorf("figure group %q: want one of %v", g, Groups()))
		}
	}
	for _, k := range c.DropKinds {
		if !slices.Contains(DropKinds(), k) {
			errs = append(errs, fmt.Errorf("drop kind %q: want one of %v", k, DropKinds()))
		}
	}
	for _, n := range append(append([]int(nil), c.IdleSizes...), c.DropSizes...) {
		if n <= 0 {
			errs = append(errs, fmt.Errorf("a number of sessions must be positive, not %d", n))
		}
	}
	return errors.Join(errs...)
}

// Run measures direct and then each target, in one fake API server, and
// returns the report. A figure a target fails to give is an error in its
// report, not the end of the run; Run fails only when the bench cannot
// start (the fake API server) or ctx ends.
func Run(ctx context.Context, targets []Target, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	for _, t := range targets {
		if t.Name == DirectName || t.Name == "" {
			return nil, fmt.Errorf("bench: a target needs a name other than %q", DirectName)
		}
	}
	fake := cfg.Fake
	if fake == nil {
		var err error
		fake, err = fakeapiserver.New(fakeapiserver.Config{
			// What the fake keeps of each session costs direct and every
			// target alike; keep it small.
			RecordPayload: 16, RecordFrames: 16, KeepEnded: 64, KeepEndedFor: time.Minute,
			// A real API server's buffers, not the suite's small ones.
			AutotuneBuffers: true,
		})
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		if err := fake.Start(); err != nil {
			fake.Close()
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer fake.Close()
	}

	rep := &Report{Schema: SchemaVersion, Started: time.Now().UTC(), Machine: CurrentMachine(), Config: cfg.public()}
	b := &bencher{cfg: cfg, fake: fake, log: cfg.Logger}
	// A warm-up, not measured: the first figures of a process (direct's)
	// would otherwise pay for its first page faults and collections.
	b.warmUp(ctx)
	all := targets
	if !cfg.NoDirect {
		all = append([]Target{{Name: DirectName, Memory: MemoryInProcess}}, targets...)
	}
	for _, t := range all {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Targets = append(rep.Targets, b.measure(ctx, t, rep.direct()))
	}
	rep.Took = time.Since(rep.Started).Round(time.Millisecond)
	rep.Finish()
	return rep, ctx.Err()
}
