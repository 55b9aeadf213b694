package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"

	"github.com/execconform/execconform/realapiserver"
)

type watchEvent = watch.Event

// container is the name of the pod's one container.
const container = "shell"

// targetEnv is what CMD gets: the pod to exec into and how to reach it.
type targetEnv struct {
	Provider   string
	APIServer  string
	CAFile     string // "" when the kubeconfig names no CA: the system's roots
	Token      string
	Namespace  string
	Pod        string
	Procs      string
	Kubeconfig string

	dir         string // temporary files (CA, kubeconfig); removed at teardown
	runID       string
	ownNS       bool // we created the namespace (and delete it)
	madeObjects bool // the ServiceAccount, Role, RoleBinding and pod may exist
}

func (e *targetEnv) vars() []string {
	return []string{
		realapiserver.EnvAPIServer + "=" + e.APIServer,
		realapiserver.EnvCAFile + "=" + e.CAFile,
		realapiserver.EnvToken + "=" + e.Token,
		realapiserver.EnvNamespace + "=" + e.Namespace,
		realapiserver.EnvPod + "=" + e.Pod,
		realapiserver.EnvContainer + "=" + container,
		realapiserver.EnvProcs + "=" + e.Procs,
		"E2E_PROVIDER=" + e.Provider,
		"E2E_KUBECONFIG=" + e.Kubeconfig,
	}
}

// newRunID is the random part of every name a run gives: two runs (two
// engineers, two CI jobs) never share an object.
func newRunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newTargetEnv(provider, procs string) (*targetEnv, error) {
	dir, err := os.MkdirTemp("", "execconform-"+provider+"-")
	if err != nil {
		return nil, err
	}
	id := newRunID()
	return &targetEnv{Provider: provider, Procs: procs, dir: dir, runID: id, Pod: "execconform-target-" + id}, nil
}

func (e *targetEnv) sa() string { return "execconform-exec-" + e.runID }

func (e *targetEnv) labels() map[string]string {
	return map[string]string{"app.kubernetes.io/managed-by": "execconform", "execconform.io/run": e.runID}
}

// podOptions are the pod's image and scheduling.
type podOptions struct {
	image, pullPolicy string
	tolerateAll       bool // a one-node kind cluster: also run on a not-yet-ready control-plane node
	timeout           time.Duration
}

// setupTarget makes, in e.Namespace, a ServiceAccount allowed to exec into
// one pod and nothing else (a Role on that pod's name), a token for it, and
// the pod, and waits until the pod is Ready. The suite runs with that token,
// not the kubeconfig's credentials: the least a console's user would have.
func setupTarget(ctx context.Context, cfg *rest.Config, e *targetEnv, po podOptions) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	e.APIServer = strings.TrimSuffix(cfg.Host, "/")
	if !strings.HasPrefix(e.APIServer, "https://") {
		return fmt.Errorf("the API server %q is not https: the suite execs over TLS", cfg.Host)
	}
	switch {
	case cfg.Insecure:
		return errors.New("the kubeconfig skips TLS verification (insecure-skip-tls-verify): the suite needs the API server's CA")
	case len(cfg.CAData) > 0:
		e.CAFile = filepath.Join(e.dir, "ca.crt")
		if err := os.WriteFile(e.CAFile, cfg.CAData, 0o600); err != nil {
			return err
		}
	case cfg.CAFile != "":
		e.CAFile = cfg.CAFile
	}
	ctx, cancel := context.WithTimeout(ctx, po.timeout)
	defer cancel()
	if e.ownNS {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.Namespace, Labels: e.labels()}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create namespace %s: %w", e.Namespace, err)
		}
	} else if _, err := cs.CoreV1().Namespaces().Get(ctx, e.Namespace, metav1.GetOptions{}); err != nil && !apierrors.IsForbidden(err) {
		return fmt.Errorf("namespace %s: %w", e.Namespace, err)
	}
	e.madeObjects = true
	meta := metav1.ObjectMeta{Name: e.sa(), Namespace: e.Namespace, Labels: e.labels()}
	if _, err := cs.CoreV1().ServiceAccounts(e.Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta, AutomountServiceAccountToken: ptr.To(false)}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create ServiceAccount %s/%s: %w", e.Namespace, meta.Name, err)
	}
	role := &rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, ResourceNames: []string{e.Pod}, Verbs: []string{"get"}},
		// A WebSocket exec is a GET; since Kubernetes 1.31 it also needs create.
		{APIGroups: []string{""}, Resources: []string{"pods/exec"}, ResourceNames: []string{e.Pod}, Verbs: []string{"get", "create"}},
	}}
	if _, err := cs.RbacV1().Roles(e.Namespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Role %s/%s: %w", e.Namespace, meta.Name, err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: meta,
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: meta.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: meta.Name, Namespace: e.Namespace}}}
	if _, err := cs.RbacV1().RoleBindings(e.Namespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create RoleBinding %s/%s: %w", e.Namespace, meta.Name, err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(e.Namespace).CreateToken(ctx, meta.Name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](4 * 3600)}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for ServiceAccount %s/%s: %w", e.Namespace, meta.Name, err)
	}
	e.Token = tr.Status.Token
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: e.Pod, Namespace: e.Namespace, Labels: e.labels()},
		Spec: corev1.PodSpec{
			ServiceAccountName:            meta.Name,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			RestartPolicy:                 corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:            container,
				Image:           po.image,
				ImagePullPolicy: corev1.PullPolicy(po.pullPolicy),
				Command:         []string{"sleep", "2147483647"},
				// What a restricted namespace (Pod Security "restricted",
				// OpenShift's restricted-v2) asks for; the image's user stays.
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}},
		},
	}
	if po.tolerateAll {
		pod.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	}
	if _, err := cs.CoreV1().Pods(e.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create pod %s/%s: %w", e.Namespace, e.Pod, err)
	}
	return waitReady(ctx, cs, e.Namespace, e.Pod)
}

