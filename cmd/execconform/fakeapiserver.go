package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/execconform/execconform/fakeapiserver"
)

func runFakeAPIServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakeapiserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "listen `address` (keep it on loopback)")
	token := fs.String("token", "", "bearer `token` clients must send, visible in ps (default: random, printed)")
	tokenFile := fs.String("token-file", "", "read the bearer token from this `file` (whitespace trimmed) instead of --token; it is not printed")
	insecure := fs.Bool("insecure-http", false, "serve plain HTTP instead of HTTPS")
	certDir := fs.String("cert-dir", "", "`directory` of the CA: ca.crt (and ca.key) are reused when there, made otherwise, so that a proxy trusting ca.crt keeps working across runs (default: a new CA in a temporary directory)")
	semantics := fs.String("semantics", string(fakeapiserver.Containerd), "what a disconnect does to a live process: containerd or hangup-on-disconnect")
	keepEnded := fs.Int("keep-ended", fakeapiserver.DefaultKeepEnded, "keep at most `n` ended sessions for the control API (negative: all); live ones are always kept")
	keepFor := fs.Duration("keep-ended-for", fakeapiserver.DefaultKeepEndedFor, "keep an ended session this `long` at least (negative: for ever)")
	verbose := fs.Bool("v", false, "log every session event to stderr, bad input included")
	if done, err := parseFlags(fs, args, stdout); done {
		return err
	}
	tok, err := tokenFrom(*token, "token", *tokenFile, "token-file")
	if err != nil {
		return err
	}
	if *keepEnded == 0 || *keepFor == 0 {
		return fmt.Errorf("--keep-ended or --keep-ended-for 0: not a bound (a negative one keeps all)")
	}
	warnNotLoopback(stderr, "listen", *listen)
	startJanitor(stderr)
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	if *certDir != "" {
		if err := os.MkdirAll(*certDir, 0o755); err != nil {
			return err
		}
	}
	srv, err := fakeapiserver.New(fakeapiserver.Config{
		Addr: *listen, Token: tok, Insecure: *insecure, CertDir: *certDir, KeepCA: *certDir != "",
		Semantics: fakeapiserver.Semantics(*semantics), KeepEnded: *keepEnded, KeepEndedFor: *keepFor,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		_ = srv.Close()
		return err
	}
	fmt.Fprintf(stdout, "url=%s\n", srv.URL())
	if *tokenFile != "" {
		fmt.Fprintf(stdout, "token-file=%s\n", *tokenFile)
	} else {
		fmt.Fprintf(stdout, "token=%s\n", srv.Token())
	}
	if ca := srv.CAFile(); ca != "" {
		fmt.Fprintf(stdout, "ca-file=%s\n", ca)
	}
	fmt.Fprintf(stdout, "control=%s/execconform/v1/sessions\n", srv.URL())
	<-ctx.Done()
	start := time.Now()
	err = srv.Close()
	fmt.Fprintf(stderr, "fakeapiserver: stopped; every process it started is gone (%s)\n", time.Since(start).Round(time.Millisecond))
	return err
}
