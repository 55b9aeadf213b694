// Package kubectl drives a real kubectl binary (kubectl exec, built from
// the kubectl library at ModuleVersion, see Build) through the proxy
// under test, as a user's kubectl would run it:
//
//	Session.Type ──▶ pty master ══ pty ══▶ kubectl exec -i -t ──ws/spdy──▶ proxy ──▶ API server
//	Session.Expect ◀── (stdout, stderr) ◀──┘  (own process group, HOME and kubeconfig)
//
// A tty case runs kubectl on a pty (stdin and stdout; kubectl puts it in
// raw mode, and sends a terminal size on SIGWINCH, which a resize of the
// pty raises), a notty case on pipes. kubectl's stderr is a pipe in both
// modes: kubectl runs with -v=6, and its log lines there (client-go's
// "Response" line for every request, the negotiated subprotocol) are how
// the Dialer knows that the exec upgrade was answered and how, and what
// else it printed ("command terminated with exit code N") is the exit
// status. Everything else on stderr is output, as a user sees it.
//
// What the client does on its own (SIGTERM, a closed terminal, ...) is
// measured in TestEndingsAgainstTheFake; its table is the ground truth
// of the kubectl cases.
package kubectl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/scenarios"
)

// Options configure a Dialer.
type Options struct {
	// Binary is a kubectl to run instead of the one Build builds.
	Binary string
	// Build says how to build it (when Binary is empty).
	Build BuildOptions
	// BuildTimeout bounds New's build (default 15 minutes: a cold
	// build takes about two on this project's machines).
	BuildTimeout time.Duration
	// Logger receives the Dialer's lines, and kubectl's own log lines
	// at debug level (nil discards).
	Logger *slog.Logger
}

// Dialer runs kubectl exec, one process per session.
type Dialer struct {
	bin string
	log *slog.Logger

	mu  sync.Mutex
	cas map[caKey][]byte // the CA (PEM) that verified each https front
}

type caKey struct {
	host string
	cfg  *tls.Config
}

var _ clients.Dialer = (*Dialer)(nil)

// New finds or builds kubectl (Build) and returns a Dialer that runs it.
func New(opts Options) (*Dialer, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "kubectl")
	bin := opts.Binary
	if bin == "" {
		timeout := opts.BuildTimeout
		if timeout <= 0 {
			timeout = 15 * time.Minute
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var err error
		if bin, err = Build(ctx, opts.Build); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kubectl: %w", err)
	}
	return &Dialer{bin: bin, log: log, cas: map[caKey][]byte{}}, nil
}

// Binary is the kubectl the Dialer runs.
func (d *Dialer) Binary() string { return d.bin }

// Client is scenarios.ClientKubectl.
func (d *Dialer) Client() scenarios.Client { return scenarios.ClientKubectl }

// Close releases nothing: each session removes its own files, and the
// built binary stays in the cache for the next run.
func (d *Dialer) Close() error { return nil }

// kubeconfig is the part of a kubeconfig file that Dial writes.
type kubeconfig struct {
	APIVersion     string         `json:"apiVersion"`
	Kind           string         `json:"kind"`
	Clusters       []namedCluster `json:"clusters"`
	Users          []namedUser    `json:"users"`
	Contexts       []namedContext `json:"contexts"`
	CurrentContext string         `json:"current-context"`
}

type namedCluster struct {
	Name    string  `json:"name"`
	Cluster cluster `json:"cluster"`
}

type cluster struct {
	Server                string `json:"server"`
	CertificateAuthority  string `json:"certificate-authority,omitempty"`
	InsecureSkipTLSVerify bool   `json:"insecure-skip-tls-verify,omitempty"`
	TLSServerName         string `json:"tls-server-name,omitempty"`
}

type namedUser struct {
	Name string `json:"name"`
	User user   `json:"user"`
}

type user struct {
	Token             string `json:"token,omitempty"`
	ClientCertificate string `json:"client-certificate,omitempty"`
	ClientKey         string `json:"client-key,omitempty"`
}

type namedContext struct {
	Name    string      `json:"name"`
	Context kubeContext `json:"context"`
}

type kubeContext struct {
	Cluster   string `json:"cluster"`
	User      string `json:"user"`
	Namespace string `json:"namespace,omitempty"`
}

