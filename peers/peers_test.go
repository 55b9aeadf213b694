package peers

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/janitor"
	"github.com/execconform/execconform/proctable"
	"github.com/execconform/execconform/scenarios"
	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/klog/v2"
)

func TestMain(m *testing.M) {
	janitor.RunIfJanitor()
	if err := janitor.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "peers: %v\n", err)
	}
	klog.SetLogger(logr.Discard()) // the peers log every broken tunnel
	m.Run()
}

// cases selects cases of the full matrix by name.
func cases(t *testing.T, expr string) []scenarios.Case {
	t.Helper()
	cs := scenarios.Filter{Run: regexp.MustCompile(expr)}.Apply(scenarios.Cases(scenarios.All()))
	require.NotEmpty(t, cs, expr)
	return cs
}

// wantVersion is the version each peer's module must be built at.
var wantVersion = map[string]string{
	kubectlModule:       "v0.34.4",
	apimachineryModule:  "v0.34.4",
	kubeRBACProxyModule: "v0.19.0",
}

// TestPeersRunEndToEnd starts each peer and runs two cases through it:
// the user typing exit (the API server ends the session and the peers pass
// it on) and a client that drops its TCP connection (judged, whatever the
// verdict). kubectl proxy with its default filter must refuse exec with 403.
func TestPeersRunEndToEnd(t *testing.T) {
	// The subtests run in parallel, after this function has returned.
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	exit := cases(t, `^v5\.channel\.k8s\.io/tty/shell/user-types-exit$`)
	drop := cases(t, `^v5\.channel\.k8s\.io/tty/disconnect/client-tcp-fin$`)
	for _, p := range All() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			rep := harness.Run(ctx, p.Target, append(exit, drop...), harness.Options{Parallel: 2, ClientHeader: p.ClientHeader})
			require.Len(t, rep.Results, 2)
			for _, r := range rep.Results {
				assert.NotEqual(t, harness.Error, r.Verdict, "%s: %s", r.Name, strings.Join(r.Failures, "; "))
				assert.Equal(t, execproto.ProtocolV5.String(), r.Client.Protocol, "%s: the session went through the peer", r.Name)
			}
			assert.Equal(t, harness.Pass, rep.Results[0].Verdict, "%s: %s", rep.Results[0].Name, strings.Join(rep.Results[0].Failures, "; "))
			if v := ModuleVersion(p.Module); v != "unknown" {
				assert.Equal(t, wantVersion[p.Module], v)
			}
		})
	}
	t.Run("kube-rbac-proxy-without-token", func(t *testing.T) {
		t.Parallel()
		rep := harness.Run(ctx, KubeRBACProxy().Target, drop, harness.Options{})
		require.Len(t, rep.Results, 1)
		r := rep.Results[0]
		assert.Equal(t, harness.Fail, r.Verdict)
		assert.Contains(t, strings.Join(r.Failures, "; "), "the proxy refused the upgrade: HTTP 401")
	})
	t.Run("kubectl-proxy-default-filter", func(t *testing.T) {
		t.Parallel()
		rep := harness.Run(ctx, KubectlProxyDefaultFilter().Target, drop, harness.Options{})
		require.Len(t, rep.Results, 1)
		r := rep.Results[0]
		assert.Equal(t, harness.Fail, r.Verdict)
		assert.Contains(t, strings.Join(r.Failures, "; "), "the proxy refused the upgrade: HTTP 403")
	})
}

// TestStopClosesTunnels opens an upgraded tunnel through each peer to a
// backend that answers 101 and then only reads, stops the peer (the
// SIGTERM case) and checks that the token reached the backend, that stop
// closed both ends of the tunnel, and that the peer's goroutines ended.
func TestStopClosesTunnels(t *testing.T) {
	type upgrade struct {
		auth   string
		closed chan struct{} // the tunnel closed the backend connection
	}
	upgrades := make(chan upgrade, 1)
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		_ = brw.Flush()
		u := upgrade{auth: r.Header.Get("Authorization"), closed: make(chan struct{})}
		upgrades <- u
		_, _ = io.Copy(io.Discard, conn) // until the tunnel closes it
		close(u.closed)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = backend.Serve(ln) }()
	defer backend.Close()
	b := harness.Backend{URL: &url.URL{Scheme: "http", Host: ln.Addr().String()}, Token: "T0KEN"}

	for _, p := range All() {
		t.Run(p.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			base := settledGoroutines()
			front, stop, err := p.Target(ctx, b)
			require.NoError(t, err)
			stopped := false
			defer func() {
				if !stopped {
					stop()
				}
			}()
			client, err := net.Dial("tcp", front.Host)
			require.NoError(t, err)
			defer client.Close()
			var extra strings.Builder
			require.NoError(t, p.ClientHeader.Write(&extra)) // the peer's credentials, if it wants any
			_, err = fmt.Fprintf(client, "GET /api/v1/namespaces/default/pods/p/exec?command=sh&tty=true HTTP/1.1\r\n"+
				"Host: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n%s\r\n", front.Host, extra.String())
			require.NoError(t, err)
			require.NoError(t, client.SetReadDeadline(time.Now().Add(5*time.Second)))
			resp, err := http.ReadResponse(bufio.NewReader(client), nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			var u upgrade
			select {
			case u = <-upgrades:
			case <-ctx.Done():
				t.Fatal("the backend got no upgrade")
			}
			assert.Equal(t, "Bearer T0KEN", u.auth, "the token must reach the backend on the upgrade")

			start := time.Now()
			stop()
			stopped = true
			assert.Less(t, time.Since(start), releaseBound, "stop waited for its bound: the peer did not let go of a connection")
			select {
			case <-u.closed:
			case <-time.After(2 * time.Second):
				t.Fatal("stop left the backend side of the tunnel open")
			}
			_, err = client.Read(make([]byte, 1))
			assert.Error(t, err, "stop left the client side of the tunnel open")
			assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= base+2 }, 5*time.Second, 20*time.Millisecond,
				"the peer's goroutines did not end: %d before, %d after", base, runtime.NumGoroutine())
		})
	}
}

