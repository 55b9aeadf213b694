// Package spdydiff is a differential test of the fake API server's SPDY
// exec endpoint: the same sessions through client-go's own SPDY executor
// (remotecommand.NewSPDYExecutor, and NewFallbackExecutor once) against
// the fake and against the kubelet's own exec server code
// (k8s.io/kubelet/pkg/cri/streaming/remotecommand.ServeExec, over a real
// /bin/sh), compared field by field. The kubelet is what answers a SPDY
// exec: the API server tunnels SPDY to it unchanged.
package spdydiff

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/httpstream"
	remotecommandconsts "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	clientexec "k8s.io/client-go/util/exec"
	"k8s.io/klog/v2"
	kubeletrc "k8s.io/kubelet/pkg/cri/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/internal/janitor"
)

func TestMain(m *testing.M) {
	janitor.RunIfJanitor()
	if err := janitor.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "spdydiff: %v\n", err)
	}
	klog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// server is one side of the comparison: where client-go execs, and how.
type server struct {
	name string
	cfg  *rest.Config
	base string // https://host:port
}

// fakeSide starts the fake API server.
func fakeSide(t *testing.T) server {
	t.Helper()
	f, err := fakeapiserver.New(fakeapiserver.Config{})
	require.NoError(t, err)
	require.NoError(t, f.Start())
	t.Cleanup(func() { _ = f.Close() })
	ca, err := os.ReadFile(f.CAFile())
	require.NoError(t, err)
	return server{name: "fake", base: f.URL().String(),
		cfg: &rest.Config{Host: f.URL().String(), BearerToken: f.Token(), TLSClientConfig: rest.TLSClientConfig{CAData: ca}}}
}

// kubeletSide serves ServeExec over TLS on loopback, with the kubelet's
// protocols and a short stream creation timeout.
func kubeletSide(t *testing.T) server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		on := func(k string) bool { return q.Get(k) == "true" || q.Get(k) == "1" }
		opts := &kubeletrc.Options{Stdin: on("stdin"), Stdout: on("stdout"), Stderr: on("stderr") && !on("tty"), TTY: on("tty")}
		kubeletrc.ServeExec(w, r, shellExecutor{}, "pod", types.UID("uid"), "c", q["command"], opts,
			4*time.Hour, 2*time.Second, remotecommandconsts.SupportedStreamingProtocols)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // a client's dropped handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cert := srv.Certificate()
	return server{name: "kubelet", base: srv.URL,
		cfg: &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: pemOf(cert.Raw)}}}
}

func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// shellExecutor is the container runtime under ServeExec: the command
// runs here, on a pty for a tty (resized from the resize channel), on
// pipes otherwise; a non-zero exit is a utilexec.CodeExitError, as the
// kubelet's CRI path returns it.
type shellExecutor struct{}

func (shellExecutor) ExecInContainer(ctx context.Context, _ string, _ types.UID, _ string, cmd []string, in io.Reader, out, stderr io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	c := exec.Command(cmd[0], cmd[1:]...)
	c.Env = []string{"PATH=/usr/bin:/bin", "TERM=xterm"}
	var wg sync.WaitGroup
	if tty {
		f, err := pty.StartWithSize(c, &pty.Winsize{Cols: 80, Rows: 24})
		if err != nil {
			return err
		}
		defer f.Close()
		go func() {
			for s := range resize {
				_ = pty.Setsize(f, &pty.Winsize{Cols: s.Width, Rows: s.Height})
			}
		}()
		if in != nil {
			go func() { _, _ = io.Copy(f, in) }()
		}
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = io.Copy(out, f) }() // to EIO, once the shell's side closed
		err = c.Wait()
		wg.Wait()
		return exitError(err)
	}
	if in != nil {
		w, err := c.StdinPipe()
		if err != nil {
			return err
		}
		go func() { _, _ = io.Copy(w, in); _ = w.Close() }()
	}
	c.Stdout, c.Stderr = out, stderr
	if stderr == nil {
		c.Stderr = io.Discard
	}
	if out == nil {
		c.Stdout = io.Discard
	}
	return exitError(c.Run())
}

