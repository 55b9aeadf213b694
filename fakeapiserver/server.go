// Package fakeapiserver is a fake Kubernetes API server for the exec
// endpoint. It speaks every exec WebSocket subprotocol as the real server
// does, and the SPDY upgrade with its stream versions as the kubelet does
// (spdy.go), runs a real process per session (on a pty for tty sessions), keeps
// that process alive after a disconnect as a container runtime does (the
// orphan), records every frame of every session, and reads the liveness of
// each session's processes from the operating system's process table.
//
//	client/proxy ==WebSocket or SPDY==> Server ---> Session ---> real process (pty or pipes)
//	                              |            |
//	                              |            +--> Recorder (frames, close handshake)
//	                              +--> /execconform/v1/sessions (control API)
package fakeapiserver

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"
	"github.com/gorilla/websocket"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/internal/sockbuf"
	"github.com/execconform/execconform/proctable"
)

// Config configures a Server. The zero value is usable: HTTPS with an
// ephemeral CA, a random token, containerd semantics, on 127.0.0.1.
type Config struct {
	// Addr is the listen address for Start (default "127.0.0.1:0").
	Addr string
	// Token is the bearer token clients must present (default: random).
	Token string
	// Insecure serves plain HTTP instead of HTTPS.
	Insecure bool
	// CertDir is where the CA certificate is written (default: a temporary
	// directory removed by Close).
	CertDir string
	// KeepCA reuses CertDir's ca.crt and ca.key when they are there (and
	// writes ca.key when it makes the CA), so that a proxy started once,
	// trusting CertDir/ca.crt, keeps working across runs.
	KeepCA bool
	// Allow decides which commands may run (default DefaultAllow).
	Allow AllowCommand
	// Semantics is what happens to a live process on disconnect (default Containerd).
	Semantics Semantics
	// CloseTimeout bounds the wait for the client's close reply (default 2s).
	CloseTimeout time.Duration
	// DrainTimeout bounds the wait for the last output after the process
	// exits (default 200ms).
	DrainTimeout time.Duration
	// MaxMessageSize is the largest message the server reads (default 32 MiB,
	// the limit of the real server's WebSocket library); larger ones close
	// the connection with 1009.
	MaxMessageSize int64
	// RecordPayload is how many payload bytes each recorded frame keeps
	// (default 256); RecordFrames how many frames a session keeps whole,
	// half at the start and half at the end (default 2000).
	RecordPayload int
	RecordFrames  int
	// KeepEnded is how many ended sessions the server keeps for Sessions,
	// Session and the control API (default DefaultKeepEnded; negative: all).
	// A session has ended when its WebSocket has closed, its process was
	// reaped and the process table shows none of its processes. Live
	// sessions are never dropped, nor those of a pod someone holds
	// (Hold). Past the bound the sessions that ended first are dropped in a
	// batch, down to 3/4 of it: each batch costs a scan of the process
	// table.
	KeepEnded int
	// KeepEndedFor is how long an ended session is kept at least (default
	// DefaultKeepEndedFor; negative: for ever). It is dropped when a
	// session ends or the list is read after that, but no sooner than
	// KeepEndedFor/8 after the last drop for age (each costs a scan).
	KeepEndedFor time.Duration
	// ReadHeaderTimeout bounds the wait for a request's headers (and the
	// TLS handshake) on a connection (default 10s); a connection it cuts is
	// logged.
	ReadHeaderTimeout time.Duration
	// StreamCreationTimeout bounds the wait for a SPDY client's streams
	// (default DefaultStreamCreationTimeout, the kubelet's); past it the
	// session ends with no process, as the kubelet's does.
	StreamCreationTimeout time.Duration
	// Env is added to the environment of every process.
	Env []string
	// AutotuneBuffers leaves the kernel's own (autotuned) socket buffers
	// to the server's connections, as a real API server has, instead of
	// the suite's small fixed ones (internal/sockbuf), which bound how
	// much a stalled path holds and with it throughput: for the bench.
	AutotuneBuffers bool
	// Logger receives the server's logs (nil discards).
	Logger *slog.Logger
}

