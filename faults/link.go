package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"

	"github.com/execconform/execconform/internal/sockbuf"
)

// ErrClosed is returned by the methods of a closed Link.
var ErrClosed = errors.New("faults: link closed")

const (
	dialTimeout = 10 * time.Second
	// closeDrain bounds how long Close waits for Toxiproxy to drain its
	// chains: as long as the slowest toxic holds a chunk (a latency).
	closeDrain = 30 * time.Second
)

// toxiServer is the Toxiproxy server that every Link's proxy belongs to. Its
// HTTP API never listens and its metrics are off; a ToxicLink only needs
// it to ask whether metrics are on.
var toxiServer = sync.OnceValue(func() *toxiproxy.ApiServer {
	return toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
})

// Link is one Toxiproxy proxy on 127.0.0.1:0 in front of an upstream
// address. Each connection accepted becomes a session with the upstream:
//
//	client --> Addr() --> [ Upstream chain: noop -> toxic -> ... ]   --> upstream
//	client <--   Link <-- [ Downstream chain: ... -> toxic <- noop ] <-- upstream
//
// Toxics added apply at once to the open connections and to later ones.
// Links are independent: hundreds can live in one process. All methods
// are safe for concurrent use.
type Link struct {
	name     string
	upstream string
	log      *slog.Logger
	zlog     zerolog.Logger
	proxy    *toxiproxy.Proxy // for its ToxicCollection; faults runs the accept loop
	ln       net.Listener
	ctx      context.Context // cancelled by Close: aborts upstream dials
	cancel   context.CancelFunc
	served   chan struct{} // closed when the accept loop has returned

	down   atomic.Bool
	closed atomic.Bool

	// mu orders changes to the toxic chains with the start of sessions, so
	// that each session gets each toxic exactly once and binding holds.
	mu     sync.Mutex
	toxics map[string]added

	smu      sync.Mutex
	sessions map[*session]struct{}
	nextID   uint64
	live     sync.WaitGroup // sessions not yet over

	accepted, upBytes, downBytes atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

type added struct {
	w        *toxics.ToxicWrapper
	toxicity float32
}

// LinkStats is what passed a Link.
type LinkStats struct {
	Accepted        int64 `json:"accepted"`         // connections accepted, including those reset while down or whose upstream dial failed
	Open            int64 `json:"open"`             // sessions not yet over
	UpstreamBytes   int64 `json:"upstream_bytes"`   // bytes written to the upstream
	DownstreamBytes int64 `json:"downstream_bytes"` // bytes written to the clients
}

// NewLink starts a Link listening on 127.0.0.1 in front of upstream
// (host:port). name labels its logs and need not be unique. A nil logger
// discards; Toxiproxy's own logs go to it at Debug level.
func NewLink(name, upstream string, logger *slog.Logger) (*Link, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	lc := net.ListenConfig{Control: sockbuf.Control}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faults: link %q: listen: %w", name, err)
	}
	logger = logger.With("component", "faults", "link", name)
	ctx, cancel := context.WithCancel(context.Background())
	l := &Link{
		name:     name,
		upstream: upstream,
		log:      logger,
		zlog:     zerologTo(logger),
		proxy:    toxiproxy.NewProxy(toxiServer(), name, ln.Addr().String(), upstream),
		ln:       ln,
		ctx:      ctx,
		cancel:   cancel,
		served:   make(chan struct{}),
		toxics:   map[string]added{},
		sessions: map[*session]struct{}{},
	}
	l.proxy.Logger = &l.zlog
	go l.serve()
	logger.Debug("faults: link listening", "addr", ln.Addr().String(), "upstream", upstream)
	return l, nil
}

// Addr is the host:port that clients dial.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Add adds t to every open connection and to every later one. It returns
// once the toxic is in place.
func (l *Link) Add(t Toxic) error {
	name, body, toxicity, err := t.toxiproxyJSON()
	if err != nil {
		return fmt.Errorf("faults: link %q: add %s toxic %q: %w", l.name, t.Type, t.Name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return fmt.Errorf("faults: link %q: add %s toxic %q: %w", l.name, t.Type, name, ErrClosed)
	}
	w, err := l.proxy.Toxics.AddToxicJson(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("faults: link %q: add %s toxic %q: %w", l.name, t.Type, name, err)
	}
	l.toxics[name] = added{w, toxicity}
	b, bound := w.Toxic.(binder)
	for _, s := range l.open() {
		if bound {
			b.bind(s, toxicity)
		}
		s.pipes[w.Direction].AddToxic(w)
	}
	if bound {
		b.bind(nil, 0)
	}
	l.log.Info("faults: toxic added", "toxic", name, "type", t.Type, "stream", w.Stream, "attributes", t.Attributes)
	return nil
}

// Remove removes the toxic named name from every connection.
func (l *Link) Remove(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.toxics[name]
	if !ok {
		return fmt.Errorf("faults: link %q: remove %q: %w", l.name, name, toxiproxy.ErrToxicNotFound)
	}
	ctx := context.Background()
	// Before the collection forgets it: ToxicLink.RemoveToxic reads the
	// toxic's index in the chain.
	for _, s := range l.open() {
		s.pipes[a.w.Direction].RemoveToxic(ctx, a.w)
	}
	if err := l.proxy.Toxics.RemoveToxic(ctx, name); err != nil {
		return fmt.Errorf("faults: link %q: remove %q: %w", l.name, name, err)
	}
	delete(l.toxics, name)
	l.log.Info("faults: toxic removed", "toxic", name)
	return nil
}

// Down takes the link down, as Toxiproxy disabling a proxy: open
// connections are closed both ways (FIN; Linux sends RST instead when the
// link had not yet read everything the peer sent), and new ones are reset
// (RST) as soon as they are accepted, so a client's dial may succeed but
// its first read fails. The port stays bound, so Up brings back the same
// Addr.
func (l *Link) Down() {
	l.down.Store(true)
	l.closeAll("link down")
	l.log.Info("faults: link down")
}

// Up brings the link back up after Down.
func (l *Link) Up() {
	l.down.Store(false)
	l.log.Info("faults: link up")
}

// Close stops listening, closes every connection and waits until
// Toxiproxy has drained its chains, so that no goroutine of the link is
// left. Draining takes as long as the slowest toxic holds a chunk (a
// latency); after 30 s Close gives up waiting and says so.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		l.cancel()
		_ = l.ln.Close()
		l.closeAll("link closed")
		<-l.served
		l.closeAll("link closed") // sessions that started meanwhile
		drained := make(chan struct{})
		go func() { l.live.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(closeDrain):
			l.closeErr = fmt.Errorf("faults: link %q: connections still draining after %v", l.name, closeDrain)
		}
		l.log.Debug("faults: link closed")
	})
	return l.closeErr
}