// waitReady watches the pod until it is Ready, and fails early, naming the
// reason, when it cannot become Ready (an image that cannot be pulled, a
// container that exited).
func waitReady(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "pods", ns, fields.OneTermEqualSelector("metadata.name", name))
	var last *corev1.Pod
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(ev watchEvent) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		last = p
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			return false, fmt.Errorf("pod %s/%s ended: %s", ns, name, podProblem(p))
		}
		for _, cst := range p.Status.ContainerStatuses {
			if w := cst.State.Waiting; w != nil && (strings.Contains(w.Reason, "ImagePull") || w.Reason == "ErrImageNeverPull" || w.Reason == "InvalidImageName" || w.Reason == "CreateContainerConfigError") {
				return false, fmt.Errorf("pod %s/%s cannot start: %s: %s", ns, name, w.Reason, w.Message)
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("pod %s/%s not Ready: %w (last seen: %s)", ns, name, ctx.Err(), podProblem(last))
	}
	return err
}

// podProblem says in one line where a pod stands.
func podProblem(p *corev1.Pod) string {
	if p == nil {
		return "never seen"
	}
	parts := []string{"phase " + string(p.Status.Phase)}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			parts = append(parts, fmt.Sprintf("%s: %s", c.Type, c.Message))
		}
	}
	for _, cst := range p.Status.ContainerStatuses {
		if w := cst.State.Waiting; w != nil {
			parts = append(parts, fmt.Sprintf("container %s waiting: %s %s", cst.Name, w.Reason, w.Message))
		}
		if t := cst.State.Terminated; t != nil {
			parts = append(parts, fmt.Sprintf("container %s terminated: %s (exit %d) %s", cst.Name, t.Reason, t.ExitCode, t.Message))
		}
	}
	return strings.Join(parts, "; ")
}

// teardownTarget deletes what setupTarget made (all of it, or the
// namespace when we made it), waits until the pod is gone, and removes the
// temporary files.
func teardownTarget(ctx context.Context, cfg *rest.Config, e *targetEnv) error {
	if e == nil {
		return nil
	}
	defer os.RemoveAll(e.dir)
	if !e.madeObjects || cfg == nil {
		return nil
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var errs []error
	// The pod's own grace period (1 s), not 0: a forced delete removes the
	// object at once, before the kubelet has stopped the containers.
	now := metav1.DeleteOptions{}
	ignore := func(what string, err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", what, err))
		}
	}
	ignore("pod "+e.Pod, cs.CoreV1().Pods(e.Namespace).Delete(ctx, e.Pod, now))
	ignore("RoleBinding "+e.sa(), cs.RbacV1().RoleBindings(e.Namespace).Delete(ctx, e.sa(), metav1.DeleteOptions{}))
	ignore("Role "+e.sa(), cs.RbacV1().Roles(e.Namespace).Delete(ctx, e.sa(), metav1.DeleteOptions{}))
	ignore("ServiceAccount "+e.sa(), cs.CoreV1().ServiceAccounts(e.Namespace).Delete(ctx, e.sa(), metav1.DeleteOptions{}))
	if e.ownNS {
		ignore("namespace "+e.Namespace, cs.CoreV1().Namespaces().Delete(ctx, e.Namespace, metav1.DeleteOptions{}))
	}
	if len(errs) == 0 {
		errs = append(errs, waitDeleted(ctx, cs, e.Namespace, e.Pod))
	}
	return errors.Join(errs...)
}

// waitDeleted watches until the pod no longer exists: its containers, and
// so any shell in them, are gone.
func waitDeleted(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "pods", ns, fields.OneTermEqualSelector("metadata.name", name))
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, func(store cache.Store) (bool, error) {
		return len(store.List()) == 0, nil
	}, func(ev watchEvent) (bool, error) {
		return ev.Type == "DELETED", nil
	})
	if err != nil {
		return fmt.Errorf("pod %s/%s still there: %w", ns, name, err)
	}
	return nil
}