// The retention of ended sessions when Config leaves it unset.
const (
	DefaultKeepEnded    = 256
	DefaultKeepEndedFor = 10 * time.Minute
)

// Server is a fake API server. Create it with New, serve it with Start (or
// use it as an http.Handler), and always Close it: Close kills every
// process it started.
type Server struct {
	cfg   Config
	log   *slog.Logger
	ca    *authority
	home  string
	tmp   string // removed by Close
	procs *proctable.Table

	upgrader websocket.Upgrader
	mux      *http.ServeMux

	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	sessions []*Session // the kept sessions, in the order they were registered
	byID     map[string]*Session
	changed  chan struct{} // closed and replaced when a session is added
	wg       sync.WaitGroup
	closed   bool
	total    int64          // sessions ever registered (the last one's seq)
	dropped  int64          // ended sessions let go by the retention
	ended    []*Session     // kept sessions whose run has returned, in the order they finished
	holds    map[string]int // pods whose sessions are kept whatever their age (Hold)
	agePrune time.Time      // when ended sessions were last dropped for their age
	pruneMu  sync.Mutex     // one prune at a time; taken before mu
	idPrefix string         // what every session ID of this server starts with
	now      func() time.Time
	created  time.Time // when its pods' containers started (servePod)

	seq     int64
	httpSrv *http.Server
	// beforeAdd, set by tests, runs as an exec handler is about to
	// register its started session.
	beforeAdd func(*Session)
	listener  net.Listener
	url       *url.URL

	connMu sync.Mutex
	conns  map[net.Conn]*connTrack // open connections not hijacked (see connState)
}

// connTrack is what connState knows of one connection.
type connTrack struct {
	state  http.ConnState
	since  time.Time // when it opened or last went idle: its request's wait began
	served bool      // a handler ran for its request since
}

type connKey struct{}

var serverSeq atomic.Int64

// New creates a Server. It does not listen: call Start, or serve it as a
// handler (it must then still be closed).
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Token == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		cfg.Token = hex.EncodeToString(b)
	}
	if cfg.Allow == nil {
		cfg.Allow = DefaultAllow
	}
	if cfg.Semantics == "" {
		cfg.Semantics = Containerd
	}
	if cfg.Semantics != Containerd && cfg.Semantics != HangupOnDisconnect {
		return nil, fmt.Errorf("fakeapiserver: unknown semantics %q", cfg.Semantics)
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 2 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 200 * time.Millisecond
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 32 << 20
	}
	if cfg.RecordPayload <= 0 {
		cfg.RecordPayload = defaultRecordPayload
	}
	if cfg.RecordFrames <= 0 {
		cfg.RecordFrames = defaultRecordFrames
	}
	if cfg.KeepEnded == 0 {
		cfg.KeepEnded = DefaultKeepEnded
	}
	if cfg.KeepEndedFor == 0 {
		cfg.KeepEndedFor = DefaultKeepEndedFor
	}
	if cfg.StreamCreationTimeout <= 0 {
		cfg.StreamCreationTimeout = DefaultStreamCreationTimeout
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tmp, err := proctable.MkdirTemp("fakeapiserver")
	if err != nil {
		return nil, fmt.Errorf("fakeapiserver: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     log.With("component", "fakeapiserver"),
		tmp:     tmp,
		home:    tmp + "/home",
		procs:   proctable.Default,
		seq:     serverSeq.Add(1),
		byID:    map[string]*Session{},
		holds:   map[string]int{},
		now:     time.Now,
		created: time.Now(),
		conns:   map[net.Conn]*connTrack{},
		changed: make(chan struct{}),
		upgrader: websocket.Upgrader{
			// Own buffers, so that reads go through the tap (see tapWriter).
			ReadBufferSize:   4096,
			WriteBufferSize:  4096,
			HandshakeTimeout: 10 * time.Second,
			// The API server does not check Origin.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
	s.idPrefix = fmt.Sprintf("s%d-%d-", os.Getpid(), s.seq)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := os.Mkdir(s.home, 0o755); err != nil {
		s.cleanupTmp()
		return nil, fmt.Errorf("fakeapiserver: %w", err)
	}
	if !cfg.Insecure {
		dir := cfg.CertDir
		if dir == "" {
			dir = tmp
		}
		if s.ca, err = makeAuthority(dir, cfg.KeepCA && cfg.CertDir != ""); err != nil {
			s.cleanupTmp()
			return nil, err
		}
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/api/v1/namespaces/{ns}/pods/{pod}/exec", s.serveExec)
	s.mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods/{pod}", s.servePod)
	s.mux.HandleFunc("GET /api", s.serveAPIVersions)
	s.mux.HandleFunc("GET /apis", s.serveAPIGroups)
	s.mux.HandleFunc("GET /api/v1", s.serveCoreResources)
	s.mux.HandleFunc("GET /version", s.serveVersion)
	s.mux.HandleFunc("GET /execconform/v1/sessions", s.serveSessions)
	s.mux.HandleFunc("GET /execconform/v1/sessions/{id}", s.serveSession)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.reject(w, r, http.StatusNotFound, "NotFound", "the server could not find the requested resource", "no such path")
	})
	return s, nil
}

func (s *Server) cleanupTmp() { _ = os.RemoveAll(s.tmp) }

// Start listens on Config.Addr and serves until Close.
func (s *Server) Start() error {
	lc := net.ListenConfig{Control: sockbuf.Control}
	if s.cfg.AutotuneBuffers {
		lc.Control = nil
	}
	ln, err := lc.Listen(context.Background(), "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("fakeapiserver: listen: %w", err)
	}
	s.listener = ln
	s.httpSrv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       60 * time.Second,
		// net/http's own complaints: TLS handshakes that failed (a proxy
		// that does not trust the CA), panics.
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelInfo),
		ConnState:   s.connState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
	}
	scheme := "http"
	if s.ca != nil {
		scheme = "https"
		s.httpSrv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{s.ca.cert}, NextProtos: []string{"http/1.1"}}
		ln = tls.NewListener(ln, s.httpSrv.TLSConfig)
	}
	s.url = &url.URL{Scheme: scheme, Host: s.listener.Addr().String()}
	go func() { _ = s.httpSrv.Serve(ln) }()
	return nil
}

