package harness

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/faults"
	"github.com/execconform/execconform/proctable"
	"github.com/execconform/execconform/scenarios"
	"golang.org/x/sync/semaphore"
)

// Options configure a run.
type Options struct {
	// Parallel is how many cases run at once (default DefaultParallel()).
	Parallel int
	// MaxSessions, if not 0, bounds the sessions in flight across the
	// running cases: a case waits until its sessions fit (one with more
	// runs alone). Against a real cluster every session is an exec the
	// runtime starts in the one pod: on a 2-core kind node six 20-session
	// cases at once (120 execs) stalled every shell in the pod for 15 s.
	// The fake API server needs no bound.
	MaxSessions int
	// Grace is how long a session's processes may take to vanish after the
	// ending, and the bound on every wait for an event after it (default 3s).
	Grace time.Duration
	// Namespace and Pod name the exec endpoint (default "default", "fakepod").
	Namespace, Pod string
	// ClientHeader is sent by the client emulator (Origin, cookies, auth for the proxy).
	ClientHeader map[string][]string
	// Secrets are values no result may show (a cluster's token, a token
	// file's contents); besides them every result is redacted of the
	// backend's token and ClientHeader's credentials (HeaderSecrets).
	Secrets []string
	// Backend configures each case's fake API server; Logger is set from Logger.
	Backend fakeapiserver.Config
	// Server provides each case's API server (default FakeServer(Backend)).
	Server Server
	// Logger receives component logs (nil discards).
	Logger *slog.Logger
	// KeepaliveBound is the longest the target promises to take to notice
	// a dead client that sends nothing (its ping interval plus pong
	// timeout). Half-open cases wait this plus Grace; with 0 they are
	// reported as INFO, since nothing bounds them.
	KeepaliveBound time.Duration
	// Dialect and NotApplicable, for a run of dialect cases
	// (scenarios.DialectCases), go into the Report as they are.
	Dialect       string
	NotApplicable []scenarios.NotApplicable
	// RealClient, for a run of a real client's cases
	// (scenarios.ClientCases), goes into the Report.
	RealClient scenarios.Client
	// Clients are the real clients' dialers, for cases whose Client is
	// not the emulator (scenarios.ClientCases); a case whose client has
	// none is an ERROR.
	Clients map[scenarios.Client]clients.Dialer
	// AnswerTimeout bounds each wait for the shell's output in a script
	// (default 5 s). A real cluster's exec can take longer to start on a
	// loaded node: the end-to-end tests give it 20 s.
	AnswerTimeout time.Duration
	// FrontTLS is the client's TLS configuration for a target served over
	// https, and FrontCA, if known, the CA it trusts as PEM (what a real
	// client's kubeconfig or rest.Config takes).
	FrontTLS *tls.Config
	FrontCA  []byte
	// OnResult, if set, is called as each case ends (from the case's goroutine).
	OnResult func(Result)
	// OnStart, if set, is called as each case starts (from its goroutine).
	OnStart func(scenarios.Case)
	// Seed, if not 0, shuffles the order in which the cases start (the
	// report keeps the listed order), to find cases that disturb each other;
	// the same seed gives the same order.
	Seed int64
}

// DefaultParallel is how many cases run at once by default: 8 per core,
// since a case mostly waits (on a shell, a socket, a keepalive, a grace
// period) and costs little CPU.
func DefaultParallel() int { return 8 * runtime.GOMAXPROCS(0) }

// ClientParallel is how many cases of a real client run at once by
// default: 4 per core. Each session is a process (kubectl, a client-go
// program, a browser tab) that starts, links and schedules on the same
// cores as the shells: at 8 per core (two matrices at once) a 1 MiB
// paste's shell took longer than the grace period to read it.
func ClientParallel() int { return 4 * runtime.GOMAXPROCS(0) }

