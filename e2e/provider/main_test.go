package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeProvider records what session does with it.
type fakeProvider struct {
	setupErr               error
	tornDown, logsExported bool
	env                    *targetEnv
}

func (p *fakeProvider) name() string            { return "fake" }
func (p *fakeProvider) addFlags(*flagSet)       {}
func (p *fakeProvider) keepHint() string        { return "" }
func (p *fakeProvider) exportLogs(string) error { p.logsExported = true; return nil }
func (p *fakeProvider) setup(context.Context, options) (*targetEnv, error) {
	p.env = &targetEnv{Provider: "fake", APIServer: "https://127.0.0.1:1", Namespace: "ns", Pod: "pod", Procs: "pod", Token: "T"}
	return p.env, p.setupErr
}
func (p *fakeProvider) teardown(context.Context, *targetEnv) error { p.tornDown = true; return nil }

func opts(t *testing.T) options {
	return options{timeout: time.Minute, logs: t.TempDir()}
}

func TestSessionRunsTheCommandWithTheEnvironment(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	p := &fakeProvider{}
	status := session(context.Background(), p, opts(t), []string{"sh", "-c", "env > " + out}, nil)
	assert.Equal(t, 0, status)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	for _, want := range []string{"E2E_APISERVER=https://127.0.0.1:1", "E2E_NAMESPACE=ns", "E2E_POD=pod", "E2E_CONTAINER=shell", "E2E_PROCS=pod", "E2E_PROVIDER=fake", "E2E_TOKEN=T"} {
		assert.Contains(t, string(b), want+"\n")
	}
	assert.True(t, p.tornDown)
	assert.False(t, p.logsExported, "logs are exported only for a failed run")
}

func TestSessionTearsDownAfterAFailure(t *testing.T) {
	p := &fakeProvider{}
	assert.Equal(t, 3, session(context.Background(), p, opts(t), []string{"sh", "-c", "exit 3"}, nil), "the command's status")
	assert.True(t, p.tornDown)
	assert.True(t, p.logsExported)

	p = &fakeProvider{setupErr: assert.AnError}
	assert.Equal(t, exitSetup, session(context.Background(), p, opts(t), []string{"true"}, nil))
	assert.True(t, p.tornDown, "a failed setup is torn down too")
	assert.True(t, p.logsExported)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p = &fakeProvider{setupErr: context.Canceled}
	assert.Equal(t, exitInterrupt, session(ctx, p, opts(t), []string{"true"}, nil))
	assert.True(t, p.tornDown, "an interrupted setup is torn down too")
}

func TestKeepLeavesItRunning(t *testing.T) {
	p := &fakeProvider{}
	o := opts(t)
	o.keep = true
	assert.Equal(t, 0, session(context.Background(), p, o, []string{"true"}, nil))
	assert.False(t, p.tornDown)
}

// A signal we get goes on to the command; its status says which. (SIGUSR1:
// session ignores SIGINT and SIGTERM from teardown on, for the rest of the
// process, and so would the command of a later test.)
func TestSignalsReachTheCommand(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	ready := filepath.Join(t.TempDir(), "ready")
	done := make(chan int, 1)
	go func() {
		s, err := runCommand([]string{"sh", "-c", "touch " + ready + "; exec sleep 60"}, &targetEnv{}, sigs)
		assert.NoError(t, err)
		done <- s
	}()
	require.Eventually(t, func() bool { _, err := os.Stat(ready); return err == nil }, 10*time.Second, 10*time.Millisecond)
	sigs <- syscall.SIGUSR1
	select {
	case s := <-done:
		assert.Equal(t, 128+int(syscall.SIGUSR1), s)
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not end on SIGUSR1")
	}
}

func TestOptionsCheck(t *testing.T) {
	o := options{image: "busybox", pullPolicy: "IfNotPresent"}
	assert.NoError(t, o.check())
	o.pullPolicy = "Sometimes"
	assert.ErrorContains(t, o.check(), "--pull-policy")
	o.pullPolicy, o.procs = "Never", "node"
	assert.ErrorContains(t, o.check(), "--procs")
}

func TestUsage(t *testing.T) {
	assert.Equal(t, 2, run(nil))
	assert.Equal(t, 2, run([]string{"minikube"}))
	assert.Equal(t, 2, run([]string{"cluster"}), "no command")
}

func TestHasBoundingCap(t *testing.T) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc")
	}
	var bnd string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			bnd = strings.TrimSpace(v)
		}
	}
	require.NotEmpty(t, bnd)
	has, err := hasBoundingCap(capSysResource)
	require.NoError(t, err)
	// CAP_SYS_RESOURCE is bit 24: the 7th hex digit from the right.
	digit := bnd[len(bnd)-7]
	assert.Equal(t, strings.ContainsRune("13579bdf", rune(digit)), has, "CapBnd %s", bnd)
}

func TestKindLooksForShellsWhereItCan(t *testing.T) {
	assert.Equal(t, "host", defaultKindProcs(0, ""))
	assert.Equal(t, "host", defaultKindProcs(0, "unix:///run/docker.sock"))
	assert.Equal(t, "pod", defaultKindProcs(1000, ""), "a docker-group user cannot read the nodes' environ")
	assert.Equal(t, "pod", defaultKindProcs(0, "tcp://buildhost:2376"), "the nodes run on another machine")
}
