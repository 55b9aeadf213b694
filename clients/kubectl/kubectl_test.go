package kubectl_test

import (
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/clients/kubectl"
	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/scenarios"
)

func frontHeader() http.Header {
	return http.Header{"Authorization": {"Bearer " + frontToken}}
}

// TestKubectlVersion: the built kubectl says it is kubectl Version.
func TestKubectlVersion(t *testing.T) {
	d := newDialer(t)
	out, err := exec.CommandContext(deadline(t, waitTimeout), d.Binary(), "version", "--client").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "Client Version: "+kubectl.Version)
	// A second Build finds the binary in the cache.
	again, err := kubectl.Build(deadline(t, waitTimeout), kubectl.BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, d.Binary(), again)
}

// TestThroughTheReferenceProxy: kubectl through the reference proxy
// (relaying its reads) runs a shell: it types, sees the answer, types
// exit; the shell is gone and the status is Success, from kubectl's exit
// 0. Over each transport and tty mode, through an https front
// (the kubeconfig's CA is the one req.TLS trusts: kubectl sends no
// credentials over plain HTTP, see TestNoTokenOverPlainHTTP).
func TestThroughTheReferenceProxy(t *testing.T) {
	d := newDialer(t)
	modes(func(t *testing.T, transport execproto.Transport, tty bool) {
		log := newTestLogger(t)
		srv := startFake(t, log)
		front, tlsConfig := startProxy(t, srv, true, log)
		s, back := dial(t, d, srv, request(testCase("kubectl/echo", transport, tty), front, tlsConfig, frontHeader(), log))
		assert.Equal(t, transport, back.Transport, "the transport kubectl used")
		assert.Equal(t, transport, s.Transport())
		if transport == execproto.TransportWebSocket {
			assert.Equal(t, execproto.ProtocolV5, s.Protocol(), "kubectl logs the subprotocol")
		}
		assert.Equal(t, tty, back.TTY)
		require.NoError(t, s.Type("echo $((40+2))"+enter(tty)))
		require.NoError(t, s.Expect(deadline(t, waitTimeout), "42"))
		require.NoError(t, s.Type("exit"+enter(tty)))
		_, live, err := back.WaitGone(deadline(t, waitTimeout))
		require.NoError(t, err, "still alive: %v", live)
		st, ok, err := s.Status(deadline(t, waitTimeout))
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, execproto.StatusSuccess, st.Status)
		code, ok := st.ExitCode()
		assert.True(t, ok)
		assert.Zero(t, code)
		assert.NoError(t, s.End().Err)
		assert.Equal(t, -1, s.End().ServerCloseCode)
	})(t)
}

// TestExitCode: a shell that exits 3 gives kubectl's exit 3 and its
// "command terminated with exit code 3", a NonZeroExitCode status of 3.
func TestExitCode(t *testing.T) {
	d := newDialer(t)
	log := newTestLogger(t)
	srv := startFake(t, log)
	front, tlsConfig := startProxy(t, srv, true, log)
	s, _ := dial(t, d, srv, request(testCase("kubectl/exit-code", execproto.TransportWebSocket, false), front, tlsConfig, frontHeader(), log))
	require.NoError(t, s.Type("exit 3\n"))
	st, ok, err := s.Status(deadline(t, waitTimeout))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, execproto.StatusFailure, st.Status)
	assert.Equal(t, execproto.NonZeroExitCodeReason, st.Reason)
	code, ok := st.ExitCode()
	assert.True(t, ok)
	assert.Equal(t, 3, code)
	var ee *kubectl.ExitError
	require.ErrorAs(t, s.End().Err, &ee)
	assert.Equal(t, 3, ee.Code)
	assert.Contains(t, strings.Join(ee.Stderr, "\n"), "command terminated with exit code 3")
}