func exitError(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return utilexec.CodeExitError{Err: err, Code: code}
	}
	return err
}

// sizeQueue hands out one terminal size, then none.
type sizeQueue struct {
	once chan remotecommand.TerminalSize
}

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	s, ok := <-q.once
	if !ok {
		return nil
	}
	return &s
}

// outcome is what client-go sees of one session.
type outcome struct {
	Stdout, Stderr string
	Err            string // the executor's error: "exit N" for a CodeExitError
}

type session struct {
	name   string
	tty    bool
	cmd    []string
	stdin  string
	resize *remotecommand.TerminalSize
}

func execURL(base string, s session) *url.URL {
	u, _ := url.Parse(base + "/api/v1/namespaces/default/pods/p/exec")
	q := url.Values{}
	for _, c := range s.cmd {
		q.Add("command", c)
	}
	q.Set("container", "c")
	q.Set("stdin", fmt.Sprint(s.stdin != ""))
	q.Set("stdout", "true")
	q.Set("stderr", fmt.Sprint(!s.tty))
	q.Set("tty", fmt.Sprint(s.tty))
	u.RawQuery = q.Encode()
	return u
}

// run execs s on srv through client-go's SPDY executor (fallback: the
// WebSocket-then-SPDY executor).
func run(t *testing.T, srv server, s session, fallback bool) outcome {
	t.Helper()
	u := execURL(srv.base, s)
	spdyExec, err := remotecommand.NewSPDYExecutor(srv.cfg, "POST", u)
	require.NoError(t, err)
	ex := spdyExec
	if fallback {
		ws, err := remotecommand.NewWebSocketExecutor(srv.cfg, "GET", u.String())
		require.NoError(t, err)
		// client-go's (and kubectl's) test: an upgrade refusal.
		ex, err = remotecommand.NewFallbackExecutor(ws, spdyExec, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
		require.NoError(t, err)
	}
	var stdout, stderr bytes.Buffer
	opts := remotecommand.StreamOptions{Stdout: &stdout, Tty: s.tty}
	if !s.tty {
		opts.Stderr = &stderr
	}
	if s.stdin != "" {
		opts.Stdin = strings.NewReader(s.stdin)
	}
	if s.resize != nil {
		q := sizeQueue{once: make(chan remotecommand.TerminalSize, 1)}
		q.once <- *s.resize
		close(q.once)
		opts.TerminalSizeQueue = q
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = ex.StreamWithContext(ctx, opts)
	o := outcome{Stdout: normalise(stdout.String()), Stderr: stderr.String()}
	var ce clientexec.CodeExitError
	switch {
	case errors.As(err, &ce):
		o.Err = fmt.Sprintf("exit %d", ce.Code)
	case err != nil:
		o.Err = err.Error()
	}
	return o
}

// normalise reads a tty's line endings (\r\n) as pipes' (\n).
func normalise(s string) string {
	return strings.ReplaceAll(s, "\r\n", "\n")
}

// TestClientGoSeesTheSame: every session, through client-go's SPDY
// executor, gives the same stdout, stderr and error from the fake as from
// the kubelet's own server code.
func TestClientGoSeesTheSame(t *testing.T) {
	fake, kubelet := fakeSide(t), kubeletSide(t)
	sessions := []session{
		{name: "pipes/exit-3", cmd: []string{"sh", "-c", "echo hi; echo oops >&2; exit 3"}},
		{name: "pipes/exit-0", cmd: []string{"sh", "-c", "echo fine"}},
		{name: "pipes/stdin-to-eof", cmd: []string{"cat"}, stdin: "line one\nline two\n"},
		{name: "pipes/stdin-then-exit-5", cmd: []string{"sh"}, stdin: "echo from-stdin; exit 5\n"},
		{name: "tty/exit-3", tty: true, cmd: []string{"sh", "-c", "echo hi; exit 3"}},
		{name: "tty/resize", tty: true, cmd: []string{"sh", "-c", "sleep 0.2; stty size"}, resize: &remotecommand.TerminalSize{Width: 100, Height: 30}},
		{name: "tty/killed", tty: true, cmd: []string{"sh", "-c", "kill -9 $$"}},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-26s %-8s %s\n", "session", "agree", "what client-go got (kubelet)")
	for _, s := range sessions {
		t.Run(s.name, func(t *testing.T) {
			k := run(t, kubelet, s, false)
			f := run(t, fake, s, false)
			assert.Equal(t, k, f, "fake and kubelet differ")
			fmt.Fprintf(&table, "%-26s %-8v %+v\n", s.name, k == f, k)
		})
	}
	t.Run("fallback-executor", func(t *testing.T) {
		// The fake answers WebSocket v5 (as the API server does); the
		// kubelet refuses it, and client-go falls back to SPDY: the same
		// outcome either way.
		s := session{cmd: []string{"sh", "-c", "echo via-fallback; exit 2"}}
		k := run(t, kubelet, s, true)
		f := run(t, fake, s, true)
		assert.Equal(t, outcome{Stdout: "via-fallback\n", Err: "exit 2"}, k)
		assert.Equal(t, k, f)
		fmt.Fprintf(&table, "%-26s %-8v %+v\n", "fallback-executor", k == f, k)
	})
	t.Log(table.String())
}

// upgrade is what a raw SPDY upgrade request gets.
type upgrade struct {
	Status   int
	Version  string   // X-Stream-Protocol-Version of a 101
	Accepted []string // X-Accepted-Stream-Protocol-Versions of a refusal
	Body     string
}

func rawUpgrade(t *testing.T, srv server, versions []string) upgrade {
	t.Helper()
	u := execURL(srv.base, session{cmd: []string{"sh", "-c", "exit 0"}})
	tc, err := rest.TLSConfigFor(srv.cfg)
	require.NoError(t, err)
	tc.NextProtos = []string{"http/1.1"}
	tc.ServerName = u.Hostname()
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).Dial("tcp", u.Host)
	require.NoError(t, err)
	defer c.Close()
	conn := tls.Client(c, tc)
	req, err := http.NewRequest(http.MethodPost, u.String(), nil)
	require.NoError(t, err)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	if srv.cfg.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+srv.cfg.BearerToken)
	}
	for _, v := range versions {
		req.Header.Add("X-Stream-Protocol-Version", v)
	}
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, req.Write(conn))
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	require.NoError(t, err)
	up := upgrade{Status: resp.StatusCode, Version: resp.Header.Get("X-Stream-Protocol-Version"),
		Accepted: resp.Header.Values("X-Accepted-Stream-Protocol-Versions")}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		up.Body = string(b)
	}
	return up
}

// TestNegotiationIsTheKubelets: the same version offers get the same
// answer (version, or status, accepted versions and body) from both. It
// found the fake's first answer to a request without the header: 400 with
// k8s.io/streaming's words, twice, where the kubelet says "unable to
// upgrade: X-Stream-Protocol-Version is required" once.
func TestNegotiationIsTheKubelets(t *testing.T) {
	fake, kubelet := fakeSide(t), kubeletSide(t)
	for _, tc := range []struct {
		name   string
		offer  []string
		status int
	}{
		{"client-go", []string{"v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"}, 101},
		{"kubectl-1.29", []string{"v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"}, 101},
		{"one-line", []string{"v5.channel.k8s.io, v3.channel.k8s.io"}, 101},
		{"v2-only", []string{"v2.channel.k8s.io"}, 101},
		{"none-in-common", []string{"v9.channel.k8s.io"}, 403},
		{"no-header", nil, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, f := rawUpgrade(t, kubelet, tc.offer), rawUpgrade(t, fake, tc.offer)
			assert.Equal(t, tc.status, k.Status, "the kubelet: %+v", k)
			assert.Equal(t, k, f, "fake and kubelet answer differently")
			t.Logf("%v -> %+v", tc.offer, k)
		})
	}
}
