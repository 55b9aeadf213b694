//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/proctable"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/realapiserver"
)

// TestExitSequences measures, straight against the real pod (busybox ash
// on a pty), how reliably a farewell written as one stdin message ends the
// shell, in three states: idle at the prompt, a half-typed line, a
// foreground sleep. The reference proxy's sequence must end it every time.
func TestExitSequences(t *testing.T) {
	srv := realServer(t)
	cl := srv.Cluster()
	n := 20
	if s, err := strconv.Atoi(getenv("E2E_EXITSEQ_N", "10")); err == nil {
		n = s
	}
	states := []struct{ name, setup, wait string }{
		{"idle", "", ""},
		{"half-typed", "ech", ""},
		{"sleep", "sleep 600\r", "sleep"},
	}
	seqs := []string{proxyundertest.ExitTTY, "\x03exit\r", "exit\r"}
	protos := []execproto.Protocol{execproto.ProtocolV5}
	closeAfter := getenv("E2E_EXITSEQ_CLOSE", "") != ""
	if closeAfter {
		seqs = seqs[:1]
		protos = []execproto.Protocol{execproto.ProtocolV5, execproto.ProtocolV4, execproto.ProtocolNone}
	}
	for _, proto := range protos {
		for _, seq := range seqs {
			for _, st := range states {
				survived := 0
				var mu sync.Mutex
				var wg sync.WaitGroup
				sem := make(chan struct{}, 5)
				for range n {
					wg.Add(1)
					sem <- struct{}{}
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						tag := srv.Tag()
						m := proctable.Match{Session: tag}
						defer func() { _, _ = srv.Procs().Kill(context.Background(), m, 9) }()
						ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
						defer cancel()
						c, err := cl.Dial(ctx, realapiserver.Mark(tag, []string{"sh", "-i"}), true, true, proto)
						if err != nil {
							t.Errorf("dial: %v", err)
							return
						}
						defer func() { _ = c.Reset() }()
						if err := c.Type("echo $((40+2))\r"); err != nil || c.Expect(ctx, "42") != nil {
							t.Errorf("the shell did not answer")
							return
						}
						if st.setup != "" {
							_ = c.Type(st.setup)
						}
						if st.wait != "" {
							if err := waitComm(ctx, srv, m, st.wait); err != nil {
								t.Error(err)
								return
							}
						}
						_ = c.Type(seq)
						if closeAfter {
							cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
							_, _ = c.Close(cctx, 1000, "")
							ccancel()
						}
						gctx, gcancel := context.WithTimeout(ctx, 3*time.Second)
						_, _, err = srv.Procs().WaitGone(gctx, m)
						gcancel()
						if err != nil {
							mu.Lock()
							survived++
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				t.Logf("%-18s %-16q %-10s close=%v shell survived %d of %d", proto, seq, st.name, closeAfter, survived, n)
				if seq == proxyundertest.ExitTTY && survived > 0 {
					t.Errorf("the reference proxy's farewell %q left the shell alive in %d of %d %s sessions", seq, survived, n, st.name)
				}
			}
		}
	}
}

func waitComm(ctx context.Context, srv *realapiserver.Server, m proctable.Match, comm string) error {
	for {
		live, err := srv.Procs().Live(ctx, m)
		if err != nil {
			return fmt.Errorf("no %s appeared: %w", comm, err)
		}
		for _, p := range live {
			if p.Comm == comm {
				return nil
			}
		}
	}
}
