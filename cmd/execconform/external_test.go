package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/harness"
)

// selfProxy is a --proxy-cmd template that runs this test binary as
// `execconform proxy` (see TestMain), with extra flags.
func selfProxy(t *testing.T, extra string) string {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	return "EXECCONFORM_TEST_AS_CLI=1 exec " + self + " proxy --listen {{.Listen}} --backend {{.Backend}} --ca-file {{.CAFile}} --token {{.Token}} --ping-interval 1s --pong-timeout 2s " + extra
}

// runExternal runs `execconform run` with args and returns its stdout, its
// error and the results it wrote.
func runExternal(t *testing.T, args ...string) (string, error, []harness.Result) {
	t.Helper()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"run", "--out", dir}, args...), &out, &errb)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	var res struct{ Results []harness.Result }
	if b, rerr := os.ReadFile(filepath.Join(dir, "results.json")); rerr == nil {
		require.NoError(t, json.Unmarshal(b, &res))
	}
	return out.String(), err, res.Results
}

// TestProxyCmdReference: the reference proxy, run as an external command
// (one process per case), passes; the shutdown case stops it with SIGTERM.
func TestProxyCmdReference(t *testing.T) {
	out, err, results := runExternal(t, "--keepalive", "3s", "--proxy-cmd", selfProxy(t, ""),
		"--run", `^v5.channel.k8s.io/tty/(disconnect/client-tcp-fin|proxy/shutdown-20-sessions|busy/paste-in-flight|lb/client-leg/half-open)$`)
	require.NoError(t, err)
	assert.Contains(t, out, "target: command: ")
	require.Len(t, results, 4)
	for _, r := range results {
		assert.Equal(t, harness.Pass, r.Verdict, "%s: %v", r.Name, r.Failures)
	}
}

// TestProxyCmdFileLeak: a proxy that leaks a file per session fails the
// open-files check, which names what is open.
func TestProxyCmdFileLeak(t *testing.T) {
	_, err, results := runExternal(t, "--keepalive", "3s", "--proxy-cmd", selfProxy(t, "--variant fd-leak"),
		"--run", `^v5.channel.k8s.io/tty/disconnect/client-tcp-fin$`)
	require.Error(t, err)
	require.Len(t, results, 1)
	assert.Equal(t, harness.Fail, results[0].Verdict)
	assert.Contains(t, strings.Join(results[0].Failures, "\n"), "1 more than when it became ready")
	assert.Contains(t, strings.Join(results[0].Failures, "\n"), "/dev/null")
	assert.NotEmpty(t, results[0].TargetOutput, "the proxy's output belongs in the failed case")
}

// TestProxyCmdDidNotStart: a proxy that exits at once is an ERROR that
// shows its output.
func TestProxyCmdDidNotStart(t *testing.T) {
	_, err, results := runExternal(t, "--proxy-cmd", "echo 'myproxy: bad flag --upstream {{.Backend}}' >&2; exit 3",
		"--run", `^v5.channel.k8s.io/tty/disconnect/client-tcp-fin$`)
	require.Error(t, err)
	require.Len(t, results, 1)
	r := results[0]
	assert.Equal(t, harness.Error, r.Verdict)
	msg := strings.Join(r.Failures, "\n")
	assert.Contains(t, msg, "the proxy did not start")
	assert.Contains(t, msg, "exit status 3")
	assert.Contains(t, msg, "myproxy: bad flag --upstream https://127.0.0.1:")
}

// TestProxyCmdWrongPrefix: a proxy serving under a prefix the suite was not
// told of answers 404, and the failure says what to check.
func TestProxyCmdWrongPrefix(t *testing.T) {
	_, err, results := runExternal(t, "--keepalive", "3s", "--proxy-cmd", selfProxy(t, "--path-prefix /api/kubernetes"),
		"--run", `^v5.channel.k8s.io/tty/disconnect/client-tcp-fin$`)
	require.Error(t, err)
	require.Len(t, results, 1)
	assert.Contains(t, strings.Join(results[0].Failures, "\n"), "HTTP 404")
	assert.Contains(t, strings.Join(results[0].Failures, "\n"), "--path-prefix")

	_, err, results = runExternal(t, "--keepalive", "3s", "--path-prefix", "/api/kubernetes", "--proxy-cmd", selfProxy(t, "--path-prefix /api/kubernetes"),
		"--run", `^v5.channel.k8s.io/tty/disconnect/client-tcp-fin$`)
	require.NoError(t, err)
	require.Len(t, results, 1)
	assert.Equal(t, harness.Pass, results[0].Verdict)
}

// TestProxyCmdBadTemplate: an unknown placeholder is refused before any
// case runs.
func TestProxyCmdBadTemplate(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"run", "--out", "", "--proxy-cmd", "myproxy --upstream {{.Upstream}}"}, &out, &errb)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Upstream")
}