// settledGoroutines waits (at most 2 s) until the goroutine count stops falling.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for i := 0; i < 100; i++ {
		time.Sleep(20 * time.Millisecond) // sampling the count, not synchronising
		m := runtime.NumGoroutine()
		if m >= n && i >= 5 {
			return m
		}
		n = m
	}
	return n
}

func TestReasonKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{
			`session 3/20: 2 of the session's processes still alive 3s after the ending: pid=1 sid=1 state=S sh -i; pid=2 sid=1 state=S cat; after the ending the backend received: 8 earlier frames, stdin "a, b", stdin "c\"d"; TCP: closed by the proxy without a close handshake (FIN)`,
			`the session's processes (the shell, and its foreground program if any) still alive 3s after the ending; after the ending the backend received: stdin data; TCP: closed by the proxy without a close handshake (FIN)`,
		},
		{
			`the proxy ended the client connection without a close frame (websocket: close 1006 (abnormal closure): unexpected EOF)`,
			`the proxy ended the client connection without a close frame (the client saw 1006)`,
		},
		{`... and 17 more of the 20 sessions failed too`, ``},
		{`the proxy closed the backend with code 1001, want 1000`, `the proxy closed the backend with code 1001, want 1000`},
	} {
		assert.Equal(t, tc.want, reasonKey(tc.in), tc.in)
	}
}

// TestPublished: a published file keeps no frames of a passing case, the
// first and last of a failed one's, and a few of its live processes; the
// report it was made from is not changed.
func TestPublished(t *testing.T) {
	frames := func(n int) *fakeapiserver.Record {
		rec := &fakeapiserver.Record{}
		for i := range n {
			rec.Frames = append(rec.Frames, fakeapiserver.FrameRecord{Payload: fmt.Sprint(i)})
		}
		return rec
	}
	live := make([]proctable.Proc, 200)
	results := []harness.Result{
		{Name: "pass", Verdict: harness.Pass, Legs: map[scenarios.Leg]*harness.LegView{scenarios.BackendLeg: {Record: frames(100)}}},
		{Name: "fail", Verdict: harness.Fail, Live: live, Backend: &fakeapiserver.SessionInfo{},
			Failures: []string{"the words"}, Findings: []harness.Finding{{Check: harness.CheckLive, Message: "the words"}}, Legs: map[scenarios.Leg]*harness.LegView{
				scenarios.BackendLeg: {Record: frames(1000)}, scenarios.ClientLeg: {Record: frames(PublishedFrames)}}},
	}
	out := Published(results)
	pass := out[0].Legs[scenarios.BackendLeg].Record
	assert.Empty(t, pass.Frames)
	assert.EqualValues(t, 100, pass.FramesDropped)
	fail := out[1].Legs[scenarios.BackendLeg].Record
	require.Len(t, fail.Frames, PublishedFrames)
	assert.Equal(t, "0", fail.Frames[0].Payload)
	assert.Equal(t, "999", fail.Frames[PublishedFrames-1].Payload)
	assert.EqualValues(t, 1000-PublishedFrames, fail.FramesDropped)
	assert.Empty(t, out[1].Legs[scenarios.ClientLeg].Record.Frames, "the client leg's frames are not published")
	assert.EqualValues(t, PublishedFrames, out[1].Legs[scenarios.ClientLeg].Record.FramesDropped)
	assert.Len(t, out[1].Live, PublishedLive)
	assert.Nil(t, fail.Stats)
	assert.Nil(t, out[1].Backend)
	assert.Empty(t, out[1].Findings[0].Message, "the failure of the same index says it")
	assert.Equal(t, "the words", out[1].Failures[0])
	// The input is untouched.
	assert.Len(t, results[0].Legs[scenarios.BackendLeg].Record.Frames, 100)
	assert.Len(t, results[1].Legs[scenarios.BackendLeg].Record.Frames, 1000)
	assert.Len(t, results[1].Live, 200)
}