func (o *Options) defaults() {
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel()
		if o.RealClient != scenarios.ClientEmulator {
			o.Parallel = ClientParallel()
		}
	}
	if o.Grace <= 0 {
		o.Grace = 3 * time.Second
	}
	if o.AnswerTimeout <= 0 {
		o.AnswerTimeout = 5 * time.Second
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Pod == "" {
		o.Pod = "fakepod"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger = slog.New(RedactingHandler(o.Logger.Handler()))
	if o.Server == nil {
		o.Server = FakeServer(o.Backend)
	}
}

// RunOptions are the settings of a run with o, defaults applied, as a
// report gives them.
func (o Options) RunOptions() RunOptions {
	o.defaults()
	return RunOptions{Parallel: o.Parallel, MaxSessions: o.MaxSessions, Grace: o.Grace, KeepaliveBound: o.KeepaliveBound, Seed: o.Seed}
}

// Run runs every case against target, Parallel at a time, and returns
// every result in case order. It never stops early: each failure is
// collected. ctx cancels the run (cases already running end as errors).
func Run(ctx context.Context, target Target, cases []scenarios.Case, opts Options) *Report {
	opts.defaults()
	rep := &Report{Started: time.Now(), Results: make([]Result, len(cases)), Options: opts.RunOptions(),
		Dialect: opts.Dialect, NotApplicable: opts.NotApplicable, RealClient: string(opts.RealClient)}
	pool := NewPool(opts.Parallel, opts.MaxSessions)
	var wg sync.WaitGroup
	for _, i := range startOrder(cases, opts.Seed) {
		c := cases[i]
		wg.Add(1)
		release := pool.Acquire(c)
		go func() {
			defer wg.Done()
			defer release()
			if ctx.Err() != nil {
				// Interrupted before the case's turn: it was not run.
				rep.Results[i] = notRun(c)
				if opts.OnResult != nil {
					opts.OnResult(rep.Results[i])
				}
				return
			}
			if opts.OnStart != nil {
				opts.OnStart(c)
			}
			rep.Results[i] = RunCase(ctx, target, c, opts)
			if opts.OnResult != nil {
				opts.OnResult(rep.Results[i])
			}
		}()
	}
	wg.Wait()
	markNotFound(rep.Results)
	rep.Duration = time.Since(rep.Started)
	return rep
}

// startOrder is the order in which cases start: as listed, or shuffled
// by seed. A shuffled order still starts the cases that take the whole
// pool (Pool.Acquire) last, one after another: each waits for the pool to
// drain, and spread among the others they made a run 70% longer.
func startOrder(cases []scenarios.Case, seed int64) []int {
	order := make([]int, len(cases))
	for i := range order {
		order[i] = i
	}
	if seed == 0 {
		return order
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(wholePool(cases[a]), wholePool(cases[b]))
	})
	return order
}

// wholePool is 1 for a case that runs alone (see Pool.Acquire), else 0.
func wholePool(c scenarios.Case) int {
	if c.Scenario.Sessions >= 100 {
		return 1
	}
	return 0
}

// Pool bounds how many cases run at once. A case takes one slot per 25
// sessions, up to half the pool; a case of 100 sessions or more takes the
// whole pool and runs alone (two 200-session cases at once starved shells
// and keepalives on 2 cores: their timing measured the machine, not the
// proxy). With a session bound (Options.MaxSessions) a case also takes
// its sessions from that budget, once it has its slots.
type Pool struct {
	sem      *semaphore.Weighted
	size     int
	sessions *semaphore.Weighted // nil: no session bound
	max      int
}

// NewPool makes a pool of parallel slots (default DefaultParallel()) and,
// if maxSessions is not 0, a budget of that many sessions in flight.
func NewPool(parallel, maxSessions int) *Pool {
	if parallel <= 0 {
		parallel = DefaultParallel()
	}
	p := &Pool{sem: semaphore.NewWeighted(int64(parallel)), size: parallel}
	if maxSessions > 0 {
		p.sessions, p.max = semaphore.NewWeighted(int64(maxSessions)), maxSessions
	}
	return p
}

// Acquire waits for c's slots (and sessions) and returns the function
// that frees them. Every case takes slots first, then sessions, so no
// two cases can each hold what the other waits for.
func (p *Pool) Acquire(c scenarios.Case) (release func()) {
	w := int64(max(1, min(p.size/2, c.Scenario.Sessions/25)))
	if wholePool(c) == 1 {
		w = int64(p.size) // a load case runs alone
	}
	_ = p.sem.Acquire(context.Background(), w)
	if p.sessions == nil {
		return func() { p.sem.Release(w) }
	}
	s := int64(min(p.max, max(1, c.Scenario.Sessions)))
	_ = p.sessions.Acquire(context.Background(), s)
	return func() {
		p.sessions.Release(s)
		p.sem.Release(w)
	}
}

