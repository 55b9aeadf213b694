// Package leakguard makes a test binary that starts shells (through the
// fake API server) leave none behind: not when its tests pass, not when
// they fail, not when it is interrupted.
//
//	func TestMain(m *testing.M) { leakguard.Main(m) }
//
// Every process the fake API server starts carries EXECCONFORM_SERVER_PID,
// the PID of the process that started it; leakguard finds them by it in
// the process table.
package leakguard

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/execconform/execconform/internal/janitor"
	"github.com/execconform/execconform/proctable"
)

// Main runs the tests. It is the janitor of the binary instead when
// started as one (see package janitor), and starts the binary's janitor
// otherwise: whatever kills the binary, its shells' children and its
// temporary directories go at once. On SIGINT or SIGTERM it kills every process this
// binary's servers started and exits 1. After the tests it checks the
// process table: any such process still alive is listed, killed, and fails
// the binary (exit 1), since a test leaked it.
func Main(m *testing.M) {
	janitor.RunIfJanitor()
	if err := janitor.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "leakguard: %v\n", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		n, _ := killOurs()
		fmt.Fprintf(os.Stderr, "leakguard: %v: killed %d process(es) started by this test binary\n", s, n)
		os.Exit(1)
	}()
	go watchParent(os.Getppid())
	code := m.Run()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	left, err := ours(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "leakguard: read the process table: %v\n", err)
		code = 1
	}
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "leakguard: FAIL: %d process(es) started by these tests are still alive:\n", len(left))
		for _, p := range left {
			fmt.Fprintf(os.Stderr, "  %s (%s=%s)\n", p, proctable.SessionEnv, p.Session)
		}
		_, _ = killOurs()
		code = 1
	}
	os.Exit(code)
}

// parentPoll is how often watchParent looks at the parent.
const parentPoll = 250 * time.Millisecond

// watchParent ends the binary, and the shells it started, once the process
// that started it (go test) is gone: SIGKILLed, go test cannot stop it, and
// the binary would run on under PID 1 starting shells (measured: 45 s and
// up to 91 shells after a kill -9 of go). The kernel tells a process of its
// parent's death only by reparenting it (Pdeathsig would follow the parent
// thread that forked, which the Go runtime may retire), so it looks.
func watchParent(parent int) {
	if parent <= 1 {
		return // started by init: nothing to watch
	}
	t := time.NewTicker(parentPoll)
	defer t.Stop()
	for range t.C {
		if os.Getppid() != parent {
			n, _ := killOurs()
			fmt.Fprintf(os.Stderr, "leakguard: the parent process (PID %d) is gone: killed %d process(es) started by this test binary\n", parent, n)
			os.Exit(1)
		}
	}
}

// ours lists the live processes started by servers in this process.
func ours(ctx context.Context) ([]proctable.Proc, error) {
	procs, err := proctable.Default.Tagged(ctx)
	if err != nil {
		return nil, err
	}
	var out []proctable.Proc
	for _, p := range procs {
		if p.ServerPID == os.Getpid() {
			out = append(out, p)
		}
	}
	return out, nil
}

// killOurs kills them, session by session, and waits until none is left.
func killOurs() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	procs, err := ours(ctx)
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	n := 0
	for _, p := range procs {
		if seen[p.Session] {
			continue
		}
		seen[p.Session] = true
		k, err := proctable.Default.Kill(ctx, proctable.Match{Session: p.Session}, syscall.SIGKILL)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
