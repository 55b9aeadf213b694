package main

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/realapiserver"
)

// TestRunAgainstACluster: with --cluster, run execs into the pod that the
// E2E_* environment names (as e2e-provider sets it), through the recording
// relay, and finds the session's shells there, in the host's process table
// or in the pod's /proc. A fake API server that lets env, ps and kill run
// plays the cluster. The no-exit variant must be caught both ways: the
// shells are really looked for where the flag says.
func TestRunAgainstACluster(t *testing.T) {
	fake, err := fakeapiserver.New(fakeapiserver.Config{Allow: realapiserver.StandInAllow})
	require.NoError(t, err)
	require.NoError(t, fake.Start())
	t.Cleanup(func() { _ = fake.Close() })
	t.Setenv(realapiserver.EnvAPIServer, fake.URL().String())
	t.Setenv(realapiserver.EnvCAFile, fake.CAFile())
	t.Setenv(realapiserver.EnvToken, fake.Token())
	t.Setenv(realapiserver.EnvNamespace, "default")
	t.Setenv(realapiserver.EnvPod, "stand-in")
	t.Setenv(realapiserver.EnvContainer, "shell")
	for _, procs := range []string{realapiserver.ProcsHost, realapiserver.ProcsPod} {
		t.Run(procs, func(t *testing.T) {
			t.Setenv(realapiserver.EnvProcs, procs)
			// The default grace: under make test's load (the race detector, every
			// package at once) one read of the pod's table through an exec took
			// more than 1 s.
			args := []string{"run", "--cluster", "--out", "", "--grace", "3s", "--run", `^v5\.channel\.k8s\.io/tty/disconnect/client-tcp-fin$`}
			var out, errb bytes.Buffer
			require.NoError(t, run(context.Background(), args, &out, &errb), "%s%s", out.String(), errb.String())
			assert.Contains(t, out.String(), "pod default/stand-in (processes: "+procs+")")
			assert.Contains(t, out.String(), "1 PASS")

			out.Reset()
			err := run(context.Background(), append(args, "--variant", "no-exit"), &out, &errb)
			var ee exitError
			require.True(t, errors.As(err, &ee), "err=%v\n%s", err, out.String())
			assert.Equal(t, exitError(1), ee)
			assert.Contains(t, out.String(), "still alive")
			assert.Contains(t, out.String(), "sh -i -s execconform:e2e-", "the marked shell is named")
		})
	}
}

func TestRunClusterNeedsTheEnvironment(t *testing.T) {
	t.Setenv(realapiserver.EnvAPIServer, "")
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"run", "--cluster", "--out", ""}, &out, &errb)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "E2E_APISERVER")
}
