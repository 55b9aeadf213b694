// Package proxyundertest is the reference exec WebSocket proxy of
// execconform: what a web console's backend should do between the browser
// and the Kubernetes API server, plus deliberately broken variants of it.
//
//	browser ──ws──▶ Proxy.ServeHTTP ──wss──▶ API server .../pods/NAME/exec
//	       frontend      (one writer per        backend
//	                      connection)
//
// When the frontend goes away for any reason (close frame, EOF, reset,
// keepalive timeout, oversized message) the proxy writes "exit"+Enter on the
// exec stdin channel, framed for the negotiated subprotocol, and then closes
// the backend connection with a real WebSocket close handshake. Without that,
// the runtime keeps a tty shell's pty open and the shell survives as an
// orphan (see /work/shared/PROTOCOL.md).
package proxyundertest

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/internal/sockbuf"
	"github.com/gorilla/websocket"
)

// Defaults of the Config durations and sizes.
const (
	DefaultMaxMessageSize   = 1 << 20
	DefaultPingInterval     = 10 * time.Second
	DefaultPongTimeout      = 10 * time.Second
	DefaultCloseTimeout     = 2 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultFrontCookie      = "execconform_front"
)

// maxErrorBody bounds the body of a refused backend handshake relayed to
// the frontend (gorilla keeps at most 1 KiB of it anyway).
const maxErrorBody = 64 << 10

// Config configures a Proxy. Zero durations and sizes take the defaults.
type Config struct {
	Backend   *url.URL    // API server base URL, https or http (wss or ws derived)
	TLSConfig *tls.Config // for the backend (CA)
	Token     string      // bearer token sent to the backend, replacing any client Authorization
	// PathPrefix is stripped from frontend paths: frontend path = PathPrefix
	// + backend path. Requests outside it get 404.
	PathPrefix string
	// AllowedOrigins are the origins (exact scheme://host[:port]) allowed
	// besides the request's own host. A request without Origin (a
	// non-browser client) is allowed; any other gets 403 before upgrading.
	AllowedOrigins []string
	// FrontToken is the credential every request must carry: as
	// "Authorization: Bearer FrontToken" (a program) or as the cookie
	// FrontCookie (a browser, which cannot set headers on a WebSocket).
	// Anything else gets 401 before the backend is dialled. The proxy
	// lends its backend Token to whoever passes this check, so New
	// requires it unless InsecureNoFrontAuth.
	FrontToken string
	// FrontCookie is the cookie's name (default DefaultFrontCookie).
	FrontCookie string
	// InsecureNoFrontAuth serves requests without a front credential: only
	// for a proxy that something in front of it authenticates.
	InsecureNoFrontAuth bool
	// AllowedHosts are the Host values (host or host:port) the proxy
	// serves besides IP literals and localhost. A request for any other
	// host gets 403: a DNS-rebinding page (evil.example resolving to
	// 127.0.0.1) sends its own name, and its Origin matches that Host.
	AllowedHosts []string
	// MaxMessageSize is the read limit of both connections. An oversized
	// frontend message ends the session (close 1009 to the client).
	MaxMessageSize int64
	// PingInterval is the period of keepalive pings to the frontend. The
	// frontend is dead when nothing (a pong or anything else) is read within
	// PingInterval+PongTimeout of the last frame.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// CloseTimeout bounds each close handshake wait.
	CloseTimeout time.Duration
	// HandshakeTimeout bounds the backend dial and the frontend upgrade.
	HandshakeTimeout time.Duration
	// RelayReads relays to the backend, with Token, the reads a client
	// such as kubectl makes before an exec, and only those: GET or HEAD
	// of discovery (/api, /apis, /api/v1, /version) and of one pod
	// (/api/v1/namespaces/NS/pods/NAME), after the same Host, front
	// credential and Origin checks as an exec upgrade, each logged. Off,
	// the proxy serves exec upgrades only (kubectl cannot use it).
	RelayReads bool
	Logger     *slog.Logger // nil discards
	Variant    Variant      // deliberately broken behaviours; zero is correct
}

