//go:build tools

// Package tools pins the Kubernetes components that the host-process
// end-to-end cluster builds (see e2e/cluster). Build them with
//
//	go build -o DIR k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubelet
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
)
