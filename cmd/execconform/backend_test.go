package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeFile writes content to a new file in a test directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// TestTokenFrom: a token file's content, trimmed; both flags, an empty
// file or a missing one are errors that do not show the content.
func TestTokenFrom(t *testing.T) {
	good := writeFile(t, "token", "  file-token-2c7e\n\n")
	blank := writeFile(t, "blank", " \n\t\n")
	tok, err := tokenFrom("", "token", good, "token-file")
	require.NoError(t, err)
	assert.Equal(t, "file-token-2c7e", tok)
	tok, err = tokenFrom("flag-token", "token", "", "token-file")
	require.NoError(t, err)
	assert.Equal(t, "flag-token", tok)
	tok, err = tokenFrom("", "token", "", "token-file")
	require.NoError(t, err)
	assert.Empty(t, tok, "neither: a random token")

	_, err = tokenFrom("flag-token", "backend-token", good, "backend-token-file")
	require.ErrorContains(t, err, "--backend-token and --backend-token-file: choose one")
	_, err = tokenFrom("", "token", blank, "token-file")
	require.ErrorContains(t, err, "holds no token")
	_, err = tokenFrom("", "token", filepath.Join(t.TempDir(), "missing"), "token-file")
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestWarnNotLoopback: a listen address off loopback (every interface,
// another address, a host name) is warned of; loopback is not.
func TestWarnNotLoopback(t *testing.T) {
	for addr, warn := range map[string]string{
		"127.0.0.1:9443": "", "127.0.0.2:0": "", "[::1]:9443": "", "localhost:9443": "",
		":9443": "listens on every interface", "0.0.0.0:9443": "listens on every interface", "[::]:9443": "listens on every interface",
		"10.1.2.3:9443": "listens on 10.1.2.3", "myhost:9443": "listens on myhost",
		"no-port": "", // the listen fails and says why
	} {
		var errb bytes.Buffer
		warnNotLoopback(&errb, "listen", addr)
		if warn == "" {
			assert.Empty(t, errb.String(), addr)
			continue
		}
		assert.Contains(t, errb.String(), "execconform: warning: --listen "+addr+" "+warn+", not on loopback", addr)
	}
}

// TestFakeAPIServerTokenFile: --token-file is the token clients must send;
// the command prints where it came from, never the token itself, and warns
// of nothing on loopback.
func TestFakeAPIServerTokenFile(t *testing.T) {
	const token = "file-token-9a41d3"
	file := writeFile(t, "token", token+"\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var errb syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"fakeapiserver", "--listen", "127.0.0.1:0", "--token-file", file, "--insecure-http"}, pw, &errb)
		pw.Close()
	}()
	vals := map[string]string{}
	var printed strings.Builder
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		k, v, _ := strings.Cut(sc.Text(), "=")
		vals[k] = v
		if k == "control" {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	assert.Equal(t, file, vals["token-file"])
	assert.NotContains(t, vals, "token")
	assert.NotContains(t, printed.String(), token)

	status := func(bearer string) int {
		req, err := http.NewRequest(http.MethodGet, vals["control"], nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, status(token), "the file's token, trimmed")
	assert.Equal(t, http.StatusUnauthorized, status("not-"+token))

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("fakeapiserver did not stop")
	}
	assert.NotContains(t, errb.String(), "warning")
	assert.NotContains(t, errb.String(), token, "nor does its log show the token")
}

// TestFakeAPIServerFlagErrors: both token flags, an empty token file, and
// a listen address off loopback (warned of first; this one cannot be
// bound, so that nothing listens beyond loopback).
func TestFakeAPIServerFlagErrors(t *testing.T) {
	file := writeFile(t, "token", "tok")
	blank := writeFile(t, "blank", "\n")
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"fakeapiserver", "--token", "x", "--token-file", file}, &out, &errb)
	require.ErrorContains(t, err, "choose one")
	err = run(context.Background(), []string{"fakeapiserver", "--token-file", blank}, &out, &errb)
	require.ErrorContains(t, err, "holds no token")
	assert.Empty(t, out.String(), "nothing started")

	errb.Reset()
	err = run(context.Background(), []string{"fakeapiserver", "--listen", "192.0.2.1:0", "--insecure-http"}, &out, &errb) // TEST-NET-1: not ours
	require.Error(t, err)
	assert.Contains(t, errb.String(), "execconform: warning: --listen 192.0.2.1:0 listens on 192.0.2.1, not on loopback")
}

// TestBackendTokenFile: the backend of --target-url takes its token from
// --backend-token-file, and warns of a --backend-listen off loopback.
func TestBackendTokenFile(t *testing.T) {
	file := writeFile(t, "token", "\tbackend-file-token-61f0\n")
	var errb bytes.Buffer
	b := backendOptions{listen: "127.0.0.1:0", tokenFile: file, insecure: true}
	fake, err := b.start(slog.New(slog.DiscardHandler), &errb)
	require.NoError(t, err)
	assert.Equal(t, "backend-file-token-61f0", fake.Token())
	require.NoError(t, fake.Close())
	assert.Empty(t, errb.String())

	b.token = "x"
	_, err = b.start(slog.New(slog.DiscardHandler), &errb)
	require.ErrorContains(t, err, "--backend-token and --backend-token-file: choose one")

	b = backendOptions{listen: "192.0.2.1:0", insecure: true} // TEST-NET-1: cannot be bound
	_, err = b.start(slog.New(slog.DiscardHandler), &errb)
	require.ErrorContains(t, err, "--backend-listen 192.0.2.1:0")
	assert.Contains(t, errb.String(), "execconform: warning: --backend-listen 192.0.2.1:0 listens on 192.0.2.1, not on loopback")
}

// syncBuffer is a bytes.Buffer that a server's goroutines may write to
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
