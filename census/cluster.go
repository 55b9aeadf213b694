package census

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
)

// Execer runs a command in a container, without stdin or a tty, and
// returns its standard output; an error when it could not run or did not
// exit 0.
type Execer interface {
	Exec(ctx context.Context, t Target, cmd []string) ([]byte, error)
}

// Target is one container of a pod.
type Target struct {
	Namespace, Pod, Container, Node string
}

func (t Target) String() string { return t.Namespace + "/" + t.Pod + "[" + t.Container + "]" }

// Cluster is a cluster reached through client-go: it lists pods and execs
// into them (WebSocket, falling back to SPDY, as kubectl does).
type Cluster struct {
	config *rest.Config
	client kubernetes.Interface
	// Namespace is the kubeconfig context's namespace ("default" if it
	// names none).
	Namespace string
	secrets   []string
}

// Load reads a kubeconfig (path "": the usual rules, $KUBECONFIG then
// ~/.kube/config) and its context ("": the current one).
func Load(path, context string) (*Cluster, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules = &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("census: kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, fmt.Errorf("census: kubeconfig: %w", err)
	}
	c, err := NewCluster(cfg)
	if err != nil {
		return nil, err
	}
	c.Namespace = ns
	return c, nil
}

// NewCluster is a Cluster for a client configuration.
func NewCluster(cfg *rest.Config) (*Cluster, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = rest.NoWarnings{}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "execconform-census"
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("census: client: %w", err)
	}
	c := &Cluster{config: cfg, client: client, Namespace: "default"}
	for _, s := range []string{cfg.BearerToken, cfg.Password, cfg.Username + ":" + cfg.Password} {
		if len(s) >= 4 && s != ":" {
			c.secrets = append(c.secrets, s)
		}
	}
	if cfg.BearerTokenFile != "" {
		if b, err := os.ReadFile(cfg.BearerTokenFile); err == nil && len(bytes.TrimSpace(b)) >= 4 {
			c.secrets = append(c.secrets, string(bytes.TrimSpace(b)))
		}
	}
	return c, nil
}

// jwtLike and bearerLike catch tokens this Cluster was not told of (an
// exec plugin's, a token echoed back by a server).
var (
	jwtLike    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+`)
	bearerLike = regexp.MustCompile(`(?i)(bearer|token)([ =:"]+)[A-Za-z0-9._~+/-]{8,}=*`)
)

// Redact removes every credential of the kubeconfig from s: the census
// prints client-go's errors, which may quote a request or a server's
// answer, and no token may ever reach its output.
func (c *Cluster) Redact(s string) string {
	for _, sec := range c.secrets {
		s = strings.ReplaceAll(s, sec, "[REDACTED]")
	}
	s = execQuery.ReplaceAllString(s, "/exec")
	s = jwtLike.ReplaceAllString(s, "[REDACTED]")
	return bearerLike.ReplaceAllString(s, "$1$2[REDACTED]")
}

// execQuery is the query of an exec URL that an error quotes: the whole
// script, which says nothing to the reader.
var execQuery = regexp.MustCompile(`/exec\?[^ ]*`)

func (c *Cluster) redactErr(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(c.Redact(err.Error()))
}

// maxDump bounds what one exec may print: a host-PID pod's table is
// large, but not this large.
const maxDump = 16 << 20

// Exec runs cmd in the container through the API server.
func (c *Cluster) Exec(ctx context.Context, t Target, cmd []string) ([]byte, error) {
	req := c.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(t.Namespace).Name(t.Pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: t.Container, Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	u := req.URL()
	spdy, err := remotecommand.NewSPDYExecutor(c.config, http.MethodPost, u)
	if err != nil {
		return nil, c.redactErr(err)
	}
	ws, err := remotecommand.NewWebSocketExecutor(c.config, http.MethodGet, u.String())
	if err != nil {
		return nil, c.redactErr(err)
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return nil, c.redactErr(err)
	}
	var stdout, stderr limitedBuffer
	stdout.max, stderr.max, stderr.truncate = maxDump, 4096, true
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		msg := err.Error()
		if e := strings.TrimSpace(stderr.String()); e != "" {
			msg += ": " + e
		}
		return stdout.Bytes(), errors.New(c.Redact(msg))
	}
	return stdout.Bytes(), nil
}

// limitedBuffer is a bytes.Buffer that fails past max bytes, or with
// truncate keeps the first max and drops the rest.
type limitedBuffer struct {
	bytes.Buffer
	max      int
	truncate bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		if b.truncate {
			b.Buffer.Write(p[:max(0, b.max-b.Len())])
			return len(p), nil
		}
		return 0, fmt.Errorf("census: more than %d bytes of output", b.max)
	}
	return b.Buffer.Write(p)
}

// Targets are the running containers of the scope: the pods named (each
// read with a get, which an exec-only role allows), else the pods listed
// (in one namespace, or all) that match the selector and run; their
// running containers, or only the one named.
func (c *Cluster) Targets(ctx context.Context, sc Scope) ([]Target, error) {
	var pods []corev1.Pod
	if len(sc.Pods) > 0 {
		for _, name := range sc.Pods {
			p, err := c.client.CoreV1().Pods(sc.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("census: pod %s/%s: %w", sc.Namespace, name, c.redactErr(err))
			}
			pods = append(pods, *p)
		}
	} else {
		ns := sc.Namespace
		if sc.AllNamespaces {
			ns = metav1.NamespaceAll
		}
		list, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sc.Selector, FieldSelector: "status.phase=Running"})
		if err != nil {
			return nil, fmt.Errorf("census: list pods: %w", c.redactErr(err))
		}
		pods = list.Items
	}
	var ts []Target
	for _, p := range pods {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil || sc.Container != "" && cs.Name != sc.Container {
				continue
			}
			ts = append(ts, Target{Namespace: p.Namespace, Pod: p.Name, Container: cs.Name, Node: p.Spec.NodeName})
		}
	}
	slices.SortFunc(ts, func(a, b Target) int { return strings.Compare(a.String(), b.String()) })
	return ts, nil
}