// RunCase runs one case in isolation: its own fake API server, its own
// proxy, its own client. A watchdog (the case's timeout) turns a hung case
// into a failure.
func RunCase(ctx context.Context, target Target, c scenarios.Case, opts Options) (res Result) {
	opts.defaults()
	start := time.Now()
	res = Result{
		Name: c.Name(), Scenario: c.Scenario.Name, Protocol: protocolName(c), Transport: transportName(c), Dialect: c.DialectName(),
		RealClient: string(c.Client), TTY: c.TTY, Level: c.Level, TimeToReap: -1, Started: start,
		Client: ClientView{CloseCode: -1}, NeedsKeepalive: c.Want.KeepaliveBound,
	}
	if OnlyReported(c, opts.KeepaliveBound) {
		// Nothing bounds how long the target may take: report, do not judge.
		c.Level, res.Level = scenarios.INFO, scenarios.INFO
		res.Notes = append(res.Notes, NoKeepaliveNote)
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.Timeout()+opts.KeepaliveBound)
	defer cancel()
	r := &caseRun{c: c, target: target, opts: opts, res: &res, log: opts.Logger.With("case", c.Name()), moreFailing: map[int]bool{}, legs: map[scenarios.Leg]*faults.Link{},
		hooks: &caseHooks{out: &TailBuffer{Max: maxTargetOutput}}}
	defer func() {
		r.cleanup()
		if n := len(r.moreFailing); n > 0 {
			msg := fmt.Sprintf("... and %d more of the %d sessions failed too", n, len(r.sessions))
			res.Failures = append(res.Failures, msg)
			res.Findings = append(res.Findings, Finding{Check: CheckRun, Session: -1, Message: msg})
		}
		res.Duration = time.Since(start)
		res.Verdict = verdict(c.Level, res, r.suiteErr)
		if parent.Err() != nil && res.Verdict != Pass {
			// The run was interrupted (Ctrl-C, SIGTERM, a caller's cancel)
			// while the case ran: what failed then is no verdict on the
			// target.
			res.Interrupted = true
			res.Verdict = Error
			msg := InterruptedNote + " while it ran: its failures may be the interruption's, not the target's"
			res.Failures = append(res.Failures, msg)
			res.Findings = append(res.Findings, Finding{Check: CheckSuite, Session: -1, Message: msg})
		}
		if res.Failed() {
			res.LooksLikeIDs, res.LooksLike = Diagnose(res)
		}
		res.Evidence = EvidenceOf(res).Lines()
		redactResult(&res, r.secrets())
		if res.Verdict == Pass {
			for _, l := range res.Legs {
				if l.Record != nil {
					t := l.Record.Trim(TrimPassing)
					l.Record = &t
				}
			}
		}
	}()
	if err := r.run(ctx); err != nil {
		// The deadline, not ctx.Err(): a network deadline taken from ctx can
		// fire a moment before ctx's own timer does.
		if dl, _ := ctx.Deadline(); ctx.Err() != nil || !time.Now().Before(dl) {
			err = fmt.Errorf("watchdog: case did not finish within %s: %w", c.Timeout(), err)
		}
		res.Failures = append(res.Failures, err.Error())
		check, status := checkOf(err)
		res.Findings = append(res.Findings, Finding{Check: check, Session: -1, Message: err.Error(), HTTPStatus: status})
		var se *suiteError
		r.suiteErr = errors.As(err, &se)
	}
	return res
}

// InterruptedNote begins the failure of a case the run's interruption
// cut short, or did not let run.
const InterruptedNote = "interrupted: the run was stopped"

// notRun is the result of case c, which an interrupted run never started.
func notRun(c scenarios.Case) Result {
	msg := InterruptedNote + " before this case started: not run"
	return Result{
		Name: c.Name(), Scenario: c.Scenario.Name, Protocol: protocolName(c), Transport: transportName(c), Dialect: c.DialectName(), RealClient: string(c.Client), TTY: c.TTY, Level: c.Level,
		Verdict: Error, Interrupted: true, NotRun: true, TimeToReap: -1, Started: time.Now(),
		Client: ClientView{CloseCode: -1}, Failures: []string{msg},
		Findings: []Finding{{Check: CheckSuite, Session: -1, Message: msg}},
	}
}

// maxTargetOutput is how much of an external proxy's output a case keeps.
const maxTargetOutput = 16 << 10

// secrets are the values the case's result must not show.
func (r *caseRun) secrets() []string {
	out := append(slices.Clone(r.opts.Secrets), HeaderSecrets(r.opts.ClientHeader)...)
	if r.server != nil {
		out = append(out, r.server.Backend().Token)
	}
	return out
}

