package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/harness"
)

// testFront is the front credential of the proxies selfProxy runs; the
// client sends it with frontArgs.
const testFront = "external-test-front-token"

// frontArgs are the run flags that send testFront.
var frontArgs = []string{"--header", "Authorization: Bearer " + testFront}

// selfProxy is a --proxy-cmd template that runs this test binary as
// `execconform proxy` (see TestMain), with extra flags; it wants
// testFront (frontArgs), from a file.
func selfProxy(t *testing.T, extra string) string {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	front := filepath.Join(t.TempDir(), "front")
	require.NoError(t, os.WriteFile(front, []byte(testFront+"\n"), 0o600))
	return "EXECCONFORM_TEST_AS_CLI=1 exec " + self + " proxy --listen {{.Listen}} --backend {{.Backend}} --ca-file {{.CAFile}} --token-file {{.TokenFile}} --front-token-file " + front + " --ping-interval 1s --pong-timeout 2s " + extra
}

// runExternal runs `execconform run` with args and returns its stdout, its
// error and the results it wrote.
func runExternal(t *testing.T, args ...string) (string, error, []harness.Result) {
	t.Helper()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	err := run(context.Background(), append(append([]string{"run", "--out", dir}, frontArgs...), args...), &out, &errb)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	var res harness.ResultsFile
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
// told of answers every upgrade with 404: that is the suite unable to run
// the target, so every case is ERROR, the run exits 2 (not 1, a failing
// proxy) and says what to check once.
func TestProxyCmdWrongPrefix(t *testing.T) {
	out, err, results := runExternal(t, "--keepalive", "3s", "--proxy-cmd", selfProxy(t, "--path-prefix /api/kubernetes"),
		"--run", `^v5.channel.k8s.io/tty/disconnect/client-(tcp-fin|close/1000)$`)
	var ee exitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, harness.ExitSuiteError, int(ee))
	require.Len(t, results, 2)
	for _, r := range results {
		assert.Equal(t, harness.Error, r.Verdict, r.Name)
		assert.Contains(t, strings.Join(r.Failures, "\n"), "HTTP 404")
	}
	assert.Equal(t, 1, strings.Count(out, "ERROR: the suite could not run the target"), "the hint, once")
	assert.Contains(t, out, "--path-prefix")

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

// TestTargetURL: a proxy that is already running, pointed at the fixed
// backend address the run serves; the CA made once in --backend-cert-dir
// is reused by the run, so the proxy started before it trusts it.
func TestTargetURL(t *testing.T) {
	backendPort, frontPort := freeTCPPort(t), freeTCPPort(t)
	certDir := t.TempDir()
	// Make the CA the proxy will trust, as a user would with
	// `execconform fakeapiserver --cert-dir`.
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // serve nothing: just make the CA and stop
	var sink bytes.Buffer
	_ = run(ctx, []string{"fakeapiserver", "--listen", "127.0.0.1:0", "--cert-dir", certDir}, &sink, &sink)
	require.FileExists(t, filepath.Join(certDir, "ca.key"))

	self, err := os.Executable()
	require.NoError(t, err)
	front := filepath.Join(t.TempDir(), "front")
	require.NoError(t, os.WriteFile(front, []byte(testFront), 0o600))
	proxy := exec.Command(self, "proxy", "--listen", "127.0.0.1:"+frontPort, "--path-prefix", "/k8s",
		"--backend", "https://127.0.0.1:"+backendPort, "--ca-file", filepath.Join(certDir, "ca.crt"), "--token", "sekret",
		"--front-token-file", front,
		"--ping-interval", "1s", "--pong-timeout", "2s")
	proxy.Env = append(os.Environ(), "EXECCONFORM_TEST_AS_CLI=1")
	var proxyOut bytes.Buffer
	proxy.Stdout, proxy.Stderr = &proxyOut, &proxyOut
	require.NoError(t, proxy.Start())
	t.Cleanup(func() {
		_ = proxy.Process.Kill()
		_ = proxy.Wait()
		t.Logf("proxy output:\n%s", proxyOut.String())
	})

	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+frontPort)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the proxy never listened")

	out, err, results := runExternal(t, "--keepalive", "3s",
		"--target-url", "http://127.0.0.1:"+frontPort+"/k8s", "--backend-listen", "127.0.0.1:"+backendPort,
		"--backend-token", "sekret", "--backend-cert-dir", certDir,
		"--run", `^v5.channel.k8s.io/tty/(disconnect/client-tcp-fin|proxy/shutdown-20-sessions|net/backend-leg/reset|lb/client-leg/idle-timeout-rst)$`)
	require.NoError(t, err)
	assert.Contains(t, out, "skipped 1 cases: it stops the proxy")
	assert.Contains(t, out, "skipped 1 cases: it puts faults between the proxy and the API server")
	require.Len(t, results, 2)
	for _, r := range results {
		assert.Equal(t, harness.Pass, r.Verdict, "%s: %v", r.Name, r.Failures)
	}

	// --json: stdout is results.json alone; the backend's address and the
	// skipped cases go to stderr. The token, from a file this time, is
	// the proxy's and is not printed.
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("sekret\n"), 0o600))
	var jout, jerr bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"run", frontArgs[0], frontArgs[1], "--json", "--keepalive", "3s", "--out", "",
		"--target-url", "http://127.0.0.1:" + frontPort + "/k8s", "--backend-listen", "127.0.0.1:" + backendPort,
		"--backend-token-file", tokenFile, "--backend-cert-dir", certDir,
		"--run", `^v5.channel.k8s.io/tty/disconnect/client-tcp-fin$`}, &jout, &jerr))
	var file harness.ResultsFile
	require.NoError(t, json.Unmarshal(jout.Bytes(), &file), "stdout of --json:\n%s", jout.String())
	require.Len(t, file.Results, 1)
	assert.Equal(t, harness.Pass, file.Results[0].Verdict, "%v", file.Results[0].Failures)
	assert.Contains(t, jerr.String(), "backend (point the proxy at it)")
	assert.Contains(t, jerr.String(), "token: the content of "+tokenFile)
	assert.NotContains(t, jout.String()+jerr.String(), "sekret")
}

func freeTCPPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// shellWord is s as one sh word (single-quoted).
func shellWord(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
