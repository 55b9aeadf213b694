package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/proctable"
)

// TestMain fails the package if a test leaves a process behind. With
// EXECCONFORM_TEST_AS_CLI=1 the test binary is the execconform command
// instead (the external-proxy tests run it as their proxy).
func TestMain(m *testing.M) {
	if os.Getenv("EXECCONFORM_TEST_AS_CLI") == "1" {
		main()
		os.Exit(0)
	}
	leakguard.Main(m)
}

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name string, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	assert.Equal(t, string(want), got)
}

func TestListGolden(t *testing.T) {
	var out, errb bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"run", "--list"}, &out, &errb))
	golden(t, "list.golden", out.String())
	out.Reset()
	require.NoError(t, run(context.Background(), []string{"run", "--list", "--quiet"}, &out, &errb))
	golden(t, "list-names.golden", out.String())
}

// normalise removes what varies between runs: timings and paths.
var (
	progressLine = regexp.MustCompile(`(?m)^\[\d+/\d+\] .*\n`)
	timing       = regexp.MustCompile(`\b\d+(\.\d+)?(us|ms|s)\b`)
	spaces       = regexp.MustCompile(` +`)
)

func normalise(s string) string {
	s = timing.ReplaceAllString(s, "T")
	return spaces.ReplaceAllString(s, " ")
}

func TestRunMatrixGolden(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"run", "--run", `^v5\.channel\.k8s\.io/(tty|notty)/disconnect/client-tcp-(fin|rst)$`, "--out", dir}, &out, &errb)
	require.NoError(t, err, errb.String())
	// A progress line per case comes first (not a terminal: plain lines),
	// in the order the cases ended.
	progressLines := progressLine.FindAllString(out.String(), -1)
	assert.Len(t, progressLines, 4)
	got := normalise(strings.ReplaceAll(progressLine.ReplaceAllString(out.String(), ""), dir, "DIR"))
	golden(t, "run-reference.golden", got)

	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	var res harness.ResultsFile
	require.NoError(t, json.Unmarshal(b, &res))
	assert.Equal(t, harness.ResultsSchema, res.Schema)
	require.Len(t, res.Results, 4)
	for _, r := range res.Results {
		assert.Equal(t, "PASS", string(r.Verdict), r.Name)
		assert.GreaterOrEqual(t, int64(r.TimeToReap), int64(0))
	}
}

func TestRunExitsOneWhenAMustCaseFails(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"run", "--variant", "no-exit", "--grace", "1s", "--out", "",
		"--run", `^v5\.channel\.k8s\.io/tty/disconnect/client-tcp-fin$`}, &out, &errb)
	var ee exitError
	require.True(t, errors.As(err, &ee), "err=%v", err)
	assert.Equal(t, exitError(1), ee)
	assert.Contains(t, out.String(), "FAIL v5.channel.k8s.io/tty/disconnect/client-tcp-fin [MUST]")
	assert.Contains(t, out.String(), "still alive")
	assert.Contains(t, out.String(), "after the ending the backend received: nothing")
}

func TestUsageErrors(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, exitError(2), run(context.Background(), nil, &out, &errb))
	assert.Equal(t, exitError(2), run(context.Background(), []string{"frobnicate"}, &out, &errb))
	assert.Error(t, run(context.Background(), []string{"run", "--protocol", "v9"}, &out, &errb))
	assert.Error(t, run(context.Background(), []string{"run", "--run", "^nothing-matches$"}, &out, &errb))
}

// TestFakeAPIServerCommand: the standalone server prints its URL, token and
// CA, serves a session, and on interrupt kills the shell it started.
func TestFakeAPIServerCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"fakeapiserver", "--listen", "127.0.0.1:0", "--token", "T"}, pw, io.Discard)
		pw.Close()
	}()
	vals := map[string]string{}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		vals[k] = v
		if k == "control" {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	require.Equal(t, "T", vals["token"])
	require.FileExists(t, vals["ca-file"])
	caPEM, err := os.ReadFile(vals["ca-file"])
	require.NoError(t, err)
	tlsCfg := tlsTrusting(t, caPEM)

	u := strings.Replace(vals["url"], "https://", "wss://", 1) + "/api/v1/namespaces/ns/pods/p/exec?command=sh&command=-i&stdin=true&stdout=true&tty=true"
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	c, err := execclient.Dial(dctx, u, execclient.Options{
		Protocols: []execproto.Protocol{execproto.ProtocolV5},
		Header:    http.Header{"Authorization": {"Bearer T"}}, TLSConfig: tlsCfg,
	})
	require.NoError(t, err)
	require.NoError(t, c.Type("echo $((6*7))\r"))
	require.NoError(t, c.Expect(dctx, "42"))
	id := c.Response().Header.Get("X-Execconform-Session")
	require.NoError(t, c.AbortTCP()) // the shell is now an orphan
	live, err := proctable.Default.Live(dctx, proctable.Match{Session: id})
	require.NoError(t, err)
	require.NotEmpty(t, live, "the orphan is alive before the interrupt")

	cancel() // as SIGINT does
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("fakeapiserver did not stop")
	}
	live, err = proctable.Default.Live(context.Background(), proctable.Match{Session: id})
	require.NoError(t, err)
	assert.Empty(t, live, "stopping the server kills its shells")
}

