package realapiserver

import (
	"cmp"
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

// DialSPDY execs command in the pod straight to the API server over
// SPDY/3.1 (client-go's SPDY executor's offer: the kubelet picks v4), with
// the cluster's token and CA.
func (c Cluster) DialSPDY(ctx context.Context, command []string, tty, stdin bool) (*execclient.SPDYConn, error) {
	tlsc, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	return execclient.DialSPDY(ctx, c.ExecURL(command, tty, stdin), execclient.Options{
		RawProtocols: execproto.ClientGoSPDYOffer,
		Header:       map[string][]string{"Authorization": {"Bearer " + c.Token}},
		TLSConfig:    tlsc,
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
// result of a run that started after it asked. A caller that finds a run
// from before it asked still under way waits for it, then shares the next,
// unless waiting longer would leave it less than a whole run's time
// before its deadline: then it starts the next run at once. So a caller
// whose deadline is more than one run's timeout away (the ps witness:
// 30 s, a run 20 s) gets an answer within it, even behind a run that a
// stalled node keeps for its whole timeout.
type coalescer struct {
	timeout time.Duration // bound on one run (0: psTimeout)
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

// start starts a run of f and makes it the current one. c.mu must be held.
func (c *coalescer) start(f func(context.Context) (string, error)) *psRun {
	r := &psRun{started: time.Now(), done: make(chan struct{})}
	c.cur = r
	timeout := cmp.Or(c.timeout, psTimeout)
	go func() {
		rctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		r.out, r.err = f(rctx)
		close(r.done)
	}()
	return r
}

func (c *coalescer) get(ctx context.Context, f func(context.Context) (string, error)) (string, error) {
	asked := time.Now()
	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	for {
		c.mu.Lock()
		r := c.cur
		if r == nil || (r.started.Before(asked) && isDone(r.done)) {
			r = c.start(f)
		}
		c.mu.Unlock()
		// Behind a run from before we asked: give up on it when what is left
		// before our deadline is just a whole run. A caller with less than
		// that to begin with waits as before (a fresh run would not fit
		// either, and callers polling on short deadlines must keep sharing).
		var giveUp <-chan time.Time
		if dl, ok := ctx.Deadline(); ok && r.started.Before(asked) {
			if d := time.Until(dl.Add(-cmp.Or(c.timeout, psTimeout))); d > 0 {
				t := time.NewTimer(d)
				defer t.Stop()
				giveUp = t.C
			}
		}
		select {
		case <-r.done:
		case <-giveUp:
			c.mu.Lock()
			if c.cur == r { // nobody has started a fresh run yet
				c.start(f)
			}
			c.mu.Unlock()
			continue
		case <-ctx.Done():
			return "", fmt.Errorf("realapiserver: ps aux in the pod: %w", ctx.Err())
		}
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