// URL is the server's base URL (after Start).
func (s *Server) URL() *url.URL { u := *s.url; return &u }

// Token is the bearer token the server expects.
func (s *Server) Token() string { return s.cfg.Token }

// CAFile is the path of the CA certificate (PEM), "" for plain HTTP.
func (s *Server) CAFile() string {
	if s.ca == nil {
		return ""
	}
	return s.ca.caFile
}

// CertPool holds the server's CA (nil for plain HTTP).
func (s *Server) CertPool() *x509.CertPool {
	if s.ca == nil {
		return nil
	}
	return s.ca.pool
}

// ClientTLSConfig is a TLS client configuration that trusts the server.
func (s *Server) ClientTLSConfig() *tls.Config {
	if s.ca == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.ca.pool}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		s.connServed(c)
	}
	if why := s.authenticate(r); why != "" {
		s.reject(w, r, http.StatusUnauthorized, "Unauthorized", "Unauthorized", why)
		return
	}
	// Every request a client makes (kubectl reads discovery and the pod
	// before its exec), with what it accepts: at debug level.
	s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery, "accept", r.Header.Get("Accept"), "user_agent", r.UserAgent())
	s.mux.ServeHTTP(w, r)
}

// reject answers r with a Status and logs why, at info level: a request
// the server refused is worth a line. Neither the line nor the answer
// carries a token.
func (s *Server) reject(w http.ResponseWriter, r *http.Request, code int, reason, message, why string) {
	s.log.Info("request rejected", "status", code, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "why", why)
	writeStatus(w, code, reason, message)
}

