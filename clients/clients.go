// Package clients is the contract between the harness and the real exec
// clients it can drive instead of its emulator (scenarios.Client):
// client-go's remotecommand executors in a process of their own
// (clients/clientgo), a real kubectl on a pty (clients/kubectl), and
// headless Chromium running a web console's JavaScript client
// (clients/chromium). Each real client is driven through the same
// execclient.Session the emulator implements, so the judge is the same;
// what a client cannot do returns an error wrapping errors.ErrUnsupported,
// and the scenarios it cannot express are never given to it
// (scenarios.ClientCases, scenarios.Specs).
package clients

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/scenarios"
)

// Request is what a real client needs to open one exec session through
// the proxy under test.
type Request struct {
	// Case is the case the session belongs to: its Transport, Protocol
	// (what the client is expected to negotiate) and TTY.
	Case scenarios.Case
	// Front is the proxy's base URL (http or https) through the case's
	// client leg; the client appends the exec path (or, for kubectl, uses
	// it as its server).
	Front *url.URL
	// Header are the front credentials the run was given (Authorization,
	// Cookie, Origin...): each client sends what it can (a browser its
	// cookies; kubectl a bearer token, FrontBearer).
	Header http.Header
	// TLS is the client's TLS configuration for an https front, and
	// FrontCA, if known, the CA it trusts as PEM (else TrustedCA finds it).
	TLS     *tls.Config
	FrontCA []byte
	// APIToken is the API server's own token, for a client that
	// authenticates to the API server through the proxy (a browser's
	// bearer-token subprotocol). Never logged.
	APIToken string
	// The exec: what the harness's API server expects for this session
	// (the container tells sessions apart).
	Namespace, Pod, Container string
	Command                   []string
	// Logger receives the client's own log lines (nil discards).
	Logger *slog.Logger
}

// FrontBearer is the bearer token of req's "Authorization: Bearer"
// header, for clients that can only send a token (kubectl's kubeconfig),
// and whether there is one.
func (req Request) FrontBearer() (string, bool) {
	return strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
}

// Session is a real client's session.
type Session interface {
	execclient.Session
	// EndAs ends the session the client's own way: one of its spec's
	// Named endings (scenarios.OwnSIGTERM...).
	EndAs(ctx context.Context, ending string) error
	// Release ends at once whatever the client started for the session
	// (its process, its tab) and waits for it to be gone; safe to call
	// twice, and after the session ended.
	Release()
}

// Dialer opens sessions of one real client.
type Dialer interface {
	// Client is the client it runs.
	Client() scenarios.Client
	// Dial starts the client on one exec session and returns once the
	// client's connection is up (its upgrade answered), or the error
	// that kept it from being up: a *execclient.HandshakeError for a
	// refused upgrade where the client can tell.
	Dial(ctx context.Context, req Request) (Session, error)
	// Close releases what the dialer shares between sessions (a browser,
	// a built binary's temp files).
	Close() error
}

// Unsupported is the error of an operation client cannot do.
func Unsupported(client scenarios.Client, op string) error {
	return fmt.Errorf("%s cannot %s: %w", client, op, errors.ErrUnsupported)
}