// ender is an open session as Shutdown sees it: a WebSocket session or a
// SPDY one.
type ender interface {
	requestShutdown() // end as on a frontend end
	forceClose()      // drop both connections
}

// Proxy is the reference exec proxy, an http.Handler.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	prefix    string
	upgrader  websocket.Upgrader
	transport *http.Transport
	rp        *httputil.ReverseProxy // the OpenDoor variant's relay of anything
	readRP    *httputil.ReverseProxy // RelayReads: the reads before an exec

	mu       sync.Mutex
	closed   bool // Shutdown was called
	aborted  bool // Shutdown's context expired
	sessions map[ender]struct{}
	active   sync.WaitGroup // exec requests from the backend dial to the session's end
	nextID   atomic.Uint64
	never    chan struct{} // never closed (the LeakGoroutine variant waits on it)

}

// The FDLeak variant's files, for the life of the process.
var (
	leakedMu    sync.Mutex
	leakedFiles []*os.File
)

// backendSendBuffer is SO_SNDBUF of backend connections (the kernel doubles it).
const backendSendBuffer = 32 << 10

// New checks cfg, fills in the defaults and returns a Proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Backend == nil {
		return nil, errors.New("proxyundertest: Config.Backend is required")
	}
	backend := *cfg.Backend
	if backend.Scheme != "https" && backend.Scheme != "http" {
		return nil, fmt.Errorf("proxyundertest: backend %q: scheme must be https or http", cfg.Backend)
	}
	if backend.Host == "" {
		return nil, fmt.Errorf("proxyundertest: backend %q has no host", cfg.Backend)
	}
	backend.RawQuery, backend.Fragment = "", ""
	cfg.Backend = &backend
	if !cfg.Variant.valid() {
		return nil, fmt.Errorf("proxyundertest: unknown variant %q", string(cfg.Variant))
	}
	if cfg.PathPrefix != "" && !strings.HasPrefix(cfg.PathPrefix, "/") {
		return nil, fmt.Errorf("proxyundertest: PathPrefix %q must start with /", cfg.PathPrefix)
	}
	switch {
	case cfg.FrontToken == "" && !cfg.InsecureNoFrontAuth:
		return nil, errors.New("proxyundertest: Config.FrontToken is required (or InsecureNoFrontAuth): the proxy lends its backend token to every request it lets through")
	case cfg.FrontToken != "" && cfg.InsecureNoFrontAuth:
		return nil, errors.New("proxyundertest: Config.FrontToken and InsecureNoFrontAuth: choose one")
	case strings.ContainsAny(cfg.FrontToken, " \t\r\n;,\""):
		return nil, errors.New("proxyundertest: Config.FrontToken must not contain spaces, quotes, commas or semicolons (it travels in a header and a cookie)")
	}
	if cfg.FrontCookie == "" {
		cfg.FrontCookie = DefaultFrontCookie
	}
	for _, h := range cfg.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/ ") {
			return nil, fmt.Errorf("proxyundertest: allowed host %q is not host or host:port", h)
		}
	}
	for _, o := range cfg.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("proxyundertest: allowed origin %q is not scheme://host[:port]", o)
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"PingInterval", &cfg.PingInterval, DefaultPingInterval},
		{"PongTimeout", &cfg.PongTimeout, DefaultPongTimeout},
		{"CloseTimeout", &cfg.CloseTimeout, DefaultCloseTimeout},
		{"HandshakeTimeout", &cfg.HandshakeTimeout, DefaultHandshakeTimeout},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("proxyundertest: %s %v is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxMessageSize < 0 {
		return nil, fmt.Errorf("proxyundertest: MaxMessageSize %d is negative", cfg.MaxMessageSize)
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.TLSConfig != nil {
		cfg.TLSConfig = cfg.TLSConfig.Clone()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	p := &Proxy{
		never:    make(chan struct{}),
		cfg:      cfg,
		log:      cfg.Logger.With("component", "proxy"),
		prefix:   strings.TrimSuffix(cfg.PathPrefix, "/"),
		sessions: make(map[ender]struct{}),
	}
	p.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		// The origin was checked before dialing the backend (checkOrigin).
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			http.Error(w, "proxyundertest: "+reason.Error(), status)
		},
	}
	p.transport = http.DefaultTransport.(*http.Transport).Clone()
	p.transport.Proxy = nil // like the WebSocket dialer: straight to the backend
	p.transport.TLSClientConfig = cfg.TLSConfig.Clone()
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL, _ = p.backendURL(pr.In.URL) // ServeHTTP checked the prefix
			pr.Out.Host = ""
			p.setAuth(pr.Out.Header)
			pr.SetXForwarded()
		},
		Transport: p.transport,
		ErrorLog:  slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	p.readRP = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL, _ = p.backendURL(pr.In.URL) // ServeHTTP checked the prefix
			pr.Out.Host = ""
			// Only what a read needs reaches the API server: not the
			// front credential (a cookie), nor anything else the client sent.
			pr.Out.Header = http.Header{}
			for _, h := range []string{"Accept", "User-Agent"} {
				if v := pr.In.Header.Values(h); len(v) > 0 {
					pr.Out.Header[h] = v
				}
			}
			p.setAuth(pr.Out.Header)
		},
		Transport: p.transport,
		ErrorLog:  slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// ServeHTTP proxies exec upgrades as sessions, with RelayReads relays
