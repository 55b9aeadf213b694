package proxyundertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
	"github.com/igm/sockjs-go/v3/sockjs"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/klog/v2"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/execproto"
)

// Translator is the translating reference proxy: what a web terminal that
// speaks its own protocol to the browser (Argo CD, Kubernetes Dashboard,
// KubeSphere, Portainer) should do. Its front speaks a dialect (package
// dialect; json-operation by default); to the API server it runs
// client-go's remotecommand executor: WebSocket v5 with a fallback to
// SPDY on an upgrade failure, as kubectl does, or SPDY alone (ForceSPDY).
//
//	browser ──dialect──▶ Translator ──client-go executor──▶ API server .../exec
//	         one writer per       stdin pipe, output writer,
//	         front connection     resize queue
//
// When the front goes away for any reason (close frame, EOF, reset, no
// pong, Shutdown) it types the exit on the executor's stdin (Ctrl-C, a
// fresh line, exit: the executor encodes it for whatever transport it
// negotiated), waits for the executor to see the shell end, and then ends
// the executor itself: cancels its context and closes its stdin. Each
// step alone is a bug seen in the field (TranslatorVariant).
type Translator struct {
	cfg      TranslatorConfig
	checks   *Proxy // the front checks (Host, credential, Origin) of the pass-through proxy
	log      *slog.Logger
	prefix   string
	rest     *rest.Config
	upgrader websocket.Upgrader
	sockjs   http.Handler

	mu       sync.Mutex
	closed   bool
	sessions map[*tsession]struct{}
	pending  map[string]pendingSession // session requests not yet bound (SockJS)
	active   sync.WaitGroup
}

// TranslatorConfig configures a Translator: Config's backend, front
// checks, keepalive and bounds (its Variant is unused), and the front.
type TranslatorConfig struct {
	Config
	// BackendCA is the PEM of the CA that signed the backend's certificate
	// (client-go's rest.Config takes PEM, not a *tls.Config).
	BackendCA []byte
	// Dialect is the front's dialect (default json-operation).
	Dialect *dialect.Dialect
	// ForceSPDY runs client-go's SPDY executor alone, as kubectl with
	// KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false does.
	ForceSPDY bool
	// ExitWait bounds the wait, after the exit, for the executor to see
	// the shell end (its status, the server's close) before the proxy
	// ends the executor itself; default DefaultExitWait. client-go's
	// executors never close a session cleanly themselves (the WebSocket
	// one drops TCP on a cancel), so the clean end is the server's, after
	// the exit: a slow backend must be given time.
	ExitWait time.Duration
	// Broken selects a deliberately broken behaviour; zero is correct.
	Broken TranslatorVariant
}

// TranslatorVariant is a broken behaviour of the translating proxy, each
// one a translating terminal's.
type TranslatorVariant string

// The translating proxy's variants.
const (
	TranslatorCorrect TranslatorVariant = ""
	// EOTOnly types Ctrl-D (EOT) on a front end and nothing else: the
	// Kubernetes Dashboard, Argo CD and KubeSphere pattern. An idle shell
	// at an empty prompt ends; a half-typed line eats the EOT, and a busy
	// foreground program never reads it.
	EOTOnly TranslatorVariant = "eot-only"
	// StdinEOFOnly closes the executor's stdin and nothing else
	// (Portainer): a tty shell does not end on stdin EOF.
	StdinEOFOnly TranslatorVariant = "stdin-eof-only"
	// ContextNeverCancelled types the exit but never cancels the
	// executor's context (context.Background(), as Dashboard and Portainer
	// run it): when the shell does not end (a backend that never answers)
	// the executor and its backend connection live on.
	ContextNeverCancelled TranslatorVariant = "context-never-cancelled"
	// TranslatorNoKeepalive sends no pings and sets no read deadline on
	// the front: a half-open browser is never noticed.
	TranslatorNoKeepalive TranslatorVariant = "translator-no-keepalive"
	// FallbackOnEveryError falls back to SPDY on any error of the
	// WebSocket executor, not only an upgrade failure (Devtron's wrapper):
	// a session that ended badly is run again over SPDY, a second shell.
	FallbackOnEveryError TranslatorVariant = "fallback-on-every-error"
	// ExitAsJSON types the exit encoded in the front's dialect (a JSON
	// stdin message) on the executor's stdin, instead of its bytes: the
	// shell reads '{"operation":"stdin",...}' and lives on.
	ExitAsJSON TranslatorVariant = "exit-as-json"
)

