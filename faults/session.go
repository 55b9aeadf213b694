package faults

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"

	"github.com/execconform/execconform/internal/tcpreset"
)

// session is one client connection through a Link with its upstream
// connection, and the state that both directions share.
//
// Toxiproxy v2.12 has nothing of the kind: a toxic sees only its
// ToxicStub, one direction of one connection, and NewState takes no
// argument (bidirectional toxics, Shopify/toxiproxy#132, were never
// merged). So faults runs the accept loop itself, hands Toxiproxy wrapped
// connections, and tells its own toxics which session they are in through
// binding.
//
//	client --> reader{client} --> ToxicLink Upstream   --> writer{upstream} --> upstream
//	client <-- writer{client} <-- ToxicLink Downstream <-- reader{upstream} <-- upstream
//
//	readers: stamp the last byte read; under half_open, drop and hold the end;
//	         note whether the end was the peer's RST or its FIN
//	writers: count bytes; once a write failed, discard so that chains drain;
//	         at the end pass the source's RST on as a RST, its FIN as a FIN
//	         (a half-close: the other direction goes on until it ends too)
//	toxics:  find their session through binding, in NewState
type session struct {
	link     *Link
	id       uint64
	born     time.Time
	client   *net.TCPConn
	upstream *net.TCPConn
	pipes    [stream.NumDirections]*toxiproxy.ToxicLink

	lastRead atomic.Int64 // time.Since(born) of the last byte read from either side

	closeOnce sync.Once
	done      chan struct{} // closed once faults has closed both connections

	mu       sync.Mutex
	silenced int           // half_open toxics engaged
	spoken   chan struct{} // closed (and replaced) when silenced falls to 0
	lingers  int           // reset toxics that want SO_LINGER 0

	ended atomic.Int32 // Toxiproxy write loops that have closed their destination

	// writes watches the writes to each connection (client, upstream) for
	// the peer's RST, which Linux reports once: to the write, when it takes
	// it, and then a read of the same connection sees EOF.
	clientWrites, upstreamWrites *tcpreset.Watch
}

func newSession(l *Link, id uint64, client, upstream *net.TCPConn) *session {
	return &session{
		link:     l,
		id:       id,
		born:     time.Now(),
		client:   client,
		upstream: upstream,
		done:     make(chan struct{}),
		spoken:   make(chan struct{}),

		clientWrites:   tcpreset.New(),
		upstreamWrites: tcpreset.New(),
	}
}

// writes is the Watch of c, one of the session's connections.
func (s *session) writes(c *net.TCPConn) *tcpreset.Watch {
	if c == s.client {
		return s.clientWrites
	}
	return s.upstreamWrites
}

// touch records a byte read from either side: activity for idle_timeout.
func (s *session) touch() { s.lastRead.Store(int64(time.Since(s.born))) }

// lastActivity is when a byte was last read from either side, or when the
// session began.
func (s *session) lastActivity() time.Time {
	return s.born.Add(time.Duration(s.lastRead.Load()))
}

func (s *session) silent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.silenced > 0
}

// silence engages (+1) or releases (-1) a half_open toxic.
func (s *session) silence(delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silenced += delta
	if s.silenced == 0 {
		close(s.spoken)
		s.spoken = make(chan struct{})
	}
}

// holdEnd keeps the end of a read stream (the peer's FIN or RST) from
// reaching Toxiproxy while half_open is engaged, so that the other side
// sees nothing; it lets it through once half_open is removed or the session
// is closed.
func (s *session) holdEnd(err error) error {
	for {
		s.mu.Lock()
		silenced, spoken := s.silenced > 0, s.spoken
		s.mu.Unlock()
		if !silenced {
			return err
		}
		select {
		case <-spoken:
		case <-s.done:
			return err
		}
	}
}

// linger takes (+1) or releases (-1) SO_LINGER 0 on both connections, so
// that closing them sends RST.
func (s *session) linger(delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lingers += delta
	switch {
	case delta > 0 && s.lingers == 1:
		s.setLinger(0)
	case delta < 0 && s.lingers == 0:
		s.setLinger(-1)
	}
}

func (s *session) setLinger(sec int) {
	// Fails only once a connection is closed, when it no longer matters.
	_ = s.client.SetLinger(sec)
	_ = s.upstream.SetLinger(sec)
}

