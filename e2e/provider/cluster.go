package main

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// clusterProvider is any cluster a kubeconfig reaches (a team's staging
// cluster, OpenShift, ...). It touches only what it makes in --namespace: a
// ServiceAccount, a Role and a RoleBinding for it, and the pod; with
// --create-namespace, the namespace too. Shells are looked for with /proc
// inside the pod (the node's process table is not ours to read).
type clusterProvider struct {
	kubeconfig, context, namespace string
	createNS                       bool

	cfg *rest.Config
}

func (p *clusterProvider) name() string { return "cluster" }

func (p *clusterProvider) addFlags(fs *flagSet) {
	fs.StringVar(&p.kubeconfig, "kubeconfig", "", "the cluster's kubeconfig (required)")
	fs.StringVar(&p.context, "context", "", "the kubeconfig's context (default: its current one)")
	fs.StringVar(&p.namespace, "namespace", "", "the namespace to run in (required; must exist unless --create-namespace)")
	fs.BoolVar(&p.createNS, "create-namespace", false, "create the namespace, and delete it at the end")
}

func (p *clusterProvider) setup(ctx context.Context, o options) (*targetEnv, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if p.kubeconfig == "" || p.namespace == "" {
		return nil, errors.New("--kubeconfig and --namespace are required")
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: p.kubeconfig}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: p.context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", p.kubeconfig, err)
	}
	p.cfg = cfg
	procs := o.procs
	if procs == "" {
		procs = "pod"
	}
	e, err := newTargetEnv("cluster", procs)
	if err != nil {
		return nil, err
	}
	e.Namespace, e.ownNS, e.Kubeconfig = p.namespace, p.createNS, p.kubeconfig
	return e, setupTarget(ctx, cfg, e, podOptions{image: o.image, pullPolicy: o.pullPolicy, timeout: o.timeout})
}

func (p *clusterProvider) teardown(ctx context.Context, e *targetEnv) error {
	return teardownTarget(ctx, p.cfg, e)
}

// exportLogs: a cluster that is not ours keeps its logs to itself.
func (p *clusterProvider) exportLogs(string) error { return nil }

func (p *clusterProvider) keepHint() string {
	return fmt.Sprintf("remove with: kubectl --kubeconfig %s -n %s delete pod,serviceaccount,role,rolebinding -l app.kubernetes.io/managed-by=execconform", p.kubeconfig, p.namespace)
}
