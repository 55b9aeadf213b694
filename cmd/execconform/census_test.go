package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/census"
	"github.com/execconform/execconform/fakeapiserver"
)

func TestCensusHelp(t *testing.T) {
	var out, errb bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"census", "--help"}, &out, &errb))
	golden(t, "census-help.golden", out.String())
	assert.Empty(t, errb.String())
	var o censusOptions
	fs := o.flags(&errb)
	grouped := map[string]bool{}
	for _, g := range censusFlagGroups {
		for _, name := range g.flags {
			grouped[name] = true
		}
	}
	fs.VisitAll(func(f *flag.Flag) { assert.True(t, grouped[f.Name], "--%s is in no group of the usage", f.Name) })
}

// TestCensusRefuses: --reap signals processes in someone's pods, so it
// asks for --yes; the other mistakes exit 2 before any cluster is asked.
func TestCensusRefuses(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--reap"}, "add --yes"},
		{[]string{"--yes"}, "--yes goes with --reap"},
		{[]string{"--json", "--markdown"}, "not both"},
		{[]string{"--all-namespaces", "--namespace", "x"}, "--all-namespaces goes with"},
		{[]string{"--idle", "0s"}, "must be positive"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), append([]string{"census", "--kubeconfig", "/nonexistent"}, c.args...), &out, &errb)
		assert.Equal(t, exitError(2), err, "%v", c.args)
		assert.Contains(t, errb.String(), c.want, "%v", c.args)
	}
}

// TestCensusCommand runs the command against the fake API server from a
// kubeconfig: exit 0 (nothing on this machine has PPID 0 and an idle
// tty shell), a JSON report on stdout and in --out, and the kubeconfig's
// token nowhere in what it prints or writes.
func TestCensusCommand(t *testing.T) {
	fake, err := fakeapiserver.New(fakeapiserver.Config{})
	require.NoError(t, err)
	require.NoError(t, fake.Start())
	t.Cleanup(func() { _ = fake.Close() })
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(kc, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: fake, context: {cluster: fake, user: u, namespace: default}}]
current-context: fake
`, fake.URL().String(), fake.CAFile(), fake.Token()), 0o600))
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"census", "--kubeconfig", kc, "--pod", "census", "--container", fakeapiserver.ContainerName(0),
		"--json", "--out", out, "--max", "1000"}, &stdout, &stderr)
	require.NoError(t, err, stderr.String())
	var rep census.Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep))
	assert.Equal(t, census.SchemaID, rep.Schema)
	require.Len(t, rep.Pods, 1)
	assert.Empty(t, rep.Pods[0].Error)
	assert.Equal(t, "default", rep.Scope.Namespace, "the context's namespace")
	assert.NotZero(t, rep.Pods[0].Processes, "this machine's table, read by the fake's sh")
	for _, f := range []string{"census.json", "census.md"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		require.NoError(t, err)
		assert.NotContains(t, string(b), fake.Token())
	}
	assert.NotContains(t, stdout.String()+stderr.String(), fake.Token())

	// The table.
	stdout.Reset()
	require.NoError(t, run(context.Background(), []string{"census", "--kubeconfig", kc, "--pod", "census", "--container", fakeapiserver.ContainerName(0), "--max", "1000"}, &stdout, &stderr))
	assert.Contains(t, stdout.String(), "LIKELY ORPHANS")
}
