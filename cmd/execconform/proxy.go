package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/proxyundertest"
)

// runProxy serves the reference proxy until SIGINT/SIGTERM, then cleans up
// every open session (exit on stdin, close handshake), bounded, and exits.
func runProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "listen `address`")
	backend := fs.String("backend", "", "API server base `URL` (https://... or http://...)")
	caFile := fs.String("ca-file", "", "PEM `file` of the CA that signed the backend's certificate")
	token := fs.String("token", "", "bearer `token` sent to the backend (visible in ps: prefer --token-file)")
	tokenFile := fs.String("token-file", "", "`file` holding the bearer token sent to the backend")
	frontFile := fs.String("front-token-file", "", "`file` holding the front credential clients must send (Authorization: Bearer, or the cookie --front-cookie)")
	frontCookie := fs.String("front-cookie", proxyundertest.DefaultFrontCookie, "the `name` of the cookie that carries the front credential")
	noFront := fs.Bool("insecure-no-front-auth", false, "serve clients without a front credential (only behind something that authenticates them)")
	prefix := fs.String("path-prefix", "", "frontend path `prefix`, e.g. /api/kubernetes")
	var origins, hosts multiFlag
	fs.Var(&origins, "allowed-origin", "an allowed browser `origin` besides the proxy's own host (repeatable)")
	fs.Var(&hosts, "allowed-host", "a `host` name the proxy serves besides IP literals and localhost, e.g. console.example.com (repeatable)")
	variant := fs.String("variant", "", "a deliberately broken `variant` (see execconform run --list-variants, and with --dialect execconform run --dialect D --list-variants)")
	dialectName := fs.String("dialect", "", "serve this front `dialect` (a built-in or a dialect file, docs/dialects.md) as the translating reference proxy: client-go's executor to the backend instead of a pass-through")
	executor := fs.String("executor", "fallback", "with --dialect, the `executor` to the backend: fallback (WebSocket v5, SPDY on an upgrade failure) or spdy")
	ping := fs.Duration("ping-interval", proxyundertest.DefaultPingInterval, "keepalive ping interval to the frontend")
	pong := fs.Duration("pong-timeout", proxyundertest.DefaultPongTimeout, "how long to wait for a pong before the frontend is dead")
	shutdown := fs.Duration("shutdown-timeout", 10*time.Second, "bound on cleaning up open sessions at SIGTERM")
	headerTimeout := fs.Duration("read-header-timeout", 10*time.Second, "how long a client may take to send its request's headers")
	relayReads := fs.Bool("relay-reads", false, "also relay, with the backend token, the reads kubectl makes before an exec (GET of /api, /apis, /api/v1, /version and of one pod), for kubectl as a client (execconform run --client kubectl)")
	verbose := fs.Bool("v", false, "debug logs")
	if done, err := parseFlags(fs, args, stdout); done {
		return err
	}
	if *backend == "" {
		fmt.Fprintln(stderr, "execconform proxy: --backend is required")
		return exitError(2)
	}
	backendToken, err := tokenFrom(*token, "token", *tokenFile, "token-file")
	if err != nil {
		return err
	}
	var front string
	switch {
	case *frontFile != "" && *noFront:
		return fmt.Errorf("--front-token-file and --insecure-no-front-auth: choose one")
	case *frontFile != "":
		if front, err = readTokenFile("--front-token-file", *frontFile); err != nil {
			return err
		}
	case !*noFront:
		fmt.Fprintln(stderr, "execconform proxy: a front credential is required: --front-token-file FILE (clients send it as Authorization: Bearer or the cookie "+*frontCookie+"), or --insecure-no-front-auth")
		return exitError(2)
	default:
		fmt.Fprintln(stderr, "execconform proxy: warning: --insecure-no-front-auth: whoever reaches the proxy gets a shell with its backend token")
	}
	warnOffLoopback(stderr, "listen", *listen, "whoever reaches it with the front credential gets a shell with the backend token")
	bu, err := url.Parse(*backend)
	if err != nil {
		return fmt.Errorf("--backend: %w", err)
	}
	var tlsCfg *tls.Config
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca-file %s: no certificate found", *caFile)
		}
		tlsCfg = &tls.Config{RootCAs: pool}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg := proxyundertest.Config{
		Backend: bu, TLSConfig: tlsCfg, Token: backendToken, PathPrefix: *prefix,
		FrontToken: front, FrontCookie: *frontCookie, InsecureNoFrontAuth: *noFront,
		AllowedOrigins: origins, AllowedHosts: hosts, PingInterval: *ping, PongTimeout: *pong,
		RelayReads: *relayReads, Logger: logger,
	}
	var p interface {
		http.Handler
		Sessions() int
		Shutdown(context.Context) error
	}
	if *dialectName != "" {
		d, err := dialect.Lookup(*dialectName)
		if err != nil {
			return fmt.Errorf("--dialect: %w", err)
		}
		if *executor != "fallback" && *executor != "spdy" {
			return fmt.Errorf("--executor %q: want fallback or spdy", *executor)
		}
		var ca []byte
		if *caFile != "" {
			if ca, err = os.ReadFile(*caFile); err != nil {
				return fmt.Errorf("--ca-file: %w", err)
			}
		}
		proxyundertest.DiscardClientGoLogs() // its executors log every cut connection as an error
		t, err := proxyundertest.NewTranslator(proxyundertest.TranslatorConfig{Config: cfg, BackendCA: ca, Dialect: d,
			ForceSPDY: *executor == "spdy", Broken: proxyundertest.TranslatorVariant(*variant)})
		if err != nil {
			return err
		}
		p = t
	} else {
		cfg.Variant = proxyundertest.Variant(*variant)
		rp, err := proxyundertest.New(cfg)
		if err != nil {
			return err
		}
		p = rp
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: *headerTimeout, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	(&unserved{log: logger}).install(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "url=http://%s%s\n", ln.Addr(), *prefix)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), *shutdown)
	defer cancel()
	start := time.Now()
	n := p.Sessions()
	err = p.Shutdown(sctx)
	_ = srv.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	fmt.Fprintf(stderr, "proxy: cleaned up %d open session(s) in %s\n", n, time.Since(start).Round(time.Millisecond))
	return err
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// readTokenFile reads a token that must come from a file (tokenFrom,
// for a flag without a value form).
func readTokenFile(fileFlag, file string) (string, error) {
	t, err := tokenFrom("", "", file, strings.TrimPrefix(fileFlag, "--"))
	if err == nil && strings.ContainsAny(t, "\r\n") {
		err = fmt.Errorf("%s %s: more than one line", fileFlag, file)
	}
	return t, err
}