// the reads before an exec (serveRead), and refuses everything else: a
// request for a host it does not serve (403), outside its prefix (404),
// without the front credential (401), other than an exec upgrade or a
// relayed read (404, or 400 on the exec path), from a foreign Origin
// (403). Each refusal is logged, without the request's credentials.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := p.checkHost(r); err != nil {
		p.refuse(w, r, http.StatusForbidden, err)
		return
	}
	if hasDotSegment(r.URL.Path) || r.URL.Path != "" && !strings.HasPrefix(r.URL.Path, "/") {
		p.refuse(w, r, http.StatusBadRequest, errors.New("the path has dot segments (or is no path): they would reach the API server resolved outside the prefix"))
		return
	}
	target, ok := p.backendURL(r.URL)
	if !ok {
		p.refuse(w, r, http.StatusNotFound, errors.New("outside the path prefix"))
		return
	}
	if err := p.checkFront(r); err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="execconform proxy"`)
		p.refuse(w, r, http.StatusUnauthorized, err)
		return
	}
	rest, _ := cutPathPrefix(r.URL.Path, p.prefix)
	exec := isExecPath(rest) // the API path the client asked for, not the backend's base path joined to it
	upgrade := websocket.IsWebSocketUpgrade(r)
	if exec && !upgrade && isSPDYUpgrade(r) {
		p.serveSPDY(w, r, target)
		return
	}
	switch {
	case p.cfg.Variant.relaysAPI() && !upgrade:
		p.rp.ServeHTTP(w, r)
		return
	case p.cfg.RelayReads && !upgrade && isReadPath(rest):
		p.serveRead(w, r)
		return
	case !exec && p.cfg.RelayReads:
		p.refuse(w, r, http.StatusNotFound, errors.New("this proxy serves only exec upgrades (/api/v1/namespaces/NS/pods/NAME/exec) and reads of discovery and of a pod"))
		return
	case !exec:
		p.refuse(w, r, http.StatusNotFound, errors.New("this proxy serves only exec upgrades (/api/v1/namespaces/NS/pods/NAME/exec)"))
		return
	case !upgrade:
		p.refuse(w, r, http.StatusBadRequest, errors.New("an exec request must be a WebSocket or SPDY/3.1 upgrade"))
		return
	}
	p.serveExec(w, r, target)
}

// refuse answers status with err's words, and logs it.
func (p *Proxy) refuse(w http.ResponseWriter, r *http.Request, status int, err error) {
	p.log.Info("request refused", "status", status, "reason", err.Error(), "method", r.Method,
		"host", r.Host, "path", r.URL.Path, "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
	http.Error(w, fmt.Sprintf("proxyundertest: %d %s: %s", status, http.StatusText(status), err), status)
}

// isReadPath reports whether the backend path is one that RelayReads
// relays: discovery, or one pod.
func isReadPath(path string) bool {
	switch path {
	case "/api", "/apis", "/api/v1", "/version":
		return true
	}
	parts := strings.Split(path, "/")
	return len(parts) == 7 && parts[0] == "" && parts[1] == "api" && parts[2] == "v1" && parts[3] == "namespaces" &&
		parts[4] != "" && parts[5] == "pods" && parts[6] != ""
}

// serveRead relays a read (RelayReads) to the backend with the proxy's
// token: GET or HEAD only, from an allowed Origin; ServeHTTP has checked
// the host, the path and the front credential.
func (p *Proxy) serveRead(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		p.refuse(w, r, http.StatusMethodNotAllowed, errors.New("this proxy relays only reads (GET, HEAD) of discovery and of a pod"))
		return
	}
	if err := p.checkOrigin(r); err != nil {
		p.refuse(w, r, http.StatusForbidden, err)
		return
	}
	p.log.Info("read relayed", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	p.readRP.ServeHTTP(w, r)
}

// isExecPath reports whether the backend path is a pod's exec endpoint.
func isExecPath(path string) bool {
	parts := strings.Split(path, "/")
	return len(parts) == 8 && parts[0] == "" && parts[1] == "api" && parts[2] == "v1" && parts[3] == "namespaces" &&
		parts[4] != "" && parts[5] == "pods" && parts[6] != "" && parts[7] == "exec"
}

// checkFront checks the front credential: "Authorization: Bearer T" or
// the cookie, compared in constant time.
func (p *Proxy) checkFront(r *http.Request) error {
	if p.cfg.InsecureNoFrontAuth || p.cfg.Variant.noFrontAuth() {
		return nil
	}
	var got []string
	for _, a := range r.Header.Values("Authorization") {
		if t, ok := strings.CutPrefix(a, "Bearer "); ok {
			got = append(got, strings.TrimSpace(t))
		}
	}
	for _, c := range r.CookiesNamed(p.cfg.FrontCookie) {
		got = append(got, c.Value)
	}
	if len(got) == 0 {
		return fmt.Errorf("no front credential (Authorization: Bearer, or the cookie %s)", p.cfg.FrontCookie)
	}
	for _, t := range got {
		if p.cfg.Variant.frontPresenceOnly() || subtle.ConstantTimeCompare([]byte(t), []byte(p.cfg.FrontToken)) == 1 {
			return nil
		}
	}
	return errors.New("the front credential is wrong")
}

// checkHost allows a Host that is an IP literal, localhost, or one of
// AllowedHosts: a DNS name that resolves to the proxy but that it does not
// serve is a rebinding page's.
func (p *Proxy) checkHost(r *http.Request) error {
	if p.cfg.Variant.noHostCheck() {
		return nil
	}
	host := r.Host
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if net.ParseIP(name) != nil || equalFoldASCII(name, "localhost") {
		return nil
	}
	for _, a := range p.cfg.AllowedHosts {
		if equalFoldASCII(a, host) || equalFoldASCII(a, name) {
			return nil
		}
	}
	return fmt.Errorf("host %q is not served here (IP literals, localhost and the allowed hosts are)", host)
}

// Sessions returns the number of open sessions.
func (p *Proxy) Sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

// Shutdown ends every open session exactly as on a frontend end (exit,
// close handshake with the backend, close 1001 to the frontend), and waits
// for them, at most until ctx is done; it then drops what is left and
// returns ctx's error. Upgrades after Shutdown get 503.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	for s := range p.sessions {
		s.requestShutdown()
	}
	p.mu.Unlock()

	done := make(chan struct{})
	go func() { p.active.Wait(); close(done) }()
	select {
	case <-done:
		p.transport.CloseIdleConnections()
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	p.aborted = true
	for s := range p.sessions {
		s.forceClose()
	}
	p.mu.Unlock()
	p.transport.CloseIdleConnections()
	return fmt.Errorf("proxyundertest: shutdown: %w", ctx.Err())
}

// enter counts an exec request in, unless the proxy is shut down.
func (p *Proxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.active.Add(1)
	return true
}

// register adds s to the open sessions; a session that comes up after
// Shutdown is ended at once.
func (p *Proxy) register(s ender) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sessions[s] = struct{}{}
	if p.closed {
		s.requestShutdown()
	}
	if p.aborted {
		s.forceClose()
	}
}

func (p *Proxy) unregister(s ender) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.sessions, s)
}

func (p *Proxy) setAuth(h http.Header) {
	h.Del("Authorization")
	if p.cfg.Token != "" {
		h.Set("Authorization", "Bearer "+p.cfg.Token)
	}
}

// backendURL maps a frontend URL to the backend: the prefix is stripped and
// the rest appended to the backend's path; the query is kept. It reports
// false for a path outside the prefix.
func (p *Proxy) backendURL(in *url.URL) (*url.URL, bool) {
	if in.Path != "" && !strings.HasPrefix(in.Path, "/") || hasDotSegment(in.Path) {
		// "*" (OPTIONS *) is no path below any base; dot segments would
		// be resolved by the backend, outside the prefix and the base
		// path, with the proxy's token.
		return nil, false
	}
	rest, ok := cutPathPrefix(in.Path, p.prefix)
	if !ok {
		return nil, false
	}
	u := *p.cfg.Backend
	u.Path = joinPath(p.cfg.Backend.Path, rest)
	u.RawPath = ""
	if in.RawPath != "" {
		if raw, ok := cutPathPrefix(in.RawPath, p.prefix); ok {
			u.RawPath = joinPath(p.cfg.Backend.EscapedPath(), raw)
		}
	}
	// A '#' in the query is data to the proxy (url.ParseRequestURI keeps
	// it), but a fragment to whoever parses the URL again (the dialers
	// do): escaped, the backend reads the query the proxy judged.
	u.RawQuery = strings.ReplaceAll(in.RawQuery, "#", "%23")
	return &u, true
}

// hasDotSegment reports whether a (decoded) path has a "." or ".."
// segment: %2e%2e is one too, since URL.Path is decoded.
func hasDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// equalFoldASCII compares ASCII letters without case and everything else
// exactly, as host names and schemes compare (RFC 3986 section 6.2.2.1);
// strings.EqualFold's Unicode folding would take U+017F (long s) for s
// and U+212A (Kelvin) for k.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// originHost is the authority (host[:port]) of an Origin, as sent: not
// percent-decoded (a browser never encodes its own host, and a decoded
// %E2%84%AA would be a Kelvin sign), without userinfo. False if the
// origin has none.
func originHost(o string) (string, bool) {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", false
	}
	rest, ok := strings.CutPrefix(o, u.Scheme+"://")
	if !ok && u.Scheme == "" {
		rest, ok = strings.CutPrefix(o, "//")
	}
	if !ok {
		return "", false
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest, true
}

func cutPathPrefix(path, prefix string) (string, bool) {
	switch {
	case prefix == "":
		return path, true
	case path == prefix:
		return "", true
	case strings.HasPrefix(path, prefix+"/"):
		return path[len(prefix):], true
	}
	return "", false
}

func joinPath(base, rest string) string {
	base = strings.TrimSuffix(base, "/")
	if rest == "" && base == "" {
		return "/"
	}
	return base + rest
}

// checkOrigin allows a request without Origin, an Origin on the request's
// own host, or one of AllowedOrigins.
func (p *Proxy) checkOrigin(r *http.Request) error {
	origin := r.Header.Values("Origin")
	if len(origin) == 0 || p.cfg.Variant.noOriginCheck() {
		return nil
	}
	o := origin[0]
	if p.cfg.Variant.originPrefix() {
		// The bug: a prefix test, without the port, on the string.
		if name, _, err := net.SplitHostPort(r.Host); err == nil && strings.HasPrefix(o, "http://"+name) {
			return nil
		}
	}
	for _, a := range p.cfg.AllowedOrigins {
		if equalFoldASCII(strings.TrimSuffix(a, "/"), o) {
			return nil
		}
	}
	if h, ok := originHost(o); ok && equalFoldASCII(h, r.Host) {
		return nil
	}
	return fmt.Errorf("origin %q is not allowed: it is neither on this host (%s) nor one of the allowed origins", o, r.Host)
}

// isTTY mirrors how the API server reads the tty query parameter
// (apimachinery's Convert_Slice_string_To_bool): present and neither "0"
// nor "false" (any case) means true, so tty=true and tty=1 do.
func isTTY(q url.Values) bool {
	v, ok := q["tty"]
	if !ok || len(v) == 0 {
		return false
	}
	return v[0] != "0" && !strings.EqualFold(v[0], "false")
}

func (p *Proxy) serveExec(w http.ResponseWriter, r *http.Request, target *url.URL) {
	if err := p.checkOrigin(r); err != nil {
		p.refuse(w, r, http.StatusForbidden, err)
		return
	}
	// Refuse what gorilla's Upgrade would refuse before a process is started
	// on the backend for nothing.
	switch {
	case r.Method != http.MethodGet:
		http.Error(w, "proxyundertest: a WebSocket upgrade must be a GET", http.StatusMethodNotAllowed)
		return
	case r.Header.Get("Sec-Websocket-Version") != "13":
		w.Header().Set("Sec-Websocket-Version", "13")
		http.Error(w, "proxyundertest: unsupported Sec-WebSocket-Version", http.StatusBadRequest)
		return
	case !validKey(r.Header.Get("Sec-Websocket-Key")):
		http.Error(w, "proxyundertest: missing or malformed Sec-WebSocket-Key", http.StatusBadRequest)
		return
	}
	if _, ok := w.(http.Hijacker); !ok {
		http.Error(w, "proxyundertest: the connection cannot be upgraded (HTTP/2?)", http.StatusInternalServerError)
		return
	}
	if !p.enter() {
		http.Error(w, "proxyundertest: the proxy is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer p.active.Done()

	id := "s" + strconv.FormatUint(p.nextID.Add(1), 10)
	log := p.log.With("session", id)
	offered := websocket.Subprotocols(r)
	tty := isTTY(r.URL.Query())

	target = cloneURL(target)
	if target.Scheme == "https" {
		target.Scheme = "wss"
	} else {
		target.Scheme = "ws"
	}
	dialer := websocket.Dialer{
		TLSClientConfig:  p.cfg.TLSConfig,
		HandshakeTimeout: p.cfg.HandshakeTimeout,
		Subprotocols:     p.cfg.Variant.forwardOffers(offered), // in the client's order: the backend picks
		// A bounded send buffer: on loopback Linux grows it to 4 MiB, and
		// the exit written on a frontend end would wait behind that much
		// stale input (a paste to a stalled shell) past the close bound.
		NetDialContext: (&net.Dialer{Control: sockbuf.SendControl(backendSendBuffer)}).DialContext,
	}
	if p.cfg.Variant.secondWriter() {
		// A gorilla proxy that writes every message in one frame with a
		// write buffer as large as a message, so that its two writers meet
		// inside gorilla.
		dialer.WriteBufferSize = int(p.cfg.MaxMessageSize) + 14
	}
	hdr := http.Header{}
	p.setAuth(hdr)
	bc, resp, err := dialer.DialContext(r.Context(), target.String(), hdr)
	if err != nil {
		if errors.Is(err, websocket.ErrBadHandshake) && resp != nil && resp.StatusCode >= 200 {
			// Relay the refusal (403 for no supported subprotocol, 401,
			// 404 for no such pod, ...) without upgrading.
			log.Info("backend refused the handshake", "status", resp.StatusCode, "offered", execproto.RedactOffer(offered))
			body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
			if ct := resp.Header.Get("Content-Type"); ct != "" {
				w.Header().Set("Content-Type", ct)
			}
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(resp.StatusCode)
			_, _ = w.Write(body)
			return
		}
		log.Warn("backend dial failed", "err", err)
		http.Error(w, "proxyundertest: backend: "+err.Error(), http.StatusBadGateway)
		return
	}
	chosen := bc.Subprotocol()
	proto := execproto.Protocol(chosen)
	log = log.With("protocol", proto.String(), "tty", tty)
	if chosen != "" && !slices.Contains(offered, chosen) {
		log.Warn("backend chose a subprotocol the client did not offer", "offered", execproto.RedactOffer(offered))
		http.Error(w, fmt.Sprintf("proxyundertest: backend chose subprotocol %q, which the client did not offer", chosen), http.StatusBadGateway)
		abandonBackend(bc, &p.cfg, proto, tty, log)
		return
	}
	if !proto.Supported() {
		log.Warn("unknown subprotocol: the exit is framed as binary")
	}

	respHdr := http.Header{}
	if answer := p.cfg.Variant.answer(offered, chosen); answer != "" {
		respHdr.Set("Sec-Websocket-Protocol", answer) // exactly the backend's choice
	}
	fc, err := p.upgrader.Upgrade(w, r, respHdr)
	if err != nil {
		// Upgrade has answered the client; the backend process runs.
		log.Warn("frontend upgrade failed", "err", err)
		abandonBackend(bc, &p.cfg, proto, tty, log)
		return
	}

	s := &session{
		id:           id,
		log:          log,
		variant:      p.cfg.Variant,
		proto:        proto,
		tty:          tty,
		closeTimeout: p.cfg.CloseTimeout,
		front:        newFrontendEndpoint(fc, &p.cfg),
		back:         newBackendEndpoint(bc, &p.cfg),
		shutdown:     make(chan struct{}),
		abort:        make(chan struct{}),
	}
	if proto.StreamClose() && tty && !p.cfg.Variant.forwardsTTYHalfClose() {
		s.front.holdStdinClose = true
		s.front.holdLog = func() {
			log.Info("stdin half-closed by the client: held back on a tty (the shell would outlive it, and the exit could not follow)")
		}
	}
	log.Info("session open", "path", target.Path)
	if p.cfg.Variant.leaks() {
		go func() { <-p.never }() // the LeakGoroutine bug: nobody closes it
	}
	if p.cfg.Variant.leaksFile() {
		// The FDLeak bug: a per-session file opened and never closed. It
		// stays referenced for the life of the process (not of this Proxy),
		// so that no finalizer closes it either.
		if f, err := os.Open(os.DevNull); err == nil {
			leakedMu.Lock()
			leakedFiles = append(leakedFiles, f)
			leakedMu.Unlock()
		}
	}
	p.register(s)
	defer p.unregister(s)
	s.run()
}

// validKey: RFC 6455 section 4.1, the key is 16 bytes in base64.
func validKey(k string) bool {
	b, err := base64.StdEncoding.DecodeString(k)
	return err == nil && len(b) == 16
}

func cloneURL(u *url.URL) *url.URL {
	c := *u
	return &c
}
