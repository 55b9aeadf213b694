package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProxyNeedsAFrontCredential: execconform proxy will not serve
// without a front credential, unless told (and then it warns); token
// files are read, and their errors never show their content.
func TestProxyNeedsAFrontCredential(t *testing.T) {
	dir := t.TempDir()
	empty, two, good := filepath.Join(dir, "empty"), filepath.Join(dir, "two"), filepath.Join(dir, "good")
	require.NoError(t, os.WriteFile(empty, []byte(" \n"), 0o600))
	require.NoError(t, os.WriteFile(two, []byte("line-one-secret\nline-two-secret\n"), 0o600))
	require.NoError(t, os.WriteFile(good, []byte("good-secret\n"), 0o600))
	base := []string{"proxy", "--backend", "https://127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "a front credential is required"},
		{[]string{"--front-token-file", good, "--insecure-no-front-auth"}, "choose one"},
		{[]string{"--front-token-file", empty}, "the file holds no token"},
		{[]string{"--front-token-file", two}, "more than one line"},
		{[]string{"--front-token-file", filepath.Join(dir, "missing")}, "no such file"},
		{[]string{"--front-token-file", good, "--token", "x", "--token-file", good}, "--token and --token-file: choose one"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), append(append([]string(nil), base...), tc.args...), &out, &errb)
		require.Error(t, err, "%v", tc.args)
		text := errb.String() + err.Error()
		assert.Contains(t, text, tc.want, "%v", tc.args)
		assert.NotContains(t, text, "secret", "%v: a token file's content", tc.args)
	}
}

// TestProxyLogsRefusals: a request without the front credential gets 401
// and a log line without the credential; a client that never finishes its
// headers is cut at --read-header-timeout and logged.
func TestProxyLogsRefusals(t *testing.T) {
	dir := t.TempDir()
	front := filepath.Join(dir, "front")
	require.NoError(t, os.WriteFile(front, []byte("front-secret-value"), 0o600))
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"proxy", "--backend", "https://127.0.0.1:1", "--front-token-file", front,
			"--read-header-timeout", "300ms"}, outW, errW)
		outW.Close()
		errW.Close()
	}()
	t.Cleanup(func() { cancel(); <-done })
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	line, err := bufio.NewReader(outR).ReadString('\n')
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	base := strings.TrimSpace(strings.TrimPrefix(line, "url="))
	waitLog := func(substr string) string {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-logs:
				require.True(t, ok, "the proxy's log ended before %q", substr)
				if strings.Contains(l, substr) {
					return l
				}
			case <-deadline:
				require.FailNow(t, "no log line", "%q", substr)
			}
		}
	}

	req, err := http.NewRequest(http.MethodGet, base+"/api/v1/namespaces/ns/pods/p/exec", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer front-secret-valuX")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	l := waitLog("request refused")
	assert.Contains(t, l, "status=401")
	assert.NotContains(t, l, "front-secret")

	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n") // and never the end of the headers
	require.NoError(t, err)
	waitLog("connection closed before a whole request")
}
