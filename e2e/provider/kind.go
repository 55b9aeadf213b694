package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/apis/config/defaults"
	"sigs.k8s.io/kind/pkg/cluster"
	kindcmd "sigs.k8s.io/kind/pkg/cmd"
)

// kindProvider makes a new kind cluster for the run, named
// execconform-RANDOM, and always deletes it. The tests' pod runs in the
// namespace execconform-e2e. Shells are looked for in this machine's /proc
// (a kind node is a container on this machine) when that is possible (see
// defaultKindProcs), else in the pod's.
type kindProvider struct {
	clusterName string
	nodeImage   string
	config      string
	shim        string

	kind    *cluster.Provider
	created bool   // Create was called: the cluster (or part of it) may exist
	shimDir string // the directory put first on PATH for the docker shim
	cfg     *rest.Config
}

func (p *kindProvider) name() string { return "kind" }

func (p *kindProvider) addFlags(fs *flagSet) {
	fs.StringVar(&p.clusterName, "name", "", "the cluster's name (default execconform-RANDOM)")
	fs.StringVar(&p.nodeImage, "node-image", defaults.Image, "the kind node image")
	fs.StringVar(&p.config, "config", "", "a kind cluster config file (default: one control-plane node)")
	fs.StringVar(&p.shim, "docker-shim", "", "on a host without CAP_SYS_RESOURCE: run kind's docker through this shim (scripts/kind/docker-shim; needs a node image from scripts/kind/node-image.sh)")
}

func (p *kindProvider) setup(ctx context.Context, o options) (*targetEnv, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if p.clusterName == "" {
		p.clusterName = "execconform-" + newRunID()
	}
	procs := o.procs
	if procs == "" {
		procs = defaultKindProcs(os.Geteuid(), os.Getenv("DOCKER_HOST"))
	}
	e, err := newTargetEnv("kind", procs)
	if err != nil {
		return nil, err
	}
	e.Namespace, e.ownNS = "execconform-e2e", true
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := p.checkPrivilege(); err != nil {
		return e, err
	}
	var createOpts []cluster.CreateOption
	createOpts = append(createOpts,
		cluster.CreateWithNodeImage(p.nodeImage),
		cluster.CreateWithKubeconfigPath(e.Kubeconfig),
		// Keep the nodes of a failed create: their logs are exported, then
		// teardown deletes them.
		cluster.CreateWithRetain(true),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)
	if p.config != "" {
		createOpts = append(createOpts, cluster.CreateWithConfigFile(p.config))
	}
	p.kind = cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(kindcmd.NewLogger()))
	logf("kind: creating cluster %s from %s", p.clusterName, p.nodeImage)
	// kind's Create takes no context: on an interrupt it runs on (its docker
	// children get a terminal's SIGINT too), and teardown deletes what it made.
	p.created = true
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- p.kind.Create(p.clusterName, createOpts...) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		logf("kind: interrupted; waiting for kind's create to return, then deleting the cluster")
		<-done
		return e, ctx.Err()
	}
	if err != nil {
		return e, fmt.Errorf("kind create cluster %s: %w", p.clusterName, err)
	}
	logf("kind: TIME cluster create: %.1f s", time.Since(t0).Seconds())
	p.cfg, err = clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		return e, fmt.Errorf("kind's kubeconfig: %w", err)
	}
	return e, setupTarget(ctx, p.cfg, e, podOptions{image: o.image, pullPolicy: o.pullPolicy, tolerateAll: true, timeout: o.timeout})
}

// teardown deletes the cluster (nothing in it needs deleting first).
func (p *kindProvider) teardown(_ context.Context, e *targetEnv) error {
	var err error
	if p.created {
		logf("kind: deleting cluster %s", p.clusterName)
		err = p.kind.Delete(p.clusterName, kubeconfigOf(e))
	}
	if e != nil {
		_ = os.RemoveAll(e.dir)
	}
	if p.shimDir != "" {
		_ = os.RemoveAll(p.shimDir)
	}
	return err
}

// defaultKindProcs is where a kind cluster's shells are looked for: this
// machine's process table when the nodes run here and we may read their
// processes' environment (root: the nodes' processes are root's), else
// /proc inside the pod. A user in the docker group cannot read root's
// /proc/PID/environ, so the tags would be invisible and every shell would
// look gone.
func defaultKindProcs(euid int, dockerHost string) string {
	if euid != 0 || (dockerHost != "" && !strings.HasPrefix(dockerHost, "unix://")) {
		return "pod"
	}
	return "host"
}

func kubeconfigOf(e *targetEnv) string {
	if e == nil {
		return ""
	}
	return e.Kubeconfig
}

func (p *kindProvider) exportLogs(dir string) error {
	if !p.created {
		return nil
	}
	return p.kind.CollectLogs(p.clusterName, dir)
}

func (p *kindProvider) keepHint() string {
	return fmt.Sprintf("remove with: kind delete cluster --name %s", p.clusterName)
}

// capSysResource is CAP_SYS_RESOURCE's bit (linux/capability.h).
const capSysResource = 24

// checkPrivilege explains, before kind fails obscurely, a host where
// `docker run --privileged` (which kind always uses for nodes) cannot work:
// root without CAP_SYS_RESOURCE in its bounding set, as in some sandboxes
// and CI containers. runc then fails with "unable to apply caps: operation
// not permitted". With --docker-shim, kind's docker calls go through a shim
// that asks for every capability but that one instead, which works only
// with a node image whose entrypoint makes /sys writable
// (scripts/kind/node-image.sh).
func (p *kindProvider) checkPrivilege() error {
	has, err := hasBoundingCap(capSysResource)
	if err != nil || has {
		return nil // not Linux, or all is well: kind will say what it needs
	}
	const why = "this host lacks CAP_SYS_RESOURCE (see CapBnd in /proc/self/status), so kind's `docker run --privileged` fails with \"unable to apply caps: operation not permitted\""
	if p.shim == "" {
		return errors.New(why + "; run with --docker-shim scripts/kind/docker-shim and a node image from scripts/kind/node-image.sh (make e2e-kind KIND_OFFLINE=1), or on a host whose root has every capability")
	}
	out, err := exec.Command("docker", "image", "inspect", "-f", `{{index .Config.Labels "execconform.stamp"}}`, p.nodeImage).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == "<no value>" {
		return fmt.Errorf("%s; --docker-shim needs a node image built by scripts/kind/node-image.sh (it makes /sys writable without --privileged), and %s is not one", why, p.nodeImage)
	}
	shim, err := filepath.Abs(p.shim)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "execconform-docker-shim-")
	if err != nil {
		return err
	}
	// The directory stays until teardown (kind calls docker until the
	// cluster is deleted); it holds one symlink.
	p.shimDir = dir
	if err := os.Symlink(shim, filepath.Join(dir, "docker")); err != nil {
		return err
	}
	logf("kind: NOTE: %s; kind's docker runs through %s instead: every capability but CAP_SYS_RESOURCE, seccomp and /sys unconfined, all devices (scripts/kind/NOTES.md)", why, shim)
	return os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// hasBoundingCap reports whether capability bit is in this process's
// bounding set.
func hasBoundingCap(bit uint) (bool, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapBnd:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, err
			}
			return n&(1<<bit) != 0, nil
		}
	}
	return false, errors.New("no CapBnd in /proc/self/status")
}