// connState follows each connection (http.Server.ConnState) to log the
// ones that closed before a whole request arrived: cut by
// ReadHeaderTimeout (a slowloris, or a client that connected and sent
// nothing), or refused by net/http itself (a malformed request), which
// no handler sees.
func (s *Server) connState(c net.Conn, state http.ConnState) {
	s.connMu.Lock()
	t := s.conns[c]
	switch state {
	case http.StateNew:
		s.conns[c] = &connTrack{state: state, since: time.Now()}
	case http.StateIdle:
		if t != nil {
			t.state, t.since, t.served = state, time.Now(), false
		}
	case http.StateActive:
		if t != nil {
			t.state = state
		}
	case http.StateHijacked, http.StateClosed:
		delete(s.conns, c)
	}
	s.connMu.Unlock()
	if state != http.StateClosed || t == nil || t.served || t.state == http.StateIdle {
		return
	}
	waited := time.Since(t.since)
	remote := c.RemoteAddr().String()
	switch {
	case waited >= s.cfg.ReadHeaderTimeout:
		s.log.Info("connection cut: no whole request within the header timeout (ReadHeaderTimeout)",
			"remote", remote, "timeout", s.cfg.ReadHeaderTimeout, "sent_some", t.state == http.StateActive)
	case t.state == http.StateActive:
		s.log.Info("connection closed before a whole request: malformed, or the client left", "remote", remote, "after", waited.Round(time.Millisecond))
	default:
		s.log.Debug("connection closed with no request", "remote", remote, "after", waited.Round(time.Millisecond))
	}
}

// connServed notes that a handler runs for c's request.
func (s *Server) connServed(c net.Conn) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if t := s.conns[c]; t != nil {
		t.served = true
	}
}

// authenticate checks r's token as kube-apiserver's authenticators do, in
// their order (k8s.io/kubernetes pkg/kubeapiserver/authenticator/config.go:
// bearertoken, then the WebSocket protocol authenticator; the first that
// succeeds wins). The Authorization header first: then a bearer-token
// subprotocol is left in the offer, where negotiation skips it. Else a
// WebSocket request may carry the token as a subprotocol (k8s.io/apiserver
// pkg/authentication/request/websocket/protocol.go): it is read from every
// Sec-WebSocket-Protocol line; at most one may be there, in unpadded
// base64url and valid UTF-8, with at least one other subprotocol beside it
// ("missing additional subprotocol"); on success the offer becomes one
// header line, the others joined with ",", without the token.
//
// It returns "" for an authenticated request, else why not, in words
// without the token.
func (s *Server) authenticate(r *http.Request) string {
	header := r.Header.Get("Authorization")
	got, bearer := strings.CutPrefix(header, "Bearer ")
	if bearer && s.tokenIs(got) {
		return ""
	}
	var why string
	switch {
	case bearer:
		why = "wrong bearer token in the Authorization header"
	case header != "":
		why = "the Authorization header is not a bearer token"
	}
	if !websocket.IsWebSocketUpgrade(r) {
		return cmp.Or(why, "no token")
	}
	var token string
	var rest []string
	seen := false
	for _, line := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(line, ",") {
			p = strings.TrimSpace(p)
			enc, isToken := strings.CutPrefix(p, execproto.BearerProtocolPrefix)
			if !isToken {
				rest = append(rest, p)
				continue
			}
			if seen {
				return "multiple bearer-token subprotocols"
			}
			seen = true
			b, err := base64.RawURLEncoding.DecodeString(enc)
			if err != nil || !utf8.Valid(b) {
				return "a bearer-token subprotocol that is not unpadded base64url of UTF-8"
			}
			token = string(b)
		}
	}
	switch {
	case !seen && why != "":
		return why
	case !seen || token == "":
		return "no token (no Authorization header, no bearer-token subprotocol)"
	case len(rest) == 0:
		return "a bearer-token subprotocol with no other subprotocol beside it"
	case !s.tokenIs(token):
		return "wrong token in the bearer-token subprotocol"
	}
	r.Header.Set("Sec-Websocket-Protocol", strings.Join(rest, ","))
	return ""
}