// Options tune a census.
type Options struct {
	Scope Scope
	Rules Rules
	Max   int // the gate: more flagged trees than this fail the census's caller
	// Parallel bounds the execs in flight (default 4); Timeout bounds each
	// (default 20 s).
	Parallel int
	Timeout  time.Duration
	// Root says what an exec'd root is (default ExecRoot: PPID 0 in the
	// container's PID namespace); tests against the fake API server, whose
	// "container" is this machine, inject their own.
	Root   RootFunc
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	if o.Root == nil {
		o.Root = ExecRoot
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Census reads every target of the cluster's scope (listed within
// Timeout): one exec each, Parallel at a time, each bounded by Timeout. A container that refuses
// the exec, has no sh or /proc, or times out is reported, never fatal;
// only listing the pods can fail the census.
func (c *Cluster) Census(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, o.Timeout)
	ts, err := c.Targets(lctx, o.Scope)
	cancel()
	if err != nil {
		return nil, err
	}
	r := newReport(start, o)
	r.Pods = CensusTargets(ctx, c, ts, o)
	r.Duration = MillisOf(time.Since(start))
	r.Sum()
	return r, nil
}

func newReport(start time.Time, o Options) *Report {
	return &Report{Schema: SchemaID, Started: start.UTC(), Scope: o.Scope, Pods: []PodResult{},
		Rules: RulesJSON{IdleSeconds: o.Rules.Idle.Seconds(), IncludeBusy: o.Rules.IncludeBusy, IncludeNoTTY: o.Rules.IncludeNoTTY, Max: o.Max}}
}

// CensusTargets reads the targets through ex, Parallel at a time.
func CensusTargets(ctx context.Context, ex Execer, ts []Target, o Options) []PodResult {
	o.defaults()
	res := make([]PodResult, len(ts))
	var g errgroup.Group
	g.SetLimit(o.Parallel)
	for i, t := range ts {
		g.Go(func() error {
			res[i], _ = CensusOne(ctx, ex, t, o)
			o.Logger.Debug("census", "target", t.String(), "roots", len(res[i].Roots), "flagged", res[i].Flagged,
				"cost_ms", float64(res[i].Cost), "error", res[i].Error)
			return nil
		})
	}
	_ = g.Wait()
	return res
}

// CensusOne reads one container: one exec of DumpScript, bounded by
// o.Timeout, parsed and judged. Its snapshot is nil when the container
// could not be read (the result's Error says why).
func CensusOne(ctx context.Context, ex Execer, t Target, o Options) (PodResult, *Snapshot) {
	o.defaults()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	out, err := ex.Exec(ctx, t, []string{"sh", "-c", DumpScript})
	var snap *Snapshot
	if err == nil {
		snap, err = ParseDump(out)
	}
	var res PodResult
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (timeout %s)", err, o.Timeout)
		}
		res = PodResult{Error: err.Error(), Roots: []Root{}}
	} else {
		res = o.Rules.Result(snap, o.Root)
	}
	res.Namespace, res.Pod, res.Container, res.Node = t.Namespace, t.Pod, t.Container, t.Node
	res.Cost = MillisOf(time.Since(start))
	return res, snap
}
