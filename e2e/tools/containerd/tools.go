//go:build tools

// Package tools pins containerd for the host-process end-to-end cluster.
// Debian 12's containerd 1.6.20 has a shim deadlock under concurrent exec
// churn (a shim's reaper and its exec Start wait on each other; the shim
// then answers no call), which the end-to-end matrix hit within a minute;
// 1.7 does not. Build with
//
//	CGO_ENABLED=0 go build -tags no_btrfs,no_devmapper,no_zfs -o DIR \
//	    github.com/containerd/containerd/cmd/containerd \
//	    github.com/containerd/containerd/cmd/containerd-shim-runc-v2
package tools

import (
	_ "github.com/containerd/containerd/cmd/containerd/builtins"
	_ "github.com/containerd/containerd/cmd/containerd/command"
	_ "github.com/containerd/containerd/cmd/ctr/app"
	_ "github.com/containerd/containerd/runtime/v2/runc/manager"
	_ "github.com/containerd/containerd/runtime/v2/runc/task/plugin"
)
