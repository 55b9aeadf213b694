package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

// options are the flags every provider takes.
type options struct {
	image      string
	pullPolicy string
	procs      string
	logs       string
	timeout    time.Duration
	keep       bool
}

type flagSet = flag.FlagSet

func newFlags(name string, o *options, p provider) *flagSet {
	fs := flag.NewFlagSet("e2e-provider "+name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&o.image, "image", "busybox:1.36", "the pod's image: needs sh, env, ps and sleep")
	fs.StringVar(&o.pullPolicy, "pull-policy", "IfNotPresent", "the pod's imagePullPolicy (Always, IfNotPresent, Never)")
	fs.StringVar(&o.procs, "procs", "", "where shells are looked for: host (this machine's /proc) or pod (/proc in the pod); default: the provider's")
	fs.StringVar(&o.logs, "logs", "", "directory for the cluster's logs when setup or the command failed")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "bound on each wait of setup and teardown")
	fs.BoolVar(&o.keep, "keep", false, "leave everything running after the command")
	p.addFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: e2e-provider %s [flags] -- CMD ARGS...\n", name)
		fs.PrintDefaults()
	}
	return fs
}

func (o options) check() error {
	switch o.pullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		return fmt.Errorf("--pull-policy %q: want Always, IfNotPresent or Never", o.pullPolicy)
	}
	switch o.procs {
	case "", "host", "pod":
	default:
		return fmt.Errorf("--procs %q: want host or pod", o.procs)
	}
	if o.image == "" {
		return fmt.Errorf("--image is empty")
	}
	return nil
}
