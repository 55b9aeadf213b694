package realapiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/proctable"
)

// tagEnv is the environment variable that marks a session's processes.
const tagEnv = proctable.SessionEnv

// MarkerPrefix starts the argument that marks a session's shell for ps in
// the pod: the shell gets "-s execconform:TAG" (positional parameters,
// harmless to an interactive shell), so ps aux shows the tag.
const MarkerPrefix = "execconform:"

// Server runs cases against a real cluster (see the package comment). It
// implements harness.Server.
type Server struct {
	cl          Cluster
	upstreamTLS *tls.Config
	cert        tls.Certificate
	pool        *x509.CertPool
	caFile      string
	dir         string
	procs       ProcSource
	ps          coalescer
}

// New prepares a Server for cl. Close removes its temporary files.
func New(cl Cluster) (*Server, error) {
	up, err := cl.TLSConfig()
	if err != nil {
		return nil, err
	}
	dir, err := proctable.MkdirTemp("relay")
	if err != nil {
		return nil, err
	}
	cert, pool, caFile, err := fakeapiserver.LoopbackCert(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	var procs ProcSource = proctable.Default
	if cl.Procs == ProcsPod {
		procs = &podProcs{cl: cl}
	}
	return &Server{cl: cl, upstreamTLS: up, cert: cert, pool: pool, caFile: caFile, dir: dir, procs: procs}, nil
}

// Procs is where the server looks for a session's processes (by its tag,
// proctable.Match{Session: tag}): the host's process table, or the pod's
// /proc when Cluster.Procs is ProcsPod.
func (s *Server) Procs() ProcSource { return s.procs }

// Cluster is the cluster the server execs into.
func (s *Server) Cluster() Cluster { return s.cl }

// procsName names where the session's processes are looked for.
func (s *Server) procsName() string {
	if s.cl.Procs == ProcsPod {
		return "the pod's /proc"
	}
	return "the host's process table"
}

// Close removes the server's temporary files.
func (s *Server) Close() error { return os.RemoveAll(s.dir) }

// MaxSessions is the bound on sessions in flight (harness.Options.
// MaxSessions) for a run against a real cluster: every session is an exec
// that the runtime starts in the one pod (runc exec, through the pod's
// shim). On a 2-core kind node, six 20-session cases at once (120 execs)
// beside two stdout floods stalled every shell in the pod for 15 s.
const MaxSessions = 24

// tagSeq numbers the session tags of every Server in this process.
var tagSeq atomic.Int64

// Tag makes a new session tag, unique in this process's life (across
// Servers too: two runs in one process must not share a tag).
func (s *Server) Tag() string {
	return fmt.Sprintf("e2e-%d-%d", os.Getpid(), tagSeq.Add(1))
}

// Mark returns command marked with tag: run under env with the tag (so
// every process of the session carries it) and, for a shell, with the
// marker argument that ps aux in the pod shows.
func Mark(tag string, command []string) []string {
	out := []string{"env", tagEnv + "=" + tag, proctable.ServerPIDEnv + "=" + strconv.Itoa(os.Getpid())}
	out = append(out, command...)
	if len(command) > 0 && IsShell(command) {
		out = append(out, "-s", MarkerPrefix+tag)
	}
	return out
}

// IsShell reports whether command is a shell reading commands from its
// input (sh or ash, with no -c), which the marker argument suits.
func IsShell(command []string) bool {
	switch command[0] {
	case "sh", "/bin/sh", "ash", "/bin/ash":
		return !slices.Contains(command[1:], "-c")
	}
	return false
}

// Open starts the case's relay.
func (s *Server) Open(_ context.Context, c harness.CaseInfo) (harness.CaseServer, error) {
	r, err := newRelay(s, c.Logger)
	if err != nil {
		return nil, err
	}
	return &caseServer{srv: s, relay: r, tags: map[int]string{}}, nil
}

type caseServer struct {
	srv   *Server
	relay *relay
	tags  map[int]string // guarded by relay.mu
}

func (c *caseServer) Backend() harness.Backend {
	return harness.Backend{
		URL:       &url.URL{Scheme: "https", Host: c.relay.ln.Addr().String()},
		Token:     c.srv.cl.Token,
		CAFile:    c.srv.caFile,
		TLSConfig: &tls.Config{RootCAs: c.srv.pool, MinVersion: tls.VersionTLS12},
	}
}

func (c *caseServer) tag(idx int) string {
	c.relay.mu.Lock()
	defer c.relay.mu.Unlock()
	t, ok := c.tags[idx]
	if !ok {
		t = c.srv.Tag()
		c.tags[idx] = t
	}
	return t
}

func (c *caseServer) Exec(idx int, command []string) harness.Exec {
	cl := c.srv.cl
	return harness.Exec{Namespace: cl.Namespace, Pod: cl.Pod, Container: cl.Container, Command: Mark(c.tag(idx), command)}
}

func (c *caseServer) Session(ctx context.Context, idx int) (harness.BackendSession, error) {
	return c.relay.wait(ctx, c.tag(idx))
}

// Close cuts the relay's connections and kills every process of the
// case's sessions that is still alive, so that no case leaves a shell in
// the pod whatever its outcome.
func (c *caseServer) Close() error {
	c.relay.close()
	c.relay.mu.Lock()
	tags := make([]string, 0, len(c.tags))
	for _, t := range c.tags {
		tags = append(tags, t)
	}
	c.relay.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, t := range tags {
		if _, err := c.srv.procs.Kill(ctx, proctable.Match{Session: t}, 9); err != nil {
			return fmt.Errorf("realapiserver: kill the processes of %s: %w", t, err)
		}
	}
	return nil
}

// session is one exec through the relay.
type session struct {
	relay    *relay
	tag      string
	started  time.Time
	rec      *fakeapiserver.Recorder
	protocol execproto.Protocol
	// transport: the upgrade was WebSocket or SPDY.
	transport execproto.Transport
	offered   []string // what the target offered the API server, redacted
	query     url.Values
	done      chan struct{}
}

func (s *session) StartedAt() time.Time              { return s.started }
func (s *session) Done() <-chan struct{}             { return s.done }
func (s *session) Recorder() *fakeapiserver.Recorder { return s.rec }
func (s *session) match() proctable.Match            { return proctable.Match{Session: s.tag} }
func (s *session) table() ProcSource                 { return s.relay.srv.procs }
func (s *session) Live(ctx context.Context) ([]proctable.Proc, error) {
	return s.table().Live(ctx, s.match())
}

func (s *session) WaitGone(ctx context.Context) (time.Duration, []proctable.Proc, error) {
	return s.table().WaitGone(ctx, s.match())
}

// Kill kills the session's processes from the host, as the OOM killer or
// a kubectl debug session would.
func (s *session) Kill(ctx context.Context) error {
	_, err := s.table().Kill(ctx, s.match(), 9)
	return err
}

// Witness counts the session's shells with ps aux run inside the pod and
// compares them with the shells the host's process table showed.
func (s *session) Witness(ctx context.Context, live []proctable.Proc) (harness.WitnessReport, error) {
	shells, err := s.relay.srv.PodShells(ctx, s.tag)
	if err != nil {
		return harness.WitnessReport{}, err
	}
	wr := harness.WitnessReport{Live: len(shells), Evidence: fmt.Sprintf("ps aux in pod %s/%s shows %d marked shell(s) %q", s.relay.srv.cl.Namespace, s.relay.srv.cl.Pod, len(shells), shells)}
	// Shells only die after the ending: ps must see between what the host
	// showed before it (live) and what the host shows after it.
	before := countShells(live, s.tag)
	after, err := s.Live(ctx)
	if err != nil {
		return wr, err
	}
	if n := len(shells); n > before || n < countShells(after, s.tag) {
		wr.Disagreement = fmt.Sprintf("%s shows %d of the session's shells (%d after ps ran), ps aux in the pod %d", s.relay.srv.procsName(), before, countShells(after, s.tag), n)
	}
	return wr, nil
}

func (s *session) Info(ctx context.Context) (fakeapiserver.SessionInfo, error) {
	live, err := s.Live(ctx)
	if err != nil {
		return fakeapiserver.SessionInfo{}, err
	}
	q := s.query
	info := fakeapiserver.SessionInfo{
		ID: s.tag, Namespace: s.relay.srv.cl.Namespace, Pod: s.relay.srv.cl.Pod, Container: q.Get("container"),
		Command: q["command"], Offered: s.offered, Transport: s.transport.String(), Protocol: s.protocol.String(), TTY: q.Get("tty") == "true",
		Stdin: q.Get("stdin") == "true", Stdout: q.Get("stdout") == "true", Stderr: q.Get("stderr") == "true",
		Started: s.started, Live: live, Record: s.rec.Snapshot(),
	}
	select {
	case <-s.done:
		info.Ended = true
		info.EndReason = "the relay's connections ended"
	default:
	}
	return info, nil
}

// countShells counts the processes of procs marked as tag's shell.
func countShells(procs []proctable.Proc, tag string) int {
	n := 0
	for _, p := range procs {
		if p.Live() && slices.Contains(p.Cmdline, MarkerPrefix+tag) {
			n++
		}
	}
	return n
}