func (s *Server) tokenIs(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

// execRequest is the parsed query of an exec request.
type execRequest struct {
	ns, pod, container         string
	command                    []string
	stdin, stdout, stderr, tty bool
}

func parseExec(r *http.Request) (*execRequest, error) {
	q := r.URL.Query()
	req := &execRequest{ns: r.PathValue("ns"), pod: r.PathValue("pod"), container: q.Get("container"), command: q["command"]}
	for _, f := range []struct {
		name string
		v    *bool
	}{{"stdin", &req.stdin}, {"stdout", &req.stdout}, {"stderr", &req.stderr}, {"tty", &req.tty}} {
		if s := q.Get(f.name); s != "" {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return nil, fmt.Errorf("invalid value %q for %s", s, f.name)
			}
			*f.v = b
		}
	}
	if len(req.command) == 0 {
		return nil, errors.New("you must specify at least one command for the container")
	}
	if req.tty && req.stderr {
		// As the kubelet does: stderr is merged into the tty.
		req.stderr = false
	}
	if !req.stdin && !req.stdout && !req.stderr {
		return nil, errors.New("you must specify at least 1 of stdin, stdout, stderr")
	}
	return req, nil
}

var sessionSeq atomic.Int64

func (s *Server) serveExec(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		s.reject(w, r, http.StatusMethodNotAllowed, "MethodNotAllowed", "the server does not allow this method on the requested resource", "method "+r.Method)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) && isSPDYUpgrade(r) {
		s.serveSPDY(w, r)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		s.reject(w, r, http.StatusBadRequest, "BadRequest", "Upgrade request required", "not a WebSocket upgrade")
		return
	}
	req, ok := s.admit(w, r)
	if !ok {
		return
	}
	offered := execproto.Offered(r.Header.Values("Sec-WebSocket-Protocol"))
	proto, err := execproto.Negotiate(offered)
	if err != nil {
		// Negotiate's error names the offer, redacted.
		msg := fmt.Sprintf("fakeapiserver: negotiate: %v", err)
		s.reject(w, r, http.StatusForbidden, "Forbidden", msg, msg)
		return
	}
	if !s.enter(w, r) {
		return
	}
	defer s.wg.Done()

	sess := s.newSession(req, execproto.TransportWebSocket, proto, execproto.RedactOffer(offered))

	// The session ID in the upgrade response lets a test find its session.
	hdr := http.Header{SessionHeader: {sess.ID}}
	if proto != execproto.ProtocolNone {
		hdr.Set("Sec-Websocket-Protocol", string(proto))
	}
	tw := &tapWriter{ResponseWriter: w}
	conn, err := s.upgrader.Upgrade(tw, r, hdr)
	if err != nil {
		// The upgrader has answered (400 for a bad handshake).
		s.log.Info("request rejected: WebSocket upgrade failed", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		return
	}
	sess.Started = time.Now()
	sess.t = newWSConn(sess, conn)
	sess.tap = tw.tap
	sess.rec = newRecorder(sess.Started, proto, s.cfg.RecordPayload, s.cfg.RecordFrames)
	tw.tap.rec.Store(sess.rec)
	conn.SetReadLimit(s.cfg.MaxMessageSize)
	conn.SetCloseHandler(func(int, string) error { return nil }) // answered by the reader, as 1000

	s.startSession(sess, req)
	if !s.register(sess, func() { _ = conn.Close() }) {
		return
	}
	s.runSession(sess)
}

// admit parses an exec request and asks Config.Allow about its command;
// false when it has answered the request with a refusal.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (*execRequest, bool) {
	req, err := parseExec(r)
	if err != nil {
		s.reject(w, r, http.StatusBadRequest, "BadRequest", err.Error(), err.Error())
		return nil, false
	}
	if err := s.cfg.Allow(req.command); err != nil {
		s.reject(w, r, http.StatusForbidden, "Forbidden", "fakeapiserver: "+err.Error(), err.Error())
		return nil, false
	}
	return req, true
}

// enter counts an exec handler in s.wg, so that Close waits for it; false
// (the request refused with 503) when the server is closing. The caller
// calls s.wg.Done.
func (s *Server) enter(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if closed {
		s.reject(w, r, http.StatusServiceUnavailable, "ServiceUnavailable", "fakeapiserver: shutting down", "shutting down")
		return false
	}
	return true
}