// TestSIGTERMThroughTheProxy: kubectl killed by SIGTERM in the middle of
// a session; the reference proxy ends the shell all the same, within 3 s.
func TestSIGTERMThroughTheProxy(t *testing.T) {
	d := newDialer(t)
	modes(func(t *testing.T, tr execproto.Transport, tty bool) {
		log := newTestLogger(t)
		srv := startFake(t, log)
		front, tlsConfig := startProxy(t, srv, true, log)
		s, back := dial(t, d, srv, request(testCase("kubectl/sigterm", tr, tty), front, tlsConfig, frontHeader(), log))
		require.NoError(t, s.Type("echo rea''dy"+enter(tty)))
		require.NoError(t, s.Expect(deadline(t, waitTimeout), "ready"))
		require.NoError(t, s.EndAs(deadline(t, waitTimeout), scenarios.OwnSIGTERM))
		_, live, err := back.WaitGone(deadline(t, 3*time.Second))
		require.NoError(t, err, "the shell outlived kubectl's SIGTERM by 3 s: %v", live)
		waitDone(t, s)
		var ee *kubectl.ExitError
		require.ErrorAs(t, s.End().Err, &ee)
		assert.Equal(t, scenarios.OwnSIGTERM, ee.By)
	})(t)
}

// TestCloseStdin: on a notty session kubectl's stdin EOF reaches the
// shell (v5 CLOSE on stdin, or the SPDY stdin stream's FIN) and the
// shell exits on it; on a tty there is no such thing.
func TestCloseStdin(t *testing.T) {
	d := newDialer(t)
	for _, tr := range []execproto.Transport{execproto.TransportWebSocket, execproto.TransportSPDY} {
		t.Run(string(tr), func(t *testing.T) {
			log := newTestLogger(t)
			srv := startFake(t, log)
			front, tlsConfig := startProxy(t, srv, true, log)
			s, back := dial(t, d, srv, request(testCase("kubectl/close-stdin", tr, false), front, tlsConfig, frontHeader(), log))
			require.NoError(t, s.Type("echo rea''dy\n"))
			require.NoError(t, s.Expect(deadline(t, waitTimeout), "ready"))
			require.NoError(t, s.CloseStdin())
			_, live, err := back.WaitGone(deadline(t, waitTimeout))
			require.NoError(t, err, "still alive: %v", live)
			info, err := back.Info(deadline(t, waitTimeout))
			require.NoError(t, err)
			assert.True(t, info.StdinClosed, "the backend saw stdin half-closed")
			st, ok, err := s.Status(deadline(t, waitTimeout))
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, execproto.StatusSuccess, st.Status)
		})
	}
	t.Run("tty", func(t *testing.T) {
		log := newTestLogger(t)
		srv := startFake(t, log)
		front, tlsConfig := startProxy(t, srv, true, log)
		s, _ := dial(t, d, srv, request(testCase("kubectl/close-stdin", execproto.TransportWebSocket, true), front, tlsConfig, frontHeader(), log))
		assert.ErrorIs(t, s.CloseStdin(), errors.ErrUnsupported)
	})
}

// TestResize: a resize of kubectl's terminal reaches the backend's pty
// (the shell's stty says so, and the fake recorded it); notty has none.
func TestResize(t *testing.T) {
	d := newDialer(t)
	for _, tr := range []execproto.Transport{execproto.TransportWebSocket, execproto.TransportSPDY} {
		t.Run(string(tr), func(t *testing.T) {
			log := newTestLogger(t)
			srv := startFake(t, log)
			front, tlsConfig := startProxy(t, srv, true, log)
			s, back := dial(t, d, srv, request(testCase("kubectl/resize", tr, true), front, tlsConfig, frontHeader(), log))
			require.NoError(t, s.Type("stty size\r"))
			require.NoError(t, s.Expect(deadline(t, waitTimeout), "24 80"), "kubectl's first size")
			require.NoError(t, s.Resize(132, 50))
			// kubectl sends the size when the kernel tells it of the
			// change (SIGWINCH): wait until the backend has it (its
			// record, polled as the harness polls it), then ask the shell.
			ctx := deadline(t, waitTimeout)
			want := execproto.TerminalSize{Width: 132, Height: 50}
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				info, err := back.Info(ctx)
				require.NoError(t, err, "the new size never reached the backend")
				if slices.Contains(info.Resizes, want) {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("the new size never reached the backend: %v", info.Resizes)
				case <-tick.C:
				}
			}
			require.NoError(t, s.Type("stty size\r"))
			require.NoError(t, s.Expect(deadline(t, waitTimeout), "50 132"), "the shell's new size")
		})
	}
	t.Run("notty", func(t *testing.T) {
		log := newTestLogger(t)
		srv := startFake(t, log)
		front, tlsConfig := startProxy(t, srv, true, log)
		s, _ := dial(t, d, srv, request(testCase("kubectl/resize", execproto.TransportWebSocket, false), front, tlsConfig, frontHeader(), log))
		assert.ErrorIs(t, s.Resize(100, 40), errors.ErrUnsupported)
	})
}