// unserved logs a connection that closes before a request of it reached
// the handler: a slow client cut by ReadHeaderTimeout (slowloris), a
// malformed request, a port scan, a client that gave up.
type unserved struct {
	log   *slog.Logger
	mu    sync.Mutex
	conns map[net.Conn]*connInfo
}

type connInfo struct {
	opened time.Time
	served atomic.Bool
}

type connInfoKey struct{}

// install wires u into srv.
func (u *unserved) install(srv *http.Server) {
	u.conns = map[net.Conn]*connInfo{}
	next := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ci, ok := r.Context().Value(connInfoKey{}).(*connInfo); ok {
			ci.served.Store(true)
		}
		next.ServeHTTP(w, r)
	})
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		ci := &connInfo{opened: time.Now()}
		u.mu.Lock()
		u.conns[c] = ci
		u.mu.Unlock()
		return context.WithValue(ctx, connInfoKey{}, ci)
	}
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		if st != http.StateClosed && st != http.StateHijacked {
			return
		}
		u.mu.Lock()
		ci := u.conns[c]
		delete(u.conns, c)
		u.mu.Unlock()
		if st == http.StateClosed && ci != nil && !ci.served.Load() {
			u.log.Info("connection closed before a whole request reached the proxy (slow or malformed headers?)",
				"remote", c.RemoteAddr().String(), "after", time.Since(ci.opened).Round(time.Millisecond))
		}
	}
}