// TestProxyCommandCleansUpOnSignal: at SIGTERM the proxy ends every open
// session so that no shell is orphaned.
func TestProxyCommandCleansUpOnSignal(t *testing.T) {
	fake, err := fakeapiserver.New(fakeapiserver.Config{})
	require.NoError(t, err)
	require.NoError(t, fake.Start())
	t.Cleanup(func() { _ = fake.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var errb strings.Builder
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"proxy", "--backend", fake.URL().String(), "--ca-file", fake.CAFile(), "--token", fake.Token(), "--path-prefix", "/api/kubernetes",
			"--insecure-no-front-auth"}, pw, &errb)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	front := strings.TrimSpace(strings.TrimPrefix(line, "url="))
	require.True(t, strings.HasSuffix(front, "/api/kubernetes"), front)

	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	var sessions []*fakeapiserver.Session
	for i := range 3 {
		c, err := execclient.Dial(dctx, strings.Replace(front, "http://", "ws://", 1)+"/api/v1/namespaces/ns/pods/p/exec?command=sh&command=-i&stdin=true&stdout=true&tty=true",
			execclient.Options{Protocols: []execproto.Protocol{execproto.ProtocolBase64}})
		require.NoError(t, err)
		require.NoError(t, c.Type("echo $((6*7))\r"))
		require.NoError(t, c.Expect(dctx, "42"))
		ss, err := fake.WaitSessions(dctx, i+1)
		require.NoError(t, err)
		sessions = append(sessions, ss[i])
	}
	cancel() // as SIGTERM does
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("the proxy did not stop")
	}
	assert.Contains(t, errb.String(), "cleaned up 3 open session(s)")
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	for _, s := range sessions {
		_, live, err := s.WaitGone(wctx)
		assert.NoError(t, err, "live: %v", live)
	}
}

// TestRunQuietJSONAndStepSummary: --json prints only results.json on
// stdout, --quiet only the outcome and the failed cases; the Markdown
// summary is appended to $GITHUB_STEP_SUMMARY; every report is written.
func TestRunQuietJSONAndStepSummary(t *testing.T) {
	summary := filepath.Join(t.TempDir(), "step-summary.md")
	t.Setenv("GITHUB_STEP_SUMMARY", summary)
	one := `^v5\.channel\.k8s\.io/tty/disconnect/client-tcp-fin$`

	dir := t.TempDir()
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"run", "--json", "--variant", "no-exit", "--grace", "1s", "--out", dir, "--run", one, "--seed", "42"}, &out, &errb)
	assert.Equal(t, exitError(1), err)
	var res harness.ResultsFile
	require.NoError(t, json.Unmarshal(out.Bytes(), &res), "stdout must be results.json alone: %q", out.String())
	assert.Equal(t, 1, res.ExitCode)
	assert.Equal(t, int64(42), res.Seed)
	require.Len(t, res.Results, 1)
	assert.Equal(t, harness.Fail, res.Results[0].Verdict)
	for _, name := range []string{"results.json", "junit.xml", "report.html", "summary.md"} {
		assert.FileExists(t, filepath.Join(dir, name))
	}

	out.Reset()
	err = run(context.Background(), []string{"run", "--quiet", "--variant", "no-exit", "--grace", "1s", "--out", "", "--run", one}, &out, &errb)
	assert.Equal(t, exitError(1), err)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2, out.String())
	assert.True(t, strings.HasPrefix(lines[0], "FAIL: 1 MUST case failed (1 cases in "), lines[0])
	assert.True(t, strings.HasPrefix(lines[1], "FAIL v5.channel.k8s.io/tty/disconnect/client-tcp-fin [MUST]: "), lines[1])

	b, err := os.ReadFile(summary)
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(string(b), "## execconform: FAIL: 1 MUST case failed"), "one summary per run appended")
}

// TestRunErrorExitsTwo: a target that cannot start is an ERROR, exit 2.
func TestRunErrorExitsTwo(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"run", "--proxy-cmd", "exit 3", "--proxy-start-timeout", "2s", "--out", "", "--quiet",
		"--run", `^v5\.channel\.k8s\.io/tty/disconnect/client-tcp-fin$`}, &out, &errb)
	assert.Equal(t, exitError(2), err)
	assert.Contains(t, out.String(), "ERROR: 1 case could not run")
	assert.Contains(t, errb.String(), "some cases could not run")
}