// newSession makes the session of an admitted request, not yet started.
func (s *Server) newSession(req *execRequest, t execproto.Transport, proto execproto.Protocol, offered []string) *Session {
	id := s.idPrefix + strconv.FormatInt(sessionSeq.Add(1), 10)
	sess := &Session{
		ID: id, Namespace: req.ns, Pod: req.pod, Container: req.container,
		Command: req.command, Offered: offered, Transport: t, Protocol: proto, TTY: req.tty,
		Stdin: req.stdin, Stdout: req.stdout, Stderr: req.stderr,
		srv:    s,
		wsDone: make(chan struct{}), finished: make(chan struct{}),
	}
	sess.log = s.log.With("session", id, "protocol", proto.String(), "tty", req.tty)
	if t == execproto.TransportSPDY {
		sess.log = sess.log.With("transport", string(t))
	}
	return sess
}

// startSession starts the session's process, with the env tags that let
// the process table attribute it; a failure to start is the session's
// startErr.
func (s *Server) startSession(sess *Session, req *execRequest) {
	env := sessionEnv(sess.ID, s.home, s.cfg.Env)
	if req.tty {
		env = append(env, "TERM=xterm")
	}
	proc, err := startProcess(req.command, req.tty, &pty.Winsize{Cols: 80, Rows: 24}, s.home, env)
	if err != nil {
		sess.startErr = err.Error()
	} else {
		sess.proc = proc
	}
	sess.log.Debug("session started", "command", req.command, "pid", sess.PID())
}

// register adds a started session to the server's list; false when the
// server is closing, after killing the session's process and closing its
// connection (closeConn).
func (s *Server) register(sess *Session, closeConn func()) bool {
	if s.beforeAdd != nil {
		s.beforeAdd(sess)
	}
	if s.add(sess) {
		return true
	}
	// Close took its list of sessions before this one started: it is
	// killed here, while Close waits for this handler.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.kill(ctx, sess); err != nil {
		s.log.Warn("kill a session started during Close", "session", sess.ID, "err", err)
	}
	if proc := sess.proc; proc != nil {
		select {
		case <-proc.done:
		case <-ctx.Done():
		}
		proc.release()
	}
	closeConn()
	return false
}

// runSession serves a registered session until it has finished.
func (s *Server) runSession(sess *Session) {
	sess.run(s.ctx)
	sess.compact()
	s.finished(sess)
	close(sess.finished)
}

// add registers sess; false if the server is closing (and Close has its
// list of sessions to kill already).
func (s *Server) add(sess *Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.total++
	sess.seq = s.total
	s.sessions = append(s.sessions, sess)
	s.byID[sess.ID] = sess
	close(s.changed)
	s.changed = make(chan struct{})
	return true
}

// Sessions lists the kept sessions (see Config.KeepEnded), oldest first.
func (s *Server) Sessions() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Session(nil), s.sessions...)
}

// Session finds a kept session by ID.
func (s *Server) Session(id string) (*Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[id]
	return sess, ok
}

// SessionHeader is the response header of an exec upgrade that carries the
// session ID (the real API server sends no such header; proxies may drop it).
const SessionHeader = "X-Execconform-Session"

// WaitSession waits until the session with this ID is registered.
func (s *Server) WaitSession(ctx context.Context, id string) (*Session, error) {
	for {
		s.mu.Lock()
		sess, ok := s.byID[id]
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return sess, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("fakeapiserver: waiting for session %q: %w", id, ctx.Err())
		}
	}
}

// WaitSessions waits until the server has registered at least n sessions
// since it started, and returns those it keeps: all of them until the
// retention drops ended ones (Config.KeepEnded), so that the list may then
// be shorter than n. WaitFor finds a session whatever was dropped.
func (s *Server) WaitSessions(ctx context.Context, n int) ([]*Session, error) {
	for {
		s.mu.Lock()
		if s.total >= int64(n) {
			out := append([]*Session(nil), s.sessions...)
			s.mu.Unlock()
			return out, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("fakeapiserver: waiting for %d session(s): %w", n, ctx.Err())
		}
	}
}

