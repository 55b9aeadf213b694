// Package gotest is the Go example of docs/testing-your-proxy.md, run by
// make examples: a proxy's own _test.go that runs the whole conformance
// matrix against it. Here "myproxy" is execconform's reference proxy;
// replace the handler factory with your own.
package gotest

import (
	"net/http"
	"testing"

	"github.com/execconform/execconform/exectest"
	"github.com/execconform/execconform/proxyundertest"
)

func TestMyProxyConformance(t *testing.T) {
	newProxy := func(b exectest.Backend) (http.Handler, error) {
		// Point your proxy at the case's API server: its URL, a client TLS
		// configuration that trusts it (or b.CAFile) and its token.
		return proxyundertest.New(proxyundertest.Config{
			Backend: b.URL, TLSConfig: b.TLSConfig, Token: b.Token,
			// Your proxy's own credential: the client must send it.
			FrontToken:   "example-front-token",
			PingInterval: proxyundertest.SuitePingInterval, PongTimeout: proxyundertest.SuitePongTimeout,
		})
	}
	exectest.TestProxy(t, exectest.HandlerTarget(newProxy),
		// How long the proxy takes, at most, to notice a silent client
		// (ping interval + pong timeout): the half-open cases wait for it.
		exectest.Keepalive(proxyundertest.SuiteKeepalive),
		// The credential your proxy wants from a browser (a session
		// cookie) or a program (Authorization): the front-door cases
		// check that it refuses requests without it.
		exectest.ClientHeader("Cookie", proxyundertest.DefaultFrontCookie+"=example-front-token"))
}