// close closes both connections, with RST if reset, and makes the writers
// discard what Toxiproxy still has in its chains so that they drain.
func (s *session) close(reset bool, why string) {
	s.closeOnce.Do(func() {
		close(s.done)
		if reset {
			s.setLinger(0)
		}
		_ = s.client.Close()
		_ = s.upstream.Close()
		s.link.log.Debug("faults: connection closed", "conn", s.id, "why", why, "reset", reset)
	})
}

func (s *session) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// destClosed is called by each direction's Toxiproxy write loop when it
// closes its destination; after both, the session is over.
func (s *session) destClosed() {
	if s.ended.Add(1) == 2 {
		s.close(false, "ended")
		s.link.forget(s)
	}
}

// reader is a connection as a Toxiproxy ToxicLink reads it.
type reader struct {
	s *session
	c *net.TCPConn
	// end is how the connection's read side ended (srcFIN, srcRST; the
	// RST seen by this read, or by a write of the other direction at the
	// same moment): the same direction's writer passes it on.
	end *atomic.Int32
}

// How a reader's source ended (reader.end).
const (
	srcOpen int32 = iota // not ended by the peer: a toxic or faults ended the stream
	srcFIN
	srcRST
)

func (r reader) Read(p []byte) (int, error) {
	for {
		n, err := r.c.Read(p)
		if n > 0 {
			r.s.touch()
			if !r.s.silent() {
				return n, err
			}
			// half_open: dropped, as by a pulled cable.
		}
		if err != nil {
			switch {
			case tcpreset.IsReset(err) || r.s.writes(r.c).TookReset():
				r.end.Store(srcRST)
			case errors.Is(err, io.EOF):
				r.end.Store(srcFIN)
			}
			// Otherwise faults closed it (a toxic, the session's end): the
			// other side is closed as Toxiproxy would.
			return 0, r.s.holdEnd(err)
		}
	}
}

// writer is a connection as a Toxiproxy ToxicLink writes to it. Once a
// write fails it discards: Toxiproxy's write loop would otherwise stop
// reading its chain and leave the toxics before it blocked forever.
type writer struct {
	s      *session
	c      *net.TCPConn
	bytes  *atomic.Int64
	failed bool // only the write loop's goroutine uses it
	// srcEnd is the reader's note of the same direction: how the source
	// ended.
	srcEnd *atomic.Int32
}

func (w *writer) Write(p []byte) (int, error) {
	if !w.failed {
		n, err := w.s.writes(w.c).Write(func() (int, error) { return w.c.Write(p) })
		w.bytes.Add(int64(n))
		if err == nil {
			return n, nil
		}
		// As Toxiproxy does on a failed write: close the destination, so
		// that the other direction ends too.
		w.failed = true
		_ = w.c.Close()
	}
	return len(p), nil
}

// Close ends the destination as the source ended: a RST as a RST (what a
// proxy's reset does to its API server, unread data dropped), a FIN as a
// FIN, which shuts only this direction so that the peer can still answer
// (a close handshake after a half-close). A stream that a toxic ended
// (limit_data, timeout, reset_peer) closes the destination, as in
// Toxiproxy (with RST under reset_peer's SO_LINGER 0). The session closes
// both connections once both directions have ended.
func (w *writer) Close() error {
	switch w.srcEnd.Load() {
	case srcRST:
		reset(w.c)
	case srcFIN:
		_ = w.c.CloseWrite()
	default:
		_ = w.c.Close()
	}
	w.s.destClosed()
	return nil
}

// binder is implemented by the toxics that act on the session, which
// NewState (called by Toxiproxy with no argument) must return.
type binder interface {
	bind(s *session, toxicity float32)
}

// binding tells a toxic the session that NewState is being called for.
// Toxiproxy calls NewState synchronously from ToxicLink.Start and
// ToxicLink.AddToxic, and faults makes those calls with Link.mu held,
// right after bind: so the session set here is the one being attached.
type binding struct {
	next     *session
	toxicity float32
}

func (b *binding) bind(s *session, toxicity float32) { b.next, b.toxicity = s, toxicity }

// session returns the session being attached, or nil outside a faults.Link
// (in a plain Toxiproxy server) or, if roll, when the toxicity draw says
// that this connection is spared.
func (b *binding) session(roll bool) *session {
	if b.next == nil || roll && b.toxicity < 1 && rand.Float32() >= b.toxicity {
		return nil
	}
	return b.next
}