// WaitFor waits until a session for which match reports true is
// registered and returns the first such kept session. match is called with
// the server's lock held: it may read the session's fields but call
// nothing of the server.
func (s *Server) WaitFor(ctx context.Context, match func(*Session) bool) (*Session, error) {
	for {
		s.mu.Lock()
		for _, sess := range s.sessions {
			if match(sess) {
				s.mu.Unlock()
				return sess, nil
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("fakeapiserver: waiting for a session: %w", ctx.Err())
		}
	}
}

// Hold keeps every session of pod, ended or not, until release is called:
// a case holds its pod while it judges the pod's sessions. Holds of the
// same pod nest; release may be called more than once.
func (s *Server) Hold(pod string) (release func()) {
	s.mu.Lock()
	s.holds[pod]++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.holds[pod]--; s.holds[pod] <= 0 {
				delete(s.holds, pod)
			}
			s.mu.Unlock()
		})
	}
}

// Kept counts the sessions the server registered since it started (total)
// and those of them its retention let go (dropped).
func (s *Server) Kept() (total, dropped int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, s.dropped
}

// finished notes that sess's run has returned, and lets the retention drop
// what it no longer keeps.
func (s *Server) finished(sess *Session) {
	s.mu.Lock()
	sess.finishedAt = s.now()
	s.ended = append(s.ended, sess)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	s.prune(ctx)
}

// prune drops the ended sessions the retention no longer keeps (see
// Config.KeepEnded), after one scan of the process table shows none of
// their processes alive; one that has a process alive (a background child
// that outlived its shell) is live after all, and stays.
func (s *Server) prune(ctx context.Context) {
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	cands := s.pruneCandidates(s.now())
	s.mu.Unlock()
	if len(cands) == 0 {
		return
	}

	procs, err := s.procs.Snapshot(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.log.Debug("retention: no scan of the process table; nothing dropped", "err", err)
		return
	}
	tags, sids := map[string]bool{}, map[int]bool{}
	for _, p := range procs {
		switch {
		case !p.Live():
		case p.Session != "":
			tags[p.Session] = true
		default:
			sids[p.SID] = true // matches a session by its SID only when untagged (proctable.Match)
		}
	}
	drop := map[*Session]bool{}
	for _, c := range cands {
		switch {
		case s.holds[c.Pod] > 0:
		case tags[c.ID] || (c.PID() != 0 && sids[c.PID()]):
			c.lingering = true
		default:
			drop[c] = true
		}
	}
	if len(drop) == 0 {
		return
	}
	keep := func(sess *Session) bool { return !drop[sess] }
	s.sessions = slices.DeleteFunc(s.sessions, func(sess *Session) bool { return !keep(sess) })
	s.ended = slices.DeleteFunc(s.ended, func(sess *Session) bool { return !keep(sess) })
	for sess := range drop {
		delete(s.byID, sess.ID)
	}
	s.dropped += int64(len(drop))
	s.log.Debug("retention: dropped ended sessions", "dropped", len(drop), "kept", len(s.sessions), "total", s.total)
}

// pruneCandidates are the ended sessions that the retention would drop
// now, oldest first, and those found lingering before, to look at again;
// none when nothing is over the bounds. s.mu must be held.
func (s *Server) pruneCandidates(now time.Time) []*Session {
	var free, lingering []*Session // not held; in the order they finished
	for _, e := range s.ended {
		switch {
		case s.holds[e.Pod] > 0:
		case e.lingering:
			lingering = append(lingering, e)
		default:
			free = append(free, e)
		}
	}
	n := 0 // how many of free to drop, from the first
	if k := s.cfg.KeepEnded; k >= 0 && len(free) > k {
		n = len(free) - (k - k/4)
	}
	if d := s.cfg.KeepEndedFor; d >= 0 && n < len(free) && now.Sub(s.agePrune) >= d/8 {
		aged := n
		for aged < len(free) && now.Sub(free[aged].finishedAt) >= d {
			aged++
		}
		if aged > n {
			n = aged
			s.agePrune = now
		}
	}
	if n == 0 {
		return nil
	}
	return append(free[:n:n], lingering...)
}

// retention says in words what the server keeps.
func (s *Server) retention() string {
	count, age := "every ended session", "for ever"
	if k := s.cfg.KeepEnded; k >= 0 {
		count = fmt.Sprintf("at most %d ended sessions", k)
	}
	if d := s.cfg.KeepEndedFor; d >= 0 {
		age = "for " + d.String()
	}
	return fmt.Sprintf("the server keeps %s, %s after they ended, and every live one", count, age)
}