// writeKubeconfig writes dir/kubeconfig for req: the server is the
// front (its path kept: kubectl appends /api/v1/... to it), the user
// the front's bearer token, and for an https front the TLS of req.TLS:
// the CA that verified the front's certificate (kubectl takes a file,
// req.TLS a pool: the root of the chain req.TLS verified is written),
// or insecure-skip-tls-verify, its server name, and its client
// certificate if it has one. The token is in this file only (mode 0600),
// never on kubectl's command line.
func (d *Dialer) writeKubeconfig(ctx context.Context, dir string, req clients.Request) (string, error) {
	server := *req.Front
	server.RawQuery, server.Fragment = "", ""
	switch server.Scheme {
	case "ws":
		server.Scheme = "http"
	case "wss":
		server.Scheme = "https"
	case "http", "https":
	default:
		return "", fmt.Errorf("kubectl: front %q: want an http or https URL", req.Front.Redacted())
	}
	c := cluster{Server: server.String()}
	u := user{}
	if token, ok := req.FrontBearer(); ok {
		u.Token = token
	}
	if server.Scheme == "https" && req.TLS != nil {
		t := req.TLS
		c.TLSServerName = t.ServerName
		if t.InsecureSkipVerify {
			c.InsecureSkipTLSVerify = true
		} else if t.RootCAs != nil {
			ca, err := d.frontCA(ctx, server.Host, t)
			if err != nil {
				return "", err
			}
			c.CertificateAuthority = filepath.Join(dir, "front-ca.crt")
			if err := os.WriteFile(c.CertificateAuthority, ca, 0o600); err != nil {
				return "", fmt.Errorf("kubectl: %w", err)
			}
		}
		if len(t.Certificates) > 0 {
			certFile, keyFile, err := writeClientCert(dir, t.Certificates[0])
			if err != nil {
				return "", err
			}
			u.ClientCertificate, u.ClientKey = certFile, keyFile
		}
	}
	ns := req.Namespace
	if ns == "" {
		ns = "default"
	}
	kc := kubeconfig{
		APIVersion: "v1", Kind: "Config",
		Clusters:       []namedCluster{{Name: "front", Cluster: c}},
		Users:          []namedUser{{Name: "front", User: u}},
		Contexts:       []namedContext{{Name: "front", Context: kubeContext{Cluster: "front", User: "front", Namespace: ns}}},
		CurrentContext: "front",
	}
	b, err := yaml.Marshal(kc)
	if err != nil {
		return "", fmt.Errorf("kubectl: kubeconfig: %w", err)
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("kubectl: %w", err)
	}
	return path, nil
}

// frontCA is the CA certificate (PEM) that cfg trusts for host's
// certificate: the root of the chain a TLS handshake with cfg verified.
// One handshake per front and configuration, then remembered.
func (d *Dialer) frontCA(ctx context.Context, host string, cfg *tls.Config) ([]byte, error) {
	key := caKey{host, cfg}
	d.mu.Lock()
	ca, ok := d.cas[key]
	d.mu.Unlock()
	if ok {
		return ca, nil
	}
	c := cfg.Clone()
	c.NextProtos = []string{"http/1.1"}
	if c.ServerName == "" {
		name, _, err := net.SplitHostPort(host)
		if err != nil {
			name = host
		}
		c.ServerName = name
	}
	td := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: c}
	conn, err := td.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("kubectl: the front's CA for kubectl's kubeconfig: TLS handshake with %s: %w", host, err)
	}
	state := conn.(*tls.Conn).ConnectionState()
	_ = conn.Close()
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return nil, fmt.Errorf("kubectl: the front's CA for kubectl's kubeconfig: the handshake with %s verified no chain", host)
	}
	chain := state.VerifiedChains[0]
	ca = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[len(chain)-1].Raw})
	d.mu.Lock()
	d.cas[key] = ca
	d.mu.Unlock()
	return ca, nil
}

// writeClientCert writes a client certificate and its key as PEM files.
func writeClientCert(dir string, cert tls.Certificate) (certFile, keyFile string, err error) {
	var certPEM []byte
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", "", fmt.Errorf("kubectl: client key: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("kubectl: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", fmt.Errorf("kubectl: %w", err)
	}
	return certFile, keyFile, nil
}

// unsentHeaders are the names of req's headers that kubectl cannot send
// (it sends a bearer token, nothing else of the run's credentials).
func unsentHeaders(req clients.Request) []string {
	var out []string
	for name := range req.Header {
		if name == "Authorization" {
			if _, ok := req.FrontBearer(); ok {
				continue
			}
		}
		out = append(out, name)
	}
	return out
}

// errorsIsClosed reports whether err is a read of a closed file or pty.
func errorsIsClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "input/output error")
}
