package harness_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/scenarios"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv("EXECCONFORM_TEST_LISTEN"); addr != "" {
		// A stand-in proxy for the --proxy-cmd tests: listen, or fail
		// like a proxy whose port is taken.
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(0)
			}
			c.Close()
		}
	}
	leakguard.Main(m)
}

func reference() harness.Target {
	return harness.HandlerTarget(func(b harness.Backend) (http.Handler, error) {
		return proxyundertest.New(proxyundertest.Config{InsecureNoFrontAuth: true, Backend: b.URL, TLSConfig: b.TLSConfig, Token: b.Token})
	})
}

func oneCase(t testing.TB, name string, p execproto.Protocol, tty bool) scenarios.Case {
	t.Helper()
	for _, c := range scenarios.Cases(scenarios.All()) {
		if c.Scenario.Name == name && c.Protocol == p && c.TTY == tty {
			return c
		}
	}
	t.Fatalf("no case %s", name)
	return scenarios.Case{}
}

// TestWatchdogFailsAHungCase: a proxy that accepts the upgrade and then
// never forwards anything makes the case fail within its timeout instead
// of hanging the run.
func TestWatchdogFailsAHungCase(t *testing.T) {
	hang := func(ctx context.Context, b harness.Backend) (*url.URL, func(), error) {
		block := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hj, _ := w.(http.Hijacker)
			conn, _, err := hj.Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			<-block // never answers the upgrade
		}))
		u, _ := url.Parse(srv.URL)
		return u, func() { close(block); srv.Close() }, nil
	}
	c := oneCase(t, "disconnect/client-tcp-fin", execproto.ProtocolV5, true)
	s := *c.Scenario
	s.Timeout = 500 * time.Millisecond
	c.Scenario = &s
	start := time.Now()
	res := harness.RunCase(context.Background(), hang, c, harness.Options{})
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.Equal(t, harness.Fail, res.Verdict)
	require.NotEmpty(t, res.Failures)
	assert.Contains(t, res.Failures[0], "watchdog")
}

// TestTargetThatDoesNotStartIsAnError: the suite could not run the case.
func TestTargetThatDoesNotStartIsAnError(t *testing.T) {
	broken := func(ctx context.Context, b harness.Backend) (*url.URL, func(), error) {
		return nil, nil, errors.New("no such binary")
	}
	res := harness.RunCase(context.Background(), broken, oneCase(t, "disconnect/client-tcp-fin", execproto.ProtocolV5, true), harness.Options{})
	assert.Equal(t, harness.Error, res.Verdict)
	assert.Contains(t, res.Failures[0], "the target did not start: no such binary")
}

// TestDroppedSubprotocolIsCaught: a proxy that answers the client without
// the backend's subprotocol fails.
func TestDroppedSubprotocolIsCaught(t *testing.T) {
	strip := harness.HandlerTarget(func(b harness.Backend) (http.Handler, error) {
		p, err := proxyundertest.New(proxyundertest.Config{InsecureNoFrontAuth: true, Backend: b.URL, TLSConfig: b.TLSConfig, Token: b.Token})
		if err != nil {
			return nil, err
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.ServeHTTP(dropProtocol{w}, r)
		}), nil
	})
	res := harness.RunCase(context.Background(), strip, oneCase(t, "disconnect/client-tcp-fin", execproto.ProtocolV4, true), harness.Options{})
	assert.Equal(t, harness.Fail, res.Verdict)
	assert.Contains(t, res.Failures[0], "subprotocol")
}

// dropProtocol removes Sec-WebSocket-Protocol from the upgrade response,
// which the WebSocket library writes straight to the hijacked connection.
type dropProtocol struct{ http.ResponseWriter }

func (d dropProtocol) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := d.ResponseWriter.(http.Hijacker).Hijack()
	return &stripConn{Conn: c}, rw, err
}

type stripConn struct {
	net.Conn
	done bool
}

var protoHeader = regexp.MustCompile(`(?i)sec-websocket-protocol: [^\r]*\r\n`)

func (c *stripConn) Write(b []byte) (int, error) {
	if !c.done {
		c.done = true
		if _, err := c.Conn.Write(protoHeader.ReplaceAll(b, nil)); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// BenchmarkCase measures one whole case against the reference proxy:
// backend and proxy start, dial, shell prompt, ending, verdict, cleanup.
func BenchmarkCase(b *testing.B) {
	for _, name := range []string{"disconnect/client-tcp-fin", "shell/user-types-exit"} {
		c := oneCase(b, name, execproto.ProtocolV5, true)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				res := harness.RunCase(context.Background(), reference(), c, harness.Options{})
				if res.Verdict != harness.Pass {
					b.Fatalf("%s: %v", res.Verdict, res.Failures)
				}
			}
		})
	}
}

// TestInterruptedRunIsTheSuites: a run cancelled (as by Ctrl-C) while its
// first case runs reports no verdict on the proxy: the cut case and the
// cases never started are ERROR and marked, the run says it was
// interrupted, and its exit code is the suite's (2), not a failing
// proxy's (1). Before, every case failed its watchdog: 152 MUST FAIL.
func TestInterruptedRunIsTheSuites(t *testing.T) {
	cases := []scenarios.Case{
		oneCase(t, "busy/foreground-sleep", execproto.ProtocolV5, true),
		oneCase(t, "disconnect/client-tcp-fin", execproto.ProtocolV5, true),
		oneCase(t, "disconnect/client-tcp-fin", execproto.ProtocolV4, true),
		oneCase(t, "disconnect/client-close/1000", execproto.ProtocolV5, false),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := harness.Options{Parallel: 1, OnStart: func(scenarios.Case) { cancel() }}
	rep := harness.Run(ctx, reference(), cases, opts)
	require.Len(t, rep.Results, len(cases))
	notRun := 0
	for _, r := range rep.Results {
		if r.Verdict == harness.Pass {
			continue // the case was done before the cancel reached it
		}
		assert.Equal(t, harness.Error, r.Verdict, "%s: %v", r.Name, r.Failures)
		assert.True(t, r.Interrupted, r.Name)
		assert.Contains(t, strings.Join(r.Failures, "; "), harness.InterruptedNote, r.Name)
		if r.NotRun {
			notRun++
		}
	}
	assert.Equal(t, len(cases)-1, notRun, "only the first case started")
	assert.True(t, rep.Interrupted())
	assert.Equal(t, harness.ExitSuiteError, rep.ExitCode())
	f := harness.NewResultsFile("reference", rep)
	assert.True(t, f.Interrupted)
	require.NotEmpty(t, f.Notices)
	assert.Equal(t, harness.NoticeInterrupted, f.Notices[0].Kind)
	assert.Contains(t, f.Notices[0].Message, "3 cases were not run")
}