// TranslatorVariants are the broken variants, in order.
func TranslatorVariants() []TranslatorVariant {
	return []TranslatorVariant{EOTOnly, StdinEOFOnly, ContextNeverCancelled, TranslatorNoKeepalive, FallbackOnEveryError, ExitAsJSON}
}

func (v TranslatorVariant) valid() bool {
	if v == TranslatorCorrect {
		return true
	}
	for _, w := range TranslatorVariants() {
		if v == w {
			return true
		}
	}
	return false
}

type pendingSession struct {
	params dialect.Params
	at     time.Time
}

// DefaultExitWait is TranslatorConfig.ExitWait's default; SuiteExitWait
// is the suite's, for the in-process translator (a shell at its prompt
// ends within milliseconds of the exit; a slow backend's close takes the
// latency of its leg, 3 s at most in the matrix).
const (
	DefaultExitWait = 10 * time.Second
	SuiteExitWait   = 5 * time.Second
)

// DiscardClientGoLogs drops what client-go logs through klog, for the
// whole process (klog is global): its executors log every stdin copy
// that ends and every connection a test cuts, as errors. The suite's
// in-process translator calls it; a program that serves a Translator
// may keep klog's default (stderr) instead.
func DiscardClientGoLogs() { klogOnce.Do(func() { klog.SetLogger(logr.Discard()) }) }

var klogOnce sync.Once

// pendingTTL bounds how long a session request waits for its bind.
const pendingTTL = time.Minute

// NewTranslator checks cfg and returns a Translator.
func NewTranslator(cfg TranslatorConfig) (*Translator, error) {
	if !cfg.Broken.valid() {
		return nil, fmt.Errorf("proxyundertest: unknown translator variant %q", string(cfg.Broken))
	}
	if cfg.Dialect.IsKubernetes() {
		d, err := dialect.Builtin("json-operation")
		if err != nil {
			return nil, err
		}
		cfg.Dialect = d
	}
	cfg.Variant = Correct
	checks, err := New(cfg.Config)
	if err != nil {
		return nil, err
	}
	cfg.Config = checks.cfg // with its defaults
	if cfg.ExitWait <= 0 {
		cfg.ExitWait = DefaultExitWait
	}
	t := &Translator{
		cfg:      cfg,
		checks:   checks,
		log:      cfg.Logger.With("component", "translator", "dialect", cfg.Dialect.Name),
		prefix:   strings.TrimSuffix(cfg.PathPrefix, "/"),
		sessions: map[*tsession]struct{}{},
		pending:  map[string]pendingSession{},
	}
	t.rest = &rest.Config{
		Host:        cfg.Backend.String(),
		BearerToken: cfg.Token,
		// Straight to the API server, as the pass-through proxy dials it.
		Proxy:           func(*http.Request) (*url.URL, error) { return nil, nil },
		TLSClientConfig: rest.TLSClientConfig{CAData: cfg.BackendCA},
		Timeout:         cfg.HandshakeTimeout,
	}
	if cfg.Backend.Scheme == "https" && len(cfg.BackendCA) == 0 && cfg.TLSConfig != nil && cfg.TLSConfig.InsecureSkipVerify {
		t.rest.TLSClientConfig.Insecure = true
	}
	t.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		CheckOrigin:      func(*http.Request) bool { return true }, // checked before (checkOrigin)
		Subprotocols:     cfg.Dialect.Subprotocols,
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			http.Error(w, "proxyundertest: "+reason.Error(), status)
		},
	}
	if cfg.Dialect.Transport == dialect.SockJS {
		opts := sockjs.DefaultOptions
		opts.CheckOrigin = func(*http.Request) bool { return true } // checked before
		opts.HeartbeatDelay = cfg.PingInterval
		opts.Websocket = true
		t.sockjs = sockjs.NewHandler(t.prefix+strings.TrimSuffix(cfg.Dialect.Path, "/"), opts, t.serveSockJS)
	}
	return t, nil
}

