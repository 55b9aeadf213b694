// Package realapiserver runs the harness's cases against a real Kubernetes
// API server instead of the embedded fake one. Every case execs into one
// pod of a running cluster. Between the target and the API server sits a
// recording relay (TLS in, TLS out) that records the backend connection's
// frames and close handshake exactly as the fake server records its own,
// so every check of the suite applies unchanged. A session's processes are
// found by a tag in their environment, in the host's process table (the
// pod's processes are the host's), and a second witness counts them with
// ps aux run inside the pod through a fresh exec, as a person would check.
//
//	target ──> backend link ──> relay (records) ──TLS──> kube-apiserver ──> kubelet ──> containerd ──> sh in the pod
package realapiserver

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
)

// Cluster names the real API server and the pod to exec into.
type Cluster struct {
	APIServer *url.URL // https://host:port
	CAFile    string   // PEM of the CA that signed the API server's certificate ("": the system's roots)
	Token     string   // a bearer token allowed to exec into the pod
	Namespace string
	Pod       string
	Container string // the pod's container that runs the shells (its image needs sh, env and ps)
	Procs     string // ProcsHost ("" too) or ProcsPod
}

// The environment variables FromEnv reads; scripts/e2e-local.sh sets them.
const (
	EnvAPIServer = "E2E_APISERVER"
	EnvCAFile    = "E2E_CA_FILE"
	EnvToken     = "E2E_TOKEN"
	EnvNamespace = "E2E_NAMESPACE"
	EnvPod       = "E2E_POD"
	EnvContainer = "E2E_CONTAINER"
	// EnvProcs says where the session's processes are looked for: "host"
	// (default: this machine's /proc, where the pod's processes are, as with
	// e2e-local and kind) or "pod" (/proc inside the pod, read through an
	// exec: any cluster).
	EnvProcs = "E2E_PROCS"
)

// Where the session's processes are looked for (Cluster.Procs).
const (
	ProcsHost = "host"
	ProcsPod  = "pod"
)

// FromEnv reads the cluster from the E2E_* environment variables. It
// fails, naming what is missing, when any is unset.
func FromEnv() (Cluster, error) {
	get := func(k string) string { return os.Getenv(k) }
	var missing []string
	for _, k := range []string{EnvAPIServer, EnvToken, EnvNamespace, EnvPod, EnvContainer} {
		if get(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return Cluster{}, fmt.Errorf("realapiserver: no cluster: %s unset (run under scripts/e2e-local.sh run -- ...)", strings.Join(missing, ", "))
	}
	u, err := url.Parse(get(EnvAPIServer))
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return Cluster{}, fmt.Errorf("realapiserver: %s=%q is not an https URL", EnvAPIServer, get(EnvAPIServer))
	}
	procs := get(EnvProcs)
	switch procs {
	case "", ProcsHost, ProcsPod:
	default:
		return Cluster{}, fmt.Errorf("realapiserver: %s=%q: want %q or %q", EnvProcs, procs, ProcsHost, ProcsPod)
	}
	return Cluster{APIServer: u, CAFile: get(EnvCAFile), Token: get(EnvToken),
		Namespace: get(EnvNamespace), Pod: get(EnvPod), Container: get(EnvContainer), Procs: procs}, nil
}

// TLSConfig is a client configuration that trusts the API server: its CA
// file, or the system's roots when CAFile is "".
func (c Cluster) TLSConfig() (*tls.Config, error) {
	if c.CAFile == "" {
		return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, nil
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("realapiserver: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("realapiserver: CA file holds no certificate")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, nil
}

// ExecURL is the WebSocket URL of an exec into the cluster's pod, straight
// to the API server (no proxy).
func (c Cluster) ExecURL(command []string, tty, stdin bool) string {
	u := *c.APIServer
	u.Scheme = "wss"
	req := execproto.ExecRequest{Namespace: c.Namespace, Pod: c.Pod, Container: c.Container, Command: command,
		Stdin: stdin, Stdout: true, Stderr: true, TTY: tty}
	u.Path = req.Path()
	u.RawQuery = req.Query().Encode()
	return u.String()
}

// StandInAllow is the command allowlist of a fake API server playing a
// real cluster in tests: the fake's own, plus what a Server execs into the
// pod (env for the marked commands, ps for the witness, kill for the pod's
// process table).
func StandInAllow(argv []string) error {
	switch filepath.Base(argv[0]) {
	case "env", "ps", "kill":
		return nil
	}
	return fakeapiserver.DefaultAllow(argv)
}