// suiteError marks a failure of the suite's own machinery (the backend or
// the target could not start): the case could not run, the verdict is ERROR.
type suiteError struct{ err error }

func (e *suiteError) Error() string { return e.err.Error() }
func (e *suiteError) Unwrap() error { return e.err }

func verdict(level scenarios.Level, res Result, suiteErr bool) Verdict {
	switch {
	case suiteErr:
		return Error
	case level == scenarios.INFO:
		return Info
	case len(res.Failures) == 0:
		return Pass
	case level == scenarios.SHOULD:
		return NonStrict
	}
	return Fail
}

// caseRun holds the moving parts of one case.
type caseRun struct {
	c        scenarios.Case
	target   Target
	opts     Options
	res      *Result
	log      *slog.Logger
	server   CaseServer
	stop     func()
	stopOnce sync.Once
	hooks    *caseHooks
	sessions []*sessionRun
	suiteErr bool
	// trace records the client leg of the first session.
	trace *fakeapiserver.Recorder
	// knocked is the knock's connection, when the proxy let it through;
	// knockStatus the HTTP status of its answer.
	knocked     *execclient.Conn
	knockStatus int

	legs map[scenarios.Leg]*faults.Link

	mu          sync.Mutex // guards res and the maps below while sessions are judged in parallel
	failing     map[int]bool
	moreFailing map[int]bool
}

// sessionRun is one client session of a case and its backend session.
type sessionRun struct {
	idx    int
	client execclient.Session
	sess   BackendSession
}

// prefix names the session in messages of cases with several.
func (r *caseRun) prefix(s *sessionRun) string {
	if len(r.sessions) <= 1 || s == nil {
		return ""
	}
	return fmt.Sprintf("session %d/%d: ", s.idx+1, len(r.sessions))
}

// maxFailingSessions is how many sessions' failures a report spells out;
// the others are counted.
const maxFailingSessions = 3

// fail records an unmet expectation of check on session s (nil: the case),
// in words and as a Finding.
func (r *caseRun) fail(s *sessionRun, check, format string, args ...any) {
	r.failWith(s, Finding{Check: check}, format, args...)
}

// failWith is fail with the finding's evidence set.
func (r *caseRun) failWith(s *sessionRun, f Finding, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s != nil && len(r.sessions) > 1 {
		if r.failing == nil {
			r.failing = map[int]bool{}
		}
		if !r.failing[s.idx] && len(r.failing) >= maxFailingSessions {
			r.moreFailing[s.idx] = true
			return
		}
		r.failing[s.idx] = true
	}
	msg := r.prefix(s) + fmt.Sprintf(format, args...)
	r.res.Failures = append(r.res.Failures, msg)
	f.Session, f.Message = -1, msg
	if s != nil {
		f.Session = s.idx
	}
	r.res.Findings = append(r.res.Findings, f)
}

func (r *caseRun) note(s *sessionRun, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Notes = append(r.res.Notes, r.prefix(s)+fmt.Sprintf(format, args...))
}

// enter translates the script's Enter (\r, as a terminal sends it) for the
// case's mode: a shell on pipes needs \n.
func (r *caseRun) enter(s string) string {
	if r.c.TTY {
		return s
	}
	return strings.ReplaceAll(s, "\r", "\n")
}