// ServeHTTP serves the dialect's front: its session request, its
// connection (a WebSocket, or SockJS), and refuses anything else with
// the pass-through proxy's checks (Host, front credential, Origin).
func (t *Translator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := t.checks.checkHost(r); err != nil {
		t.checks.refuse(w, r, http.StatusForbidden, err)
		return
	}
	if err := t.checks.checkFront(r); err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="execconform proxy"`)
		t.checks.refuse(w, r, http.StatusUnauthorized, err)
		return
	}
	if err := t.checks.checkOrigin(r); err != nil {
		t.checks.refuse(w, r, http.StatusForbidden, err)
		return
	}
	d := t.cfg.Dialect
	if d.Session != nil {
		if p, err := d.SessionRequestParams(t.prefix, r); err == nil && r.Method == http.MethodGet && !websocket.IsWebSocketUpgrade(r) {
			t.sessionRequest(w, p)
			return
		}
	}
	if d.Transport == dialect.SockJS {
		if strings.HasPrefix(r.URL.Path, t.prefix+strings.TrimSuffix(d.Path, "/")+"/") {
			t.sockjs.ServeHTTP(w, r)
			return
		}
		t.checks.refuse(w, r, http.StatusNotFound, fmt.Errorf("not a path of dialect %s", d.Name))
		return
	}
	p, err := d.Request(t.prefix, r)
	if err != nil {
		t.checks.refuse(w, r, http.StatusNotFound, err)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		t.checks.refuse(w, r, http.StatusBadRequest, errors.New("a terminal request must be a WebSocket upgrade"))
		return
	}
	if !t.enter() {
		t.checks.refuse(w, r, http.StatusServiceUnavailable, errors.New("shutting down"))
		return
	}
	defer t.active.Done()
	c, err := t.upgrader.Upgrade(w, r, nil)
	if err != nil {
		t.log.Info("front upgrade failed", "err", err)
		return
	}
	c.SetReadLimit(t.cfg.MaxMessageSize)
	t.run(&wsFront{c: c, cfg: &t.cfg.Config}, p)
}

// sessionRequest answers a session request with a new id, for the bind.
func (t *Translator) sessionRequest(w http.ResponseWriter, p dialect.Params) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	t.mu.Lock()
	now := time.Now()
	for k, v := range t.pending {
		if now.Sub(v.at) > pendingTTL {
			delete(t.pending, k)
		}
	}
	t.pending[id] = pendingSession{params: p, at: now}
	t.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{t.cfg.Dialect.Session.ID: id})
}

// serveSockJS is one SockJS session: its first message must bind a
// pending session request.
func (t *Translator) serveSockJS(s sockjs.Session) {
	if !t.enter() {
		_ = s.Close(1001, "shutting down")
		return
	}
	defer t.active.Done()
	f := &sockjsFront{s: s}
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.HandshakeTimeout)
	defer cancel()
	msg, err := s.RecvCtx(ctx)
	if err != nil {
		_ = s.Close(4000, "no bind")
		return
	}
	in, err := t.cfg.Dialect.ServerCodec().Decode(websocket.TextMessage, []byte(msg))
	if err != nil || in.Kind != dialect.InputStart {
		t.log.Info("front refused", "reason", "the first message is not a bind", "err", err)
		_ = s.Close(4000, "bind first")
		return
	}
	t.mu.Lock()
	ps, ok := t.pending[in.Session]
	delete(t.pending, in.Session)
	t.mu.Unlock()
	if !ok {
		t.log.Info("front refused", "reason", "bind of an unknown session")
		_ = s.Close(4001, "unknown session")
		return
	}
	t.run(f, ps.params)
}

func (t *Translator) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.active.Add(1)
	return true
}

// Sessions is the number of open sessions.
func (t *Translator) Sessions() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

// Shutdown ends every session as on a front end (the exit, then the
// executor ends), with close 1001 to the front, and waits for them at
// most until ctx is done.
func (t *Translator) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	for s := range t.sessions {
		s.requestShutdown()
	}
	t.mu.Unlock()
	done := make(chan struct{})
	go func() { t.active.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		for s := range t.sessions {
			s.front.drop()
			s.cancel()
		}
		t.mu.Unlock()
		return ctx.Err()
	}
}

// executor builds client-go's executor for p: the fallback executor
// (WebSocket v5, then SPDY on an upgrade failure), or SPDY alone.
func (t *Translator) executor(p dialect.Params) (remotecommand.Executor, *url.URL, error) {
	req := execproto.ExecRequest{Namespace: p.Namespace, Pod: p.Pod, Container: p.Container, Command: p.Command,
		Stdin: true, Stdout: true, Stderr: !p.TTY, TTY: p.TTY}
	u := *t.cfg.Backend
	u.Path = strings.TrimSuffix(u.Path, "/") + req.Path()
	u.RawPath = ""
	u.RawQuery = req.Query().Encode()
	spdy, err := remotecommand.NewSPDYExecutor(t.rest, http.MethodPost, &u)
	if err != nil {
		return nil, nil, err
	}
	if t.cfg.ForceSPDY {
		return spdy, &u, nil
	}
	ws, err := remotecommand.NewWebSocketExecutor(t.rest, http.MethodGet, u.String())
	if err != nil {
		return nil, nil, err
	}
	fallback := func(err error) bool { return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err) }
	if t.cfg.Broken == FallbackOnEveryError {
		fallback = func(error) bool { return true }
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, fallback)
	return ex, &u, err
}

// front is the browser's connection, whatever the dialect's transport.
// read is called by one goroutine, write and ping by the session's
// writer only; closeWith and drop end it.
type front interface {
	read() (int, []byte, error)
	write(mt int, b []byte) error
	ping() error
	closeWith(code int, reason string) error
	drop()
	// closeCode is the close frame the front received, if it sent one.
	closeCode() (int, bool)
}

type wsFront struct {
	c   *websocket.Conn
	cfg *Config

	mu   sync.Mutex
	code int
	got  bool
}

func (f *wsFront) read() (int, []byte, error) { return f.c.ReadMessage() }

func (f *wsFront) write(mt int, b []byte) error {
	_ = f.c.SetWriteDeadline(time.Now().Add(f.cfg.CloseTimeout * 5))
	return f.c.WriteMessage(mt, b)
}

func (f *wsFront) ping() error {
	_ = f.c.SetWriteDeadline(time.Now().Add(f.cfg.PongTimeout))
	return f.c.WriteMessage(websocket.PingMessage, nil)
}

func (f *wsFront) closeWith(code int, reason string) error {
	_ = f.c.SetWriteDeadline(time.Now().Add(f.cfg.CloseTimeout))
	return f.c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason))
}

func (f *wsFront) drop() { _ = f.c.Close() }

func (f *wsFront) closeCode() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.code, f.got
}

type sockjsFront struct{ s sockjs.Session }

func (f *sockjsFront) read() (int, []byte, error) {
	m, err := f.s.Recv()
	return websocket.TextMessage, []byte(m), err
}
func (f *sockjsFront) write(_ int, b []byte) error { return f.s.Send(string(b)) }
func (f *sockjsFront) ping() error                 { return nil } // SockJS's heartbeats
func (f *sockjsFront) closeWith(code int, reason string) error {
	return f.s.Close(uint32(code), reason)
}
func (f *sockjsFront) drop()                  { _ = f.s.Close(1001, "going away") }
func (f *sockjsFront) closeCode() (int, bool) { return 0, false }
