package leakguard_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/proctable"
)

func TestMain(m *testing.M) { leakguard.Main(m) }

const helperEnv = "LEAKGUARD_HELPER"

// TestHelperStartsAnOrphan is run as a child binary by the tests below: it
// starts a server and an orphaned tty shell with a background sleep, prints
// the session ID, and never closes the server.
func TestHelperStartsAnOrphan(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper for TestLeakIsCaught and TestInterruptKills")
	}
	srv, err := fakeapiserver.New(fakeapiserver.Config{})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	u := strings.Replace(srv.URL().String(), "https", "wss", 1) + "/api/v1/namespaces/n/pods/p/exec?command=sh&command=-i&stdin=true&stdout=true&tty=true"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := execclient.Dial(ctx, u, execclient.Options{
		Protocols: []execproto.Protocol{execproto.ProtocolV5},
		Header:    http.Header{"Authorization": {"Bearer " + srv.Token()}}, TLSConfig: srv.ClientTLSConfig(),
	})
	require.NoError(t, err)
	require.NoError(t, c.Type("sleep 600 & echo $((6*7))\r"))
	require.NoError(t, c.Expect(ctx, "42"))
	require.NoError(t, c.Reset())
	fmt.Printf("session=%s\n", c.Response().Header.Get(fakeapiserver.SessionHeader))
	if mode == "interrupt" {
		<-make(chan struct{}) // wait for the signal
	}
}

// runHelper starts the helper binary and returns its session ID.
func runHelper(t *testing.T, mode string) (*exec.Cmd, string, *strings.Builder) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStartsAnOrphan$", "-test.v")
	// The helper never closes its server: its temporary directory goes
	// under the test's own, which the test removes.
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "TMPDIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "session="); ok {
			go func() {
				for sc.Scan() {
				}
			}()
			return cmd, id, &stderr
		}
	}
	t.Fatalf("the helper printed no session; stderr:\n%s", stderr.String())
	return nil, "", nil
}

func assertGone(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, live, err := proctable.Default.WaitGone(ctx, proctable.Match{Session: id})
	assert.NoError(t, err, "left alive: %v", live)
}

// TestLeakIsCaught: a test binary whose test leaves shells alive fails, and
// the shells are killed.
func TestLeakIsCaught(t *testing.T) {
	cmd, id, stderr := runHelper(t, "leak")
	err := cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.ExitCode())
	assert.Contains(t, stderr.String(), "leakguard: FAIL")
	assertGone(t, id)
}

// TestInterruptKills: an interrupted test binary kills its shells, the
// background sleep included, before exiting.
func TestInterruptKills(t *testing.T) {
	cmd, id, stderr := runHelper(t, "interrupt")
	// The orphan and its sleep are alive before the signal (the sleep may
	// still be exec'ing when the helper prints: wait for it).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		live, err := proctable.Default.Live(ctx, proctable.Match{Session: id})
		require.NoError(t, err, "want the shell and its sleep alive, have %v", live)
		if len(live) >= 2 {
			break
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	_ = cmd.Wait()
	assert.Contains(t, stderr.String(), "leakguard: interrupt: killed")
	assertGone(t, id)
}

// TestParentDeathKills: a test binary whose parent (go test) is SIGKILLed
// notices, kills its shells and exits, instead of running on under PID 1.
// The helper runs under a shell that stands for go test.
func TestParentDeathKills(t *testing.T) {
	parent := exec.Command("sh", "-c", `"$0" -test.run='^TestHelperStartsAnOrphan$' -test.v & echo "helper=$!"; wait`, os.Args[0])
	parent.Env = append(os.Environ(), helperEnv+"=interrupt", "TMPDIR="+t.TempDir())
	out, err := parent.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, parent.Start())
	t.Cleanup(func() { _ = parent.Process.Kill(); _ = parent.Wait() })
	var helper int
	var id string
	sc := bufio.NewScanner(out)
	for (helper == 0 || id == "") && sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "helper="); ok {
			helper, err = strconv.Atoi(v)
			require.NoError(t, err)
		}
		if v, ok := strings.CutPrefix(sc.Text(), "session="); ok {
			id = v
		}
	}
	require.NotZero(t, helper)
	require.NotEmpty(t, id, "the helper printed no session")
	go func() {
		for sc.Scan() {
		}
	}()
	t.Cleanup(func() { _ = syscall.Kill(helper, syscall.SIGKILL) })
	require.NoError(t, parent.Process.Kill())
	_ = parent.Wait()
	// The helper is gone (its exit reaped by init), and so are its shells.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for running(helper) {
		select {
		case <-ctx.Done():
			t.Fatalf("the orphaned helper (PID %d) still runs 10 s after its parent died", helper)
		case <-tick.C:
		}
	}
	assertGone(t, id)
}

// running tells whether pid is a process that has not exited (a zombie
// has: init may not reap it at once).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}