// eachSession runs f on every session at once and returns the first error.
func (r *caseRun) eachSession(f func(s *sessionRun) error) error {
	errs := make([]error, len(r.sessions))
	var wg sync.WaitGroup
	for i, s := range r.sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(s); err != nil {
				errs[i] = fmt.Errorf("%s%w", r.prefix(s), err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *caseRun) run(ctx context.Context) error {
	server, err := r.opts.Server.Open(ctx, CaseInfo{Name: r.c.Name(), Namespace: r.opts.Namespace, Pod: r.opts.Pod, Logger: r.log})
	if err != nil {
		return &suiteError{fmt.Errorf("the API server did not start: %w", err)}
	}
	r.server = server
	// The backend leg: proxy -> link -> API server.
	backend := server.Backend()
	if r.legs[scenarios.BackendLeg], err = faults.NewLink(r.c.Name()+"/backend", backend.URL.Host, r.log); err != nil {
		return &suiteError{err}
	}
	bu := *backend.URL
	bu.Host = r.legs[scenarios.BackendLeg].Addr()
	backend.URL = &bu
	tctx := withHooks(context.WithValue(ctx, caseNameKey{}, r.c.Name()), r.hooks)
	front, stop, err := r.target(tctx, backend)
	if err != nil {
		return &suiteError{fmt.Errorf("the target did not start: %w", err)}
	}
	r.stop = stop
	// The client leg: client -> link -> proxy, where a load balancer sits.
	if r.legs[scenarios.ClientLeg], err = faults.NewLink(r.c.Name()+"/client", front.Host, r.log); err != nil {
		return &suiteError{err}
	}
	front.Host = r.legs[scenarios.ClientLeg].Addr()
	if err := r.applyFaults(scenarios.AtStart); err != nil {
		return err
	}
	if r.c.Scenario.Knock != "" {
		if err := r.knock(ctx, front); err != nil {
			return err
		}
	}

	n := max(1, r.c.Scenario.Sessions)
	r.sessions = make([]*sessionRun, n)
	for i := range r.sessions {
		r.sessions[i] = &sessionRun{idx: i}
	}
	// Dial every session, a few at a time; the container parameter (which
	// the proxy forwards) tells the backend sessions apart.
	sem := make(chan struct{}, 16)
	if err := r.eachSession(func(s *sessionRun) error {
		sem <- struct{}{}
		defer func() { <-sem }()
		return r.dial(ctx, front, s)
	}); err != nil {
		return err
	}
	r.res.Client.Protocol = r.sessions[0].client.Protocol().String()
	if err := r.eachSession(func(s *sessionRun) error {
		for i, a := range r.c.Scenario.Script {
			if err := r.act(ctx, s, a); err != nil {
				return fmt.Errorf("script step %d (%s %q): %w", i+1, a.Kind, a.Text, err)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	faulted := time.Now()
	if err := r.applyFaults(scenarios.AfterScript); err != nil {
		return err
	}
	if nudge := r.c.Scenario.Nudge; nudge != "" {
		_ = r.eachSession(func(s *sessionRun) error {
			_ = s.client.Type(r.enter(nudge)) // the fault may already have cut it
			return nil
		})
	}
	if err := r.applyFaults(scenarios.AtEnding); err != nil {
		return err
	}
	ended, err := r.end(ctx)
	if r.c.Scenario.End.Kind == scenarios.EndFault {
		ended = faulted // the faults were the ending
	}
	if !ended.IsZero() {
		r.res.EndedAt = ended.Sub(r.res.Started)
	}
	if err != nil {
		return err
	}
	r.judge(ctx, ended)
	r.checkKnockBackend()
	for _, f := range r.hooks.runChecks(ctx) {
		r.fail(nil, CheckTarget, "%s", f)
	}
	return nil
}

// dial opens session s through the proxy and finds its backend session.
func (r *caseRun) dial(ctx context.Context, front *url.URL, s *sessionRun) error {
	// A generous handshake bound: a loaded machine (200 sessions, the race
	// detector) must not turn into a failure of the proxy.
	copts := execclient.Options{Header: r.opts.ClientHeader, Logger: r.log, HandshakeTimeout: 15 * time.Second}
	if r.c.Protocol != execproto.ProtocolNone {
		copts.Protocols = []execproto.Protocol{r.c.Protocol}
	}
	offer := r.c.Offer()
	if r.c.Scenario.Offer != nil || len(r.c.Scenario.OfferFirst) > 0 || r.c.SPDY() {
		copts.RawProtocols = r.withToken(offer)
	}
	if s.idx == 0 {
		r.res.Client.Offered = execproto.RedactOffer(offer)
	}
	if front.Scheme == "https" || front.Scheme == "wss" {
		copts.TLSConfig = r.opts.FrontTLS
	}
	if s.idx == 0 {
		r.trace = fakeapiserver.NewRecorder(time.Now(), r.c.Protocol, 0, 0)
		copts.Trace = r.trace
	}
	exec := r.server.Exec(s.idx, r.c.Command())
	var client execclient.Session
	var err error
	if r.c.Client != scenarios.ClientEmulator {
		client, err = r.dialClient(ctx, front, exec)
	} else if r.c.Dialect != nil {
		copts.Protocols, copts.RawProtocols = nil, nil
		client, err = execclient.DialDialect(ctx, front, r.c.Dialect, dialect.Params{
			Namespace: exec.Namespace, Pod: exec.Pod, Container: exec.Container, Command: exec.Command, TTY: r.c.TTY,
		}, copts)
	} else {
		client, err = r.dialSession(ctx, r.execURL(front, exec), copts)
	}
	if err != nil {
		var he *execclient.HandshakeError
		if errors.As(err, &he) {
			hint := refusalHint(he.StatusCode, front)
			if r.c.SPDY() && (he.StatusCode == 400 || he.StatusCode == 404 || he.StatusCode == 405) {
				hint = " (does the proxy serve SPDY/3.1 exec upgrades? client-go's SPDY executor, kubectl's fallback and every terminal built on them need it)"
			}
			if said := r.offerSaid(offer); said != "" && he.StatusCode == 403 {
				hint = said // a 403 for an offer of several names is about the offer
			}
			return &checkError{check: CheckUpgradeRefused, status: he.StatusCode,
				err: fmt.Errorf("the proxy refused the upgrade: HTTP %d: %s%s", he.StatusCode, strings.TrimSpace(he.Body), hint)}
		}
		return fmt.Errorf("dial the proxy: %w", err)
	}
	s.client = client
	if s.idx == 0 && client.Protocol() != "" {
		r.res.Client.Protocol = client.Protocol().String()
	}
	if got := client.Protocol(); got != r.c.Protocol && r.c.Dialect == nil && (got != "" || r.c.Client == scenarios.ClientEmulator) {
		return r.wrongProtocol(ctx, s, offer, got)
	}
	if s.sess, err = r.backendSession(ctx, s); err != nil {
		return fmt.Errorf("the proxy never opened the backend session: %w", err)
	}
	if s.idx == 0 {
		r.res.Observed.Protocol = s.sess.Recorder().Protocol().String()
		if r.res.Client.Protocol == "" {
			// A real client that cannot tell: what the backend negotiated
			// for what the proxy forwarded.
			r.res.Client.Protocol = r.res.Observed.Protocol
		}
	}
	if got := s.sess.Recorder().Protocol(); r.c.Client != scenarios.ClientEmulator && client.Protocol() == "" && got != r.c.Protocol {
		return &checkError{check: CheckWrongProtocol, err: fmt.Errorf("%s negotiated %q with the backend, want %q (what it negotiates straight with an API server)", r.c.Client, got.String(), r.c.Protocol.String())}
	}
	return nil
}

// backendSession finds s's backend session. A real client that ended
// before the proxy opened one (its upgrade refused, its process gone)
// says why at once, instead of at the case's deadline.
func (r *caseRun) backendSession(ctx context.Context, s *sessionRun) (BackendSession, error) {
	if r.c.Client == scenarios.ClientEmulator {
		return r.server.Session(ctx, s.idx)
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-s.client.Done():
			// A moment for a session that did open before the client
			// ended (an exit typed fast) to be found.
			t := time.NewTimer(r.opts.Grace)
			defer t.Stop()
			select {
			case <-t.C:
				cancel(fmt.Errorf("%s ended first: %s (output %q)", r.c.Client, s.client.End(), tail(s.client.Output(), 300)))
			case <-sctx.Done():
			}
		case <-sctx.Done():
		}
	}()
	sess, err := r.server.Session(sctx, s.idx)
	if err != nil && context.Cause(sctx) != nil && ctx.Err() == nil {
		return nil, context.Cause(sctx)
	}
	return sess, err
}

// dialClient starts the case's real client on exec through front.
func (r *caseRun) dialClient(ctx context.Context, front *url.URL, exec Exec) (execclient.Session, error) {
	d := r.opts.Clients[r.c.Client]
	if d == nil {
		return nil, &suiteError{fmt.Errorf("no %s client was set up for this run (harness.Options.Clients)", r.c.Client)}
	}
	req := clients.Request{Case: r.c, Front: front, Header: http.Header(r.opts.ClientHeader).Clone(), APIToken: r.server.Backend().Token,
		Namespace: exec.Namespace, Pod: exec.Pod, Container: exec.Container, Command: exec.Command, Logger: r.log}
	if front.Scheme == "https" {
		req.TLS, req.FrontCA = r.opts.FrontTLS, r.opts.FrontCA
	}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	return d.Dial(ctx, req)
}

// dialSession opens the case's client: a WebSocket, or SPDY for a SPDY case.
func (r *caseRun) dialSession(ctx context.Context, url string, opts execclient.Options) (execclient.Session, error) {
	if r.c.SPDY() {
		return execclient.DialSPDY(ctx, url, opts)
	}
	return execclient.Dial(ctx, url, opts)
}

// protocolName is Result.Protocol for c: its subprotocol, or its
// dialect's name.
func protocolName(c scenarios.Case) string {
	if d := c.DialectName(); d != "" {
		return d
	}
	return c.Protocol.String()
}

// transportName is Result.Transport for c: "spdy", or "" for WebSocket.
func transportName(c scenarios.Case) string {
	if c.SPDY() {
		return string(execproto.TransportSPDY)
	}
	return ""
}

// withToken is offer as the client sends it: OfferToken becomes the
// bearer-token subprotocol of the API server's token.
func (r *caseRun) withToken(offer []string) []string {
	out := slices.Clone(offer)
	for i, o := range out {
		if o == scenarios.OfferToken {
			out[i] = execproto.BearerProtocol(r.server.Backend().Token)
		}
	}
	return out
}

// offerSaid names, for a case whose client offers more than one name, the
// offer and what the API server picks for it (redacted).
func (r *caseRun) offerSaid(offer []string) string {
	if len(offer) < 2 {
		return ""
	}
	return fmt.Sprintf(" (the client offered [%s], for which the API server picks %q: did the proxy forward the whole offer, in order?)", strings.Join(execproto.RedactOffer(offer), ", "), r.c.Protocol.String())
}

// wrongProtocol is the failure of a session whose client got got instead
// of what the API server picks for its offer: the offer, the expected and
// the answered protocol, and what the backend session got for what the
// proxy forwarded to it.
func (r *caseRun) wrongProtocol(ctx context.Context, s *sessionRun, offer []string, got execproto.Protocol) error {
	msg := fmt.Sprintf("the proxy answered subprotocol %q to the offer [%s]; the API server picks %q for that whole offer (the proxy must forward every offer, in order, and return the backend's choice)",
		execproto.Redact(got.String()), strings.Join(execproto.RedactOffer(offer), ", "), r.c.Protocol.String())
	sctx, cancel := context.WithTimeout(ctx, r.grace())
	defer cancel()
	sess, err := r.server.Session(sctx, s.idx)
	if err != nil {
		return &checkError{check: CheckWrongProtocol, err: errors.New(msg + "; no backend session was found")}
	}
	s.sess = sess
	if s.idx == 0 {
		r.res.Observed.Protocol = sess.Recorder().Protocol().String()
	}
	backend := fmt.Sprintf("; the backend session got %q", sess.Recorder().Protocol().String())
	if info, err := sess.Info(sctx); err == nil && info.Offered != nil {
		backend += fmt.Sprintf(" for the offer [%s] the proxy forwarded", strings.Join(execproto.RedactOffer(info.Offered), ", "))
	}
	return &checkError{check: CheckWrongProtocol, err: errors.New(msg + backend)}
}

// refusalHint says what a refused upgrade usually means.
func refusalHint(status int, front *url.URL) string {
	switch status {
	case 404:
		return fmt.Sprintf(" (the suite asked for %s/api/v1/...: is the path prefix right? --path-prefix)", strings.TrimSuffix(front.Path, "/"))
	case 401, 403:
		return " (does the proxy need its own auth or an allowed Origin (--header, --cookie, --origin), or does it filter exec paths, as kubectl proxy does without --disable-filter?)"
	case 400:
		return " (did the proxy get the WebSocket upgrade headers? a proxy in front of it may strip them)"
	}
	return ""
}

func (r *caseRun) execURL(front *url.URL, exec Exec) string {
	return ExecURL(front, execproto.ExecRequest{Namespace: exec.Namespace, Pod: exec.Pod, Container: exec.Container, Command: exec.Command,
		Stdin: true, Stdout: true, Stderr: true, TTY: r.c.TTY})
}

// ExecURL is the URL a client dials for req through front: ws or wss for
// http or https, the exec path after front's path prefix, req's query.
func ExecURL(front *url.URL, req execproto.ExecRequest) string {
	u := *front
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + req.Path()
	u.RawQuery = req.Query().Encode()
	return u.String()
}

func (r *caseRun) act(ctx context.Context, s *sessionRun, a scenarios.Action) error {
	switch a.Kind {
	case scenarios.ActType:
		return s.client.Type(r.enter(a.Text))
	case scenarios.ActExpect:
		// 5 s for the shell to answer (or Options.AnswerTimeout); more
		// when many sessions start at once.
		wait := r.opts.AnswerTimeout
		if r.c.Scenario.Sessions > 1 {
			wait = max(wait, 15*time.Second)
		}
		ectx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		if err := s.client.Expect(ectx, r.enter(a.Text)); err != nil {
			return fmt.Errorf("%w (the session's processes: %s)", err, r.processes(ctx, s))
		}
		return nil
	case scenarios.ActResize:
		return s.client.Resize(a.Width, a.Height)
	case scenarios.ActWaitProcess:
		return r.waitProcess(ctx, s, a.Text)
	case scenarios.ActCloseStdin:
		at := time.Now()
		if err := s.client.CloseStdin(); err != nil {
			return err
		}
		if r.c.Client != scenarios.ClientEmulator || !r.c.TTY {
			// A real client sends no marker, nor can a session without a
			// tty (no resize stream): wait for the half-close itself.
			return r.waitStdinClosed(ctx, s, at)
		}
		// A resize behind it is the marker: once the backend has it, the
		// proxy has done what it does with the half-close (which came
		// first on the one connection), and the ending cannot overtake it.
		if err := s.client.Resize(80, 24); err != nil {
			return err
		}
		return r.waitBackendInput(ctx, s, at, int(execproto.StreamResize))
	case scenarios.ActPaste:
		for _, msg := range scenarios.PasteData(a) {
			if err := s.client.Type(string(msg)); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown action %q", a.Kind)
}

// processes describes the session's live processes, as evidence.
func (r *caseRun) processes(ctx context.Context, s *sessionRun) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	live, err := s.sess.Live(ctx)
	if err != nil {
		return err.Error()
	}
	if len(live) == 0 {
		return "none"
	}
	var out []string
	for _, p := range live {
		// Where it sleeps: the kernel function and the system call.
		wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", p.PID))
		sc, _ := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", p.PID))
		out = append(out, fmt.Sprintf("%s wchan=%s syscall=%s", p, wchan, strings.Fields(string(sc) + " ?")[0]))
	}
	return strings.Join(out, "; ")
}

// pollBackend calls cond every 2 ms, for at most bound, until it is true
// or fails: for what the process table and the backend's record show,
// which raise no event. It returns nil when cond holds or the session's
// backend ends (done, if not nil), and ctx's error when the bound runs out.
func pollBackend(ctx context.Context, bound time.Duration, done <-chan struct{}, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok, err := cond(ctx); err != nil || ok {
			return err
		}
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// receivedSince reports whether the backend has received, since at, a
// frame from the proxy on channel.
func receivedSince(s *sessionRun, at time.Time, channel int) bool {
	since := at.Sub(s.sess.StartedAt())
	for _, f := range s.sess.Recorder().Snapshot().Frames {
		if f.Dir == fakeapiserver.FromClient && f.Channel == channel && f.At >= since {
			return true
		}
	}
	return false
}

// waitBackendInput waits until the backend has received, since at, a
// frame from the proxy on channel (its recorder, polled as the process
// table is).
func (r *caseRun) waitBackendInput(ctx context.Context, s *sessionRun, at time.Time, channel int) error {
	err := pollBackend(ctx, 5*time.Second, nil, func(context.Context) (bool, error) { return receivedSince(s, at, channel), nil })
	if err != nil {
		return fmt.Errorf("the backend received nothing on channel %d (%s): %w", channel, execproto.StreamType(byte(channel)), err)
	}
	return nil
}

// waitStdinClosed waits until the backend has seen, since at, the
// client's stdin half-close through the proxy (the v5 CLOSE signal, a
// SPDY stdin FIN), or the session's end; a proxy that holds a tty's
// half-close back sends neither, so that is waited for no longer than
// the grace period.
func (r *caseRun) waitStdinClosed(ctx context.Context, s *sessionRun, at time.Time) error {
	err := pollBackend(ctx, r.opts.Grace, s.sess.Done(), func(context.Context) (bool, error) {
		return s.sess.Recorder().StdinFIN() || receivedSince(s, at, int(execproto.StreamClose)), nil
	})
	if err != nil {
		r.note(s, "the backend saw no stdin half-close within %s of the client's (held back by the proxy?)", r.opts.Grace)
	}
	return nil
}

// waitProcess waits until the session has a live process named name.
func (r *caseRun) waitProcess(ctx context.Context, s *sessionRun, name string) error {
	err := pollBackend(ctx, 5*time.Second, nil, func(ctx context.Context) (bool, error) {
		live, err := s.sess.Live(ctx)
		return slices.ContainsFunc(live, func(p proctable.Proc) bool { return p.Comm == name }), err
	})
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no process %q appeared in the session: %w", name, err)
	}
	return err
}