// TestNoCredential: without a token in its kubeconfig (no bearer token
// in the run's headers), kubectl asks its user for a name and a
// password before its first request, on a terminal or not: Dial stops
// it and says so at once; nothing reached the backend.
func TestNoCredential(t *testing.T) {
	d := newDialer(t)
	log := newTestLogger(t)
	srv := startFake(t, log)
	front, tlsConfig := startProxy(t, srv, true, log)
	for _, tty := range []bool{true, false} {
		_, err := d.Dial(deadline(t, waitTimeout), request(testCase("kubectl/refused", execproto.TransportWebSocket, tty), front, tlsConfig, http.Header{}, log))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "kubectl has no credentials in its kubeconfig")
		assert.Contains(t, err.Error(), "asked for a user name")
	}
	assert.Empty(t, srv.Sessions())
}

// TestNoTokenOverPlainHTTP: kubectl (client-go's clientcmd) reads a
// kubeconfig's credentials only for a TLS server: through a plain-HTTP
// front it sends no token, and the proxy refuses it (401). The kubectl
// cases need an https front.
func TestNoTokenOverPlainHTTP(t *testing.T) {
	d := newDialer(t)
	log := newTestLogger(t)
	srv := startFake(t, log)
	front, _ := startProxy(t, srv, false, log)
	_, err := d.Dial(deadline(t, waitTimeout), request(testCase("kubectl/http", execproto.TransportWebSocket, false), front, nil, frontHeader(), log))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "You must be logged in to the server")
	assert.Empty(t, srv.Sessions())
}

// TestAbortResetFreeze: AbortTCP and Reset kill kubectl (End.Err wraps
// execclient's ErrAborted and ErrReset), and the reference proxy ends
// the shell; a frozen (SIGSTOPped) kubectl is still killed by Release.
func TestAbortResetFreeze(t *testing.T) {
	d := newDialer(t)
	for _, tc := range []struct {
		name string
		do   func(clients.Session) error
		want error
	}{
		{"abort", clients.Session.AbortTCP, execclient.ErrAborted},
		{"reset", clients.Session.Reset, execclient.ErrReset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := newTestLogger(t)
			srv := startFake(t, log)
			front, tlsConfig := startProxy(t, srv, true, log)
			s, back := dial(t, d, srv, request(testCase("kubectl/"+tc.name, execproto.TransportWebSocket, true), front, tlsConfig, frontHeader(), log))
			require.NoError(t, s.Type("echo rea''dy\r"))
			require.NoError(t, s.Expect(deadline(t, waitTimeout), "ready"))
			require.NoError(t, tc.do(s))
			_, live, err := back.WaitGone(deadline(t, 3*time.Second))
			require.NoError(t, err, "still alive: %v", live)
			waitDone(t, s)
			assert.ErrorIs(t, s.End().Err, tc.want)
			assert.ErrorIs(t, tc.do(s), execclient.ErrEnded, "a second time")
		})
	}
	t.Run("freeze", func(t *testing.T) {
		log := newTestLogger(t)
		srv := startFake(t, log)
		front, tlsConfig := startProxy(t, srv, true, log)
		s, _ := dial(t, d, srv, request(testCase("kubectl/freeze", execproto.TransportSPDY, false), front, tlsConfig, frontHeader(), log))
		s.Freeze()
		s.Release()
		select {
		case <-s.Done():
		default:
			t.Fatal("Release returned before kubectl was reaped")
		}
		s.Release() // twice is fine
	})
}