// Close stops serving, kills every process the server started (and their
// descendants, found in the process table by their tag), waits until the
// process table shows none, and removes its temporary files.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	sessions := append([]*Session(nil), s.sessions...)
	s.mu.Unlock()

	var errs []error
	if s.httpSrv != nil {
		_ = s.httpSrv.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Every session at once: concurrent waits share process-table scans.
	var kills sync.WaitGroup
	var mu sync.Mutex
	for _, sess := range sessions {
		kills.Add(1)
		go func() {
			defer kills.Done()
			if err := s.kill(ctx, sess); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	kills.Wait()
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, errors.New("fakeapiserver: sessions did not finish within 10s"))
	}
	s.cleanupTmp()
	return errors.Join(errs...)
}

// kill kills sess's processes and closes its connection.
func (s *Server) kill(ctx context.Context, sess *Session) error {
	if sess.proc != nil {
		// Only while the leader is unreaped is its PID surely still its
		// group's; after that, the tag finds what is left.
		select {
		case <-sess.proc.done:
		default:
			_ = syscall.Kill(-sess.proc.pid(), syscall.SIGKILL)
		}
	}
	var err error
	if kerr := sess.Kill(ctx); kerr != nil {
		err = fmt.Errorf("fakeapiserver: kill session %s: %w", sess.ID, kerr)
	}
	sess.mu.Lock()
	tap := sess.tap
	sess.mu.Unlock()
	if tap != nil {
		_ = tap.Close()
	}
	return err
}

// Headers of the control API's list of sessions.
const (
	// TotalHeader: how many sessions the server registered since it started.
	TotalHeader = "X-Execconform-Sessions-Total"
	// DroppedHeader: how many of them the retention let go (Config.KeepEnded).
	DroppedHeader = "X-Execconform-Sessions-Dropped"
	// NextHeader, on a page cut by ?limit=: the seq to pass as ?after= for the next page.
	NextHeader = "X-Execconform-Next-After"
)

// serveSessions lists the kept sessions, oldest first: all of them, or
// with ?after=SEQ those registered after the one whose seq is SEQ, at
// most ?limit=N of them (NextHeader then says where the next page starts).
// One scan of the process table serves the whole list.
func (s *Server) serveSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var limit, after int64
	for _, p := range []struct {
		name string
		v    *int64
	}{{"limit", &limit}, {"after", &after}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				writeStatus(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("%s=%q: want a whole number, 0 or more", p.name, v))
				return
			}
			*p.v = n
		}
	}
	s.prune(r.Context())
	s.mu.Lock()
	i := sort.Search(len(s.sessions), func(i int) bool { return s.sessions[i].seq > after })
	page := slices.Clone(s.sessions[i:])
	total, dropped := s.total, s.dropped
	s.mu.Unlock()
	more := limit > 0 && int64(len(page)) > limit
	if more {
		page = page[:limit]
	}
	var procs []proctable.Proc
	if slices.ContainsFunc(page, func(sess *Session) bool { return sess.proc != nil }) {
		var err error
		if procs, err = s.procs.Snapshot(r.Context()); err != nil {
			writeStatus(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
	}
	out := make([]SessionInfo, 0, len(page))
	for _, sess := range page {
		out = append(out, sess.infoFrom(procs))
	}
	w.Header().Set(TotalHeader, strconv.FormatInt(total, 10))
	w.Header().Set(DroppedHeader, strconv.FormatInt(dropped, 10))
	if more {
		w.Header().Set(NextHeader, strconv.FormatInt(page[len(page)-1].seq, 10))
	}
	writeJSON(w, out)
}

func (s *Server) serveSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sess, ok := s.Session(id)
	if !ok {
		if n, err := strconv.ParseInt(strings.TrimPrefix(id, s.idPrefix), 10, 64); err == nil && strings.HasPrefix(id, s.idPrefix) && n <= sessionSeq.Load() {
			// Ours, but not here: dropped, or it never started.
			writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("session %q not found (%s)", id, s.retention()))
			return
		}
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("session %q not found", id))
		return
	}
	info, err := sess.Info(r.Context())
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	writeJSON(w, info)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

var _ io.Closer = (*Server)(nil)
