// Package harness runs conformance cases against a proxy under test: for
// each case it starts a fake API server and the proxy, drives a client
// emulator through the case's script and ending, and judges the outcome
// from the process table and the recorded frames.
//
//	client emulator ──> proxy under test (Target) ──> fakeapiserver ──> real shell
//	      │                                               │               │
//	      └── close code, status ─────────────┐    frames, close      process table
//	                                          v           v               v
//	                                        Result (verdict, evidence, time-to-reap)
package harness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/execconform/execconform/scenarios"
)

// Backend is the API server a target must proxy to.
type Backend struct {
	URL       *url.URL    // base URL, https (or http when the backend is plain)
	Token     string      // bearer token the backend requires
	CAFile    string      // PEM file of the CA that signed the backend's certificate
	TLSConfig *tls.Config // a client configuration that trusts the backend
	// Output is where an in-process target (HandlerTarget) logs: the
	// harness keeps the end of it with a failed case (TargetOutput), and
	// reads a panic there (TargetPanic).
	Output io.Writer
}

// Target starts the proxy under test in front of backend. It returns the
// URL clients use (the exec path /api/v1/... is appended to it, so it
// carries any path prefix) and a stop function that releases everything.
type Target func(ctx context.Context, backend Backend) (front *url.URL, stop func(), err error)

// Shutdowner is implemented by handlers that clean up their sessions on
// shutdown (the reference proxy does).
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}

// HandlerTarget serves the http.Handler that newHandler builds on a new
// loopback listener per case. On stop it calls the handler's Shutdown
// (when it has one), bounded, then closes the server.
func HandlerTarget(newHandler func(b Backend) (http.Handler, error)) Target {
	return handlerTarget(newHandler, nil)
}

// TLSHandlerTarget is HandlerTarget over https, serving with server (a
// client of the run trusts it through Options.FrontTLS): for the real
// clients, which send no credential over plain HTTP (kubectl).
func TLSHandlerTarget(newHandler func(b Backend) (http.Handler, error), server *tls.Config) Target {
	return handlerTarget(newHandler, server)
}

func handlerTarget(newHandler func(b Backend) (http.Handler, error), server *tls.Config) Target {
	return func(ctx context.Context, b Backend) (*url.URL, func(), error) {
		b.Output = TargetOutput(ctx)
		h, err := newHandler(b)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("harness: listen: %w", err)
		}
		scheme := "http"
		if server != nil {
			ln, scheme = tls.NewListener(ln, server.Clone()), "https"
		}
		// A handler's panic, which net/http recovers, is logged there too.
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(b.Output, "", 0)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return
			}
		}()
		stop := func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if s, ok := h.(Shutdowner); ok {
				_ = s.Shutdown(ctx)
			}
			_ = srv.Close()
			<-done
		}
		return &url.URL{Scheme: scheme, Host: ln.Addr().String()}, stop, nil
	}
}

// URLTarget is a proxy that is already running at front (the exec path
// /api/v1/... is appended to it, so it carries any path prefix). The
// harness can neither stop it nor put faults between it and its API
// server: leave out the cases that need that (see NeedsOwnTarget).
func URLTarget(front *url.URL) Target {
	return func(ctx context.Context, _ Backend) (*url.URL, func(), error) {
		u := *front
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), map[string]string{"https": "443"}[u.Scheme]+map[string]string{"http": "80"}[u.Scheme])
		}
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := d.DialContext(dctx, "tcp", host)
		if err != nil {
			return nil, nil, fmt.Errorf("the proxy at %s is not accepting connections: %w", front, err)
		}
		c.Close()
		return &u, func() {}, nil
	}
}

// NeedsOwnTarget says why c cannot run against a URLTarget ("" if it can):
// it stops the proxy, or cuts the leg between the proxy and the API server.
func NeedsOwnTarget(c scenarios.Case) string {
	if c.Scenario.End.Kind == scenarios.EndTargetStop {
		return "it stops the proxy"
	}
	for _, f := range c.Scenario.Faults {
		if f.Leg == scenarios.BackendLeg {
			return "it puts faults between the proxy and the API server"
		}
	}
	return ""
}
