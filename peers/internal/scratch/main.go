package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/peers"
	"github.com/execconform/execconform/scenarios"
	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

func main() {
	name := flag.String("peer", "kubectl-proxy", "")
	run := flag.String("run", "", "")
	out := flag.String("out", "/tmp/peerscratch/out.json", "")
	flag.Parse()
	klog.SetLogger(logr.Discard())
	p, _ := peers.ByName(*name)
	var f scenarios.Filter
	if *run != "" {
		f.Run = regexp.MustCompile(*run)
	}
	cases := f.Apply(scenarios.Cases(scenarios.All()))
	rep := harness.Run(context.Background(), p.Target, cases, harness.Options{})
	harness.WriteMatrix(os.Stdout, rep)
	for _, l := range harness.LooksLike(rep) {
		fmt.Println(l)
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	os.WriteFile(*out, b, 0o644)
}
