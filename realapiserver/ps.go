package realapiserver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
)

// Dial execs command in the pod straight to the API server (no proxy),
// offering protocols, with the cluster's token and CA.
func (c Cluster) Dial(ctx context.Context, command []string, tty, stdin bool, protocols ...execproto.Protocol) (*execclient.Conn, error) {
	tlsc, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	return execclient.Dial(ctx, c.ExecURL(command, tty, stdin), execclient.Options{
		Protocols: protocols,
		Header:    map[string][]string{"Authorization": {"Bearer " + c.Token}},
		TLSConfig: tlsc,
	})
}

// PS runs ps aux inside the pod through a fresh exec, straight to the API
// server, and returns its output.
func (c Cluster) PS(ctx context.Context) (string, error) { return c.Run(ctx, "ps", "aux") }

// MarkedShells picks from ps aux output the lines of shells marked with
// tag (every marked shell if tag is "").
func MarkedShells(ps, tag string) []string {
	var out []string
	for line := range strings.Lines(ps) {
		for _, f := range strings.Fields(line) {
			if t, ok := strings.CutPrefix(f, MarkerPrefix); ok && (tag == "" || t == tag) {
				out = append(out, strings.TrimSpace(line))
				break
			}
		}
	}
	return out
}

// PodShells lists the shells marked with tag (all marked shells if tag is
// "") that ps aux inside the pod shows. Concurrent callers share one ps
// run that started after they asked, so that twenty sessions judged at
// once cost one exec, not twenty.
func (s *Server) PodShells(ctx context.Context, tag string) ([]string, error) {
	ps, err := s.ps.get(ctx, s.cl.PS)
	if err != nil {
		return nil, err
	}
	return MarkedShells(ps, tag), nil
}

// psTimeout bounds one ps aux exec: an exec crosses the API server, the
// kubelet and containerd, which a loaded 2-core node can make slow.
const psTimeout = 20 * time.Second

// coalescer shares runs of a function among callers: a caller gets the
// result of a run that started after it asked.
type coalescer struct {
	mu      sync.Mutex
	cur     *psRun
	waiting atomic.Int64 // callers waiting for a run (for tests)
}

type psRun struct {
	started time.Time
	done    chan struct{}
	out     string
	err     error
}

func (c *coalescer) get(ctx context.Context, f func(context.Context) (string, error)) (string, error) {
	asked := time.Now()
	for {
		c.mu.Lock()
		r := c.cur
		if r == nil || (r.started.Before(asked) && isDone(r.done)) {
			r = &psRun{started: time.Now(), done: make(chan struct{})}
			c.cur = r
			go func() {
				rctx, cancel := context.WithTimeout(context.Background(), psTimeout)
				defer cancel()
				r.out, r.err = f(rctx)
				close(r.done)
			}()
		}
		c.mu.Unlock()
		c.waiting.Add(1)
		select {
		case <-r.done:
		case <-ctx.Done():
			c.waiting.Add(-1)
			return "", fmt.Errorf("realapiserver: ps aux in the pod: %w", ctx.Err())
		}
		c.waiting.Add(-1)
		if !r.started.Before(asked) {
			return r.out, r.err
		}
	}
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