// Stats reports what passed the link so far.
func (l *Link) Stats() LinkStats {
	l.smu.Lock()
	open := int64(len(l.sessions))
	l.smu.Unlock()
	return LinkStats{
		Accepted:        l.accepted.Load(),
		Open:            open,
		UpstreamBytes:   l.upBytes.Load(),
		DownstreamBytes: l.downBytes.Load(),
	}
}

// open returns the sessions whose connections faults has not closed.
func (l *Link) open() []*session {
	l.smu.Lock()
	defer l.smu.Unlock()
	ss := make([]*session, 0, len(l.sessions))
	for s := range l.sessions {
		if !s.closed() {
			ss = append(ss, s)
		}
	}
	return ss
}

func (l *Link) closeAll(why string) {
	for _, s := range l.open() {
		s.close(false, why)
	}
}

func (l *Link) forget(s *session) {
	l.smu.Lock()
	delete(l.sessions, s)
	l.smu.Unlock()
	l.live.Done()
}

// serve is the accept loop, in place of Toxiproxy's Proxy.server: faults
// needs the connections, to wrap them and to close both of a session.
func (l *Link) serve() {
	defer close(l.served)
	backoff := 5 * time.Millisecond
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.closed.Load() {
				return
			}
			// Out of file descriptors, say: wait, as net/http does.
			l.log.Warn("faults: accept", "err", err, "retry", backoff)
			select {
			case <-time.After(backoff):
			case <-l.ctx.Done():
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		l.accepted.Add(1)
		l.admit(c.(*net.TCPConn))
	}
}

func (l *Link) admit(client *net.TCPConn) {
	if l.down.Load() {
		reset(client)
		return
	}
	d := net.Dialer{Timeout: dialTimeout, Control: sockbuf.Control}
	c, err := d.DialContext(l.ctx, "tcp", l.upstream)
	if err != nil {
		l.log.Warn("faults: dial upstream", "upstream", l.upstream, "err", err)
		_ = client.Close()
		return
	}
	l.start(client, c.(*net.TCPConn))
}

// start makes a session of client and upstream and starts Toxiproxy's two
// ToxicLinks on it, as ToxicCollection.StartLink would but keeping the
// links: faults adds and removes toxics on them itself.
func (l *Link) start(client, upstream *net.TCPConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.smu.Lock()
	if l.closed.Load() || l.down.Load() {
		l.smu.Unlock()
		reset(client)
		_ = upstream.Close()
		return
	}
	l.nextID++
	s := newSession(l, l.nextID, client, upstream)
	l.sessions[s] = struct{}{}
	l.live.Add(1)
	l.smu.Unlock()

	// Toxiproxy calls NewState for the toxics already in the chains
	// from ToxicLink.Start, on this goroutine.
	for _, a := range l.toxics {
		if b, ok := a.w.Toxic.(binder); ok {
			b.bind(s, a.toxicity)
		}
	}
	name := fmt.Sprintf("%s#%d", l.name, s.id)
	l.startPipe(s, stream.Upstream, name, client, upstream, &l.upBytes)
	l.startPipe(s, stream.Downstream, name, upstream, client, &l.downBytes)
	for _, a := range l.toxics {
		if b, ok := a.w.Toxic.(binder); ok {
			b.bind(nil, 0)
		}
	}
	l.log.Debug("faults: connection", "conn", s.id, "client", client.RemoteAddr().String())
}

// startPipe starts the ToxicLink of one direction, from src to dst.
func (l *Link) startPipe(s *session, dir stream.Direction, name string, src, dst *net.TCPConn, n *atomic.Int64) {
	s.pipes[dir] = toxiproxy.NewToxicLink(l.proxy, l.proxy.Toxics, dir, l.zlog)
	end := new(atomic.Int32)
	s.pipes[dir].Start(toxiServer(), name+"/"+dir.String(), reader{s, src, end}, &writer{s: s, c: dst, bytes: n, srcEnd: end})
}

// reset closes c with RST.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}
