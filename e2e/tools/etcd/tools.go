//go:build tools

// Package tools pins etcd for the host-process end-to-end cluster. Build it with
//
//	go build -o DIR go.etcd.io/etcd/server/v3
package tools

import _ "go.etcd.io/etcd/server/v3/etcdmain"
