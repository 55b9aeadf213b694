package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/harness"
)

// bencher measures every target against one fake API server.
type bencher struct {
	cfg  Config
	fake *fakeapiserver.Server
	log  *slog.Logger
	seq  atomic.Int64
}

// The exec request's pod: the fake serves any.
const (
	benchNamespace = "default"
	benchPod       = "bench"
)

// endpoint is where the sessions of one figure go: a started target's
// front, or the fake API server itself (direct).
type endpoint struct {
	t     Target
	front *url.URL // nil: direct
	// via, if set, is the address the client dials instead of the front's
	// (or the fake's) host: a fault link on the client leg.
	via string
}

// start starts t (nothing for direct) and returns its endpoint and stop.
func (b *bencher) start(ctx context.Context, t Target) (endpoint, func(), error) {
	if t.Start == nil {
		return endpoint{t: t}, func() {}, nil
	}
	backend := harness.Backend{URL: b.fake.URL(), Token: b.fake.Token(), CAFile: b.fake.CAFile(), TLSConfig: b.fake.ClientTLSConfig()}
	front, stop, err := t.Start(ctx, backend)
	if err != nil {
		return endpoint{}, nil, fmt.Errorf("start %s: %w", t.Name, err)
	}
	return endpoint{t: t, front: front}, stop, nil
}

// upstream is the host:port a client-leg link forwards to.
func (e endpoint) upstream(fake *fakeapiserver.Server) string {
	if e.front == nil {
		return fake.URL().Host
	}
	return e.front.Host
}

// spec is one session to open.
type spec struct {
	tty     bool
	command []string // nil: an interactive shell
	proto   execproto.Protocol
	spdy    bool
	prompt  bool // wait for the shell's first prompt
}

// interactive is the shell a tty session runs: what a terminal opens.
var interactive = []string{"sh", "-i"}

// prompt is what the fake's shells print first: dash's PS1, "# " for root.
var prompt = func() string {
	if os.Geteuid() == 0 {
		return "# "
	}
	return "$ "
}()

// session is one open session of the bench.
type session struct {
	c         execclient.Session
	container string
	opened    time.Duration // from the dial to the prompt (prompt specs)
}

// open dials one session through e.
func (b *bencher) open(ctx context.Context, e endpoint, s spec) (*session, error) {
	container := fmt.Sprintf("b%d", b.seq.Add(1))
	command := s.command
	if command == nil {
		command = interactive
	}
	start := time.Now()
	c, err := b.dial(ctx, e, s, container, command)
	if err != nil {
		return nil, err
	}
	out := &session{c: c, container: container}
	if s.prompt {
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := c.Expect(pctx, prompt)
		cancel()
		if err != nil {
			_ = c.Reset()
			return nil, fmt.Errorf("no prompt: %w", err)
		}
		out.opened = time.Since(start)
	}
	return out, nil
}

func (b *bencher) dial(ctx context.Context, e endpoint, s spec, container string, command []string) (execclient.Session, error) {
	opts := execclient.Options{HandshakeTimeout: 15 * time.Second, AutotuneBuffers: true}
	var base *url.URL
	if e.front == nil {
		base = b.fake.URL()
		opts.Header = http.Header{"Authorization": {"Bearer " + b.fake.Token()}}
		opts.TLSConfig = b.fake.ClientTLSConfig()
	} else {
		base = &url.URL{Scheme: e.front.Scheme, Host: e.front.Host, Path: e.front.Path}
		opts.Header = e.t.Header.Clone()
		opts.TLSConfig = e.t.FrontTLS
	}
	if e.via != "" {
		// The certificate names the loopback address, whatever the port.
		base.Host = e.via
	}
	if d := e.t.Dialect; d != nil && e.front != nil {
		if len(command) > 1 {
			command = command[:1] // a dialect names the shell alone
		}
		return execclient.DialDialect(ctx, base, d, dialect.Params{
			Namespace: benchNamespace, Pod: benchPod, Container: container, Command: command, TTY: true,
		}, opts)
	}
	if s.proto != execproto.ProtocolNone {
		opts.Protocols = []execproto.Protocol{s.proto}
	}
	u := harness.ExecURL(base, execproto.ExecRequest{Namespace: benchNamespace, Pod: benchPod, Container: container, Command: command,
		Stdin: true, Stdout: true, Stderr: !s.tty, TTY: s.tty})
	if s.spdy {
		return execclient.DialSPDY(ctx, u, opts)
	}
	return execclient.Dial(ctx, u, opts)
}

// openMany opens n sessions of spec s through e, Config.Open at a time.
// On an error it closes those it opened.
func (b *bencher) openMany(ctx context.Context, e endpoint, s spec, n int) ([]*session, error) {
	out := make([]*session, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.cfg.Open)
	for i := range n {
		g.Go(func() error {
			sess, err := b.open(gctx, e, s)
			if err != nil {
				return fmt.Errorf("session %d of %d: %w", i+1, n, err)
			}
			out[i] = sess
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.drop(out)
		return nil, err
	}
	return out, nil
}

// drop resets every client connection (its shells are cleaned by cleanup).
func (b *bencher) drop(ss []*session) {
	for _, s := range ss {
		if s != nil {
			_ = s.c.Reset()
		}
	}
}

// cleanup ends every live process the fake started and waits, bounded,
// for each session to finish, so that a figure starts from nothing:
// what a broken proxy (or direct) leaves must not load the next one.
func (b *bencher) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 128) // the kills share the process table's scans
	for _, s := range b.fake.Sessions() {
		select {
		case <-s.Finished():
			continue
		default:
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_ = s.Kill(ctx)
			select {
			case <-s.Finished():
			case <-ctx.Done():
			}
		}()
	}
	wg.Wait()
}

// sessionsByContainer indexes the fake's kept sessions of the bench's pod.
func (b *bencher) sessionsByContainer() map[string]*fakeapiserver.Session {
	out := map[string]*fakeapiserver.Session{}
	for _, s := range b.fake.Sessions() {
		if s.Pod == benchPod {
			out[s.Container] = s
		}
	}
	return out
}

// exit ends a shell session the way a user does, bounded.
func exit(ctx context.Context, s *session) {
	_ = s.c.Type("\x15exit\r")
	select {
	case <-s.c.Done():
	case <-ctx.Done():
		_ = s.c.Reset()
	case <-time.After(5 * time.Second):
		_ = s.c.Reset()
	}
}
