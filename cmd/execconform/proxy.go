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
	"time"

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
	token := fs.String("token", "", "bearer `token` sent to the backend")
	prefix := fs.String("path-prefix", "", "frontend path `prefix`, e.g. /api/kubernetes")
	var origins multiFlag
	fs.Var(&origins, "allowed-origin", "an allowed browser `origin` besides the proxy's own host (repeatable)")
	variant := fs.String("variant", "", "a deliberately broken `variant` (see execconform run --list-variants)")
	ping := fs.Duration("ping-interval", proxyundertest.DefaultPingInterval, "keepalive ping interval to the frontend")
	pong := fs.Duration("pong-timeout", proxyundertest.DefaultPongTimeout, "how long to wait for a pong before the frontend is dead")
	shutdown := fs.Duration("shutdown-timeout", 10*time.Second, "bound on cleaning up open sessions at SIGTERM")
	verbose := fs.Bool("v", false, "debug logs")
	if done, err := parseFlags(fs, args, stdout); done {
		return err
	}
	if *backend == "" {
		fmt.Fprintln(stderr, "execconform proxy: --backend is required")
		return exitError(2)
	}
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
	p, err := proxyundertest.New(proxyundertest.Config{
		Backend: bu, TLSConfig: tlsCfg, Token: *token, PathPrefix: *prefix,
		AllowedOrigins: origins, PingInterval: *ping, PongTimeout: *pong,
		Variant: proxyundertest.Variant(*variant), Logger: logger,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
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