// TestUnsupported: what kubectl cannot do says so (errors.ErrUnsupported).
func TestUnsupported(t *testing.T) {
	d := newDialer(t)
	log := newTestLogger(t)
	srv := startFake(t, log)
	front, tlsConfig := startProxy(t, srv, true, log)
	s, _ := dial(t, d, srv, request(testCase("kubectl/unsupported", execproto.TransportWebSocket, false), front, tlsConfig, frontHeader(), log))
	_, err := s.Close(deadline(t, waitTimeout), 1000, "")
	assert.ErrorIs(t, err, errors.ErrUnsupported)
	assert.ErrorIs(t, s.Send(execproto.StreamResize, []byte(`{"Width":1,"Height":1}`)), errors.ErrUnsupported)
	assert.ErrorIs(t, s.EndAs(deadline(t, waitTimeout), scenarios.OwnTabClose), errors.ErrUnsupported)
	assert.ErrorIs(t, s.EndAs(deadline(t, waitTimeout), scenarios.OwnTerminalClosed), errors.ErrUnsupported, "notty")
	assert.Nil(t, s.Response())
	require.NoError(t, s.Send(execproto.StreamStdin, []byte("exit\n")))
	waitDone(t, s)
}

// waitDone waits for kubectl's exit.
func waitDone(t *testing.T, s clients.Session) {
	t.Helper()
	select {
	case <-s.Done():
	case <-deadline(t, waitTimeout).Done():
		t.Fatalf("kubectl still runs after %v", waitTimeout)
	}
}

// refuseUpgrades wraps a front so that it refuses exec upgrades of the
// given kinds with 403.
func refuseUpgrades(websocket, spdy bool) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			up := strings.ToLower(r.Header.Get("Upgrade"))
			if websocket && up == "websocket" || spdy && strings.HasPrefix(up, "spdy/") {
				http.Error(w, "no "+up+" here", http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// TestWebSocketRefusalFallsBackToSPDY: kubectl whose WebSocket upgrade
// is refused tries SPDY on its own (client-go's fallback executor, on
// any upgrade failure); the session says it runs over SPDY. Both
// refused: Dial returns the refusal as an *execclient.HandshakeError.
func TestWebSocketRefusalFallsBackToSPDY(t *testing.T) {
	d := newDialer(t)
	log := newTestLogger(t)
	srv := startFake(t, log)
	front, tlsConfig := startWrappedProxy(t, srv, true, log, refuseUpgrades(true, false))
	s, back := dial(t, d, srv, request(testCase("kubectl/fallback", execproto.TransportWebSocket, true), front, tlsConfig, frontHeader(), log))
	assert.Equal(t, execproto.TransportSPDY, s.Transport())
	assert.Equal(t, execproto.TransportSPDY, back.Transport)
	assert.Equal(t, execproto.Protocol(""), s.Protocol(), "kubectl logs no SPDY version")
	require.NoError(t, s.Type("exit\r"))
	waitDone(t, s)

	front, tlsConfig = startWrappedProxy(t, srv, true, log, refuseUpgrades(true, true))
	_, err := d.Dial(deadline(t, waitTimeout), request(testCase("kubectl/refused", execproto.TransportWebSocket, true), front, tlsConfig, frontHeader(), log))
	var he *execclient.HandshakeError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, http.StatusForbidden, he.StatusCode)
}

// TestPaste: a 1 MiB paste (the paste cases' own) goes through kubectl's
// terminal whole: wc counts every byte of it.
func TestPaste(t *testing.T) {
	d := newDialer(t)
	for _, tr := range []execproto.Transport{execproto.TransportWebSocket, execproto.TransportSPDY} {
		t.Run(string(tr), func(t *testing.T) {
			log := newTestLogger(t)
			srv := startFake(t, log)
			front, tlsConfig := startProxy(t, srv, true, log)
			s, _ := dial(t, d, srv, request(testCase("kubectl/paste", tr, true), front, tlsConfig, frontHeader(), log))
			require.NoError(t, s.Type("stty -echo; wc -c; echo p''asted\r"))
			paste := scenarios.Paste(scenarios.PasteLine, 1<<20, 64<<10)
			total := 0
			for _, msg := range scenarios.PasteData(paste) {
				require.NoError(t, s.Type(string(msg)))
				total += len(msg)
			}
			// The paste ends inside a line: a Ctrl-D ends the line, a second
			// one (at the start of a line) is wc's EOF.
			require.NoError(t, s.Type("\x04\x04"))
			// The terminal turns each \r into \n: the count is the same.
			require.NoError(t, s.Expect(deadline(t, waitTimeout), fmt.Sprintf("%d", total)))
			require.NoError(t, s.Expect(deadline(t, waitTimeout), "pasted"))
			require.NoError(t, s.Type("exit\r"))
			waitDone(t, s)
		})
	}
}
