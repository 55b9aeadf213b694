package faults

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
)

// Generous bounds: the suite runs under -race on two cores.
const (
	eventWait = 5 * time.Second // for something that must happen
	slack     = 2 * time.Second // allowed lateness of a timed fault
)

// noLeak fails t if, once t's cleanups have run, more goroutines are left
// than when it was called. Call it first, so that its cleanup runs last.
// Tests that use it must not run in parallel with others.
func noLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(eventWait)
		for {
			n := runtime.NumGoroutine()
			if n <= base {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines left, want at most %d:\n%s", n, base, buf[:runtime.Stack(buf, true)])
				return
			}
			runtime.Gosched()
			time.Sleep(10 * time.Millisecond) // polling, not synchronisation
		}
	})
}

// upstream is a TCP server on loopback whose connections the test drives.
type upstream struct {
	ln    net.Listener
	conns chan *net.TCPConn
	echo  bool
	wg    sync.WaitGroup
}

// newUpstream starts an upstream; with echo, it echoes every connection
// itself instead of handing them to the test.
func newUpstream(t testing.TB, echo bool) *upstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{ln: ln, conns: make(chan *net.TCPConn, 512), echo: echo}
	var mu sync.Mutex
	var all []net.Conn
	u.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			all = append(all, c)
			mu.Unlock()
			if echo {
				u.wg.Go(func() { _, _ = io.Copy(c, c); _ = c.Close() })
				continue
			}
			u.conns <- c.(*net.TCPConn)
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range all {
			_ = c.Close()
		}
		mu.Unlock()
		u.wg.Wait()
	})
	return u
}

func (u *upstream) addr() string { return u.ln.Addr().String() }

// next is the upstream side of the next connection through the link.
func (u *upstream) next(t testing.TB) *net.TCPConn {
	t.Helper()
	select {
	case c := <-u.conns:
		return c
	case <-time.After(eventWait):
		t.Fatal("no connection reached the upstream")
		return nil
	}
}

func newLink(t testing.TB, up string) *Link {
	t.Helper()
	l, err := NewLink(t.Name(), up, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// connect dials l and returns both ends of the session, after a round
// trip that proves it is up.
func connect(t testing.TB, l *Link, u *upstream) (client, server *net.TCPConn) {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	client = c.(*net.TCPConn)
	server = u.next(t)
	send(t, client, server, "hello")
	send(t, server, client, "hello back")
	return client, server
}

// send writes msg on from and expects it on to.
func send(t testing.TB, from, to net.Conn, msg string) {
	t.Helper()
	if _, err := from.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	_ = to.SetReadDeadline(time.Now().Add(eventWait))
	if _, err := io.ReadFull(to, got); err != nil {
		t.Fatalf("read %q: %v", msg, err)
	}
	_ = to.SetReadDeadline(time.Time{})
	if string(got) != msg {
		t.Fatalf("read %q, want %q", got, msg)
	}
}

// end is how a read ended: its error and when.
type end struct {
	err error
	at  time.Time
}

// readEnd reads c until an error, in the background, and reports it. Data
// read is discarded.
func readEnd(c net.Conn, within time.Duration) <-chan end {
	ch := make(chan end, 1)
	_ = c.SetReadDeadline(time.Now().Add(within))
	go func() {
		buf := make([]byte, 1024)
		for {
			if _, err := c.Read(buf); err != nil {
				ch <- end{err, time.Now()}
				return
			}
		}
	}()
	return ch
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func TestDataPassesBothWaysAndIsCounted(t *testing.T) {
	noLeak(t)
	u := newUpstream(t, false)
	l := newLink(t, u.addr())
	client, server := connect(t, l, u)
	up := bytes.Repeat([]byte("u"), 100_000)
	down := bytes.Repeat([]byte("d"), 70_000)
	send(t, client, server, string(up))
	send(t, server, client, string(down))
	_ = client.Close()
	if e := <-readEnd(server, eventWait); e.err != io.EOF {
		t.Fatalf("upstream read after client close: %v, want EOF", e.err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := LinkStats{
		Accepted:        1,
		UpstreamBytes:   int64(len("hello") + len(up)),
		DownstreamBytes: int64(len("hello back") + len(down)),
	}
	if got := l.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestLatencyDelaysAtLeastTheLatency(t *testing.T) {
	noLeak(t)
	u := newUpstream(t, false)
	l := newLink(t, u.addr())
	client, server := connect(t, l, u)
	const latency = 100 * time.Millisecond
	if err := l.Add(Latency(latency.Milliseconds(), 0).On(Upstream)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	send(t, client, server, "slow")
	if took := time.Since(start); took < latency {
		t.Errorf("upstream chunk took %v, want at least %v", took, latency)
	}
	start = time.Now()
	send(t, server, client, "fast") // the downstream stream has no latency
	t.Logf("downstream (no latency) took %v", time.Since(start))
}

func TestIdleTimeoutIsKeptOpenByTrafficInOneDirection(t *testing.T) {
	const timeout = 200 * time.Millisecond
	for _, dir := range []Direction{Upstream, Downstream} {
		t.Run("traffic "+string(dir), func(t *testing.T) {
			noLeak(t)
			u := newUpstream(t, false)
			l := newLink(t, u.addr())
			client, server := connect(t, l, u)
			from, to := client, server
			if dir == Downstream {
				from, to = server, client
			}
			// The toxic sits in the other stream: it watches both.
			other := Downstream
			if dir == Downstream {
				other = Upstream
			}
			if err := l.Add(IdleTimeout(timeout.Milliseconds(), false).On(other)); err != nil {
				t.Fatal(err)
			}
			fromEnd := readEnd(from, time.Hour) // the silent direction
			received := make(chan int, 1)
			go func() {
				n, _ := io.Copy(io.Discard, to)
				received <- int(n)
			}()
			tick := time.NewTicker(timeout / 4)
			defer tick.Stop()
			sent, lastWrite := 0, time.Time{}
			for stop := time.Now().Add(3*timeout + timeout/2); time.Now().Before(stop); {
				<-tick.C
				lastWrite = time.Now()
				if _, err := from.Write([]byte{'.'}); err != nil {
					t.Fatalf("write %d after %v: %v", sent+1, time.Since(stop.Add(-3*timeout-timeout/2)), err)
				}
				sent++
			}
			tick.Stop()
			select {
			case e := <-fromEnd:
				t.Fatalf("the silent direction ended with %v while traffic flowed the other way", e.err)
			default:
			}
			// Now idle: closed, and no earlier than timeout after the last byte.
			e := <-fromEnd
			if e.err != io.EOF {
				t.Fatalf("read after idle: %v, want EOF", e.err)
			}
			if idle := e.at.Sub(lastWrite); idle < timeout || idle > timeout+slack {
				t.Errorf("closed %v after the last byte, want %v to %v", idle, timeout, timeout+slack)
			}
			if n := <-received; n != sent {
				t.Errorf("%d bytes arrived, want %d", n, sent)
			}
		})
	}
}

func TestIdleTimeoutClosesBothSides(t *testing.T) {
	const timeout = 150 * time.Millisecond
	for _, tc := range []struct {
		name  string
		reset bool
		want  func(error) bool
	}{
		{"FIN gives EOF", false, func(err error) bool { return err == io.EOF }},
		{"RST gives ECONNRESET", true, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noLeak(t)
			u := newUpstream(t, false)
			l := newLink(t, u.addr())
			client, server := connect(t, l, u)
			added := time.Now()
			if err := l.Add(IdleTimeout(timeout.Milliseconds(), tc.reset)); err != nil {
				t.Fatal(err)
			}
			clientEnd, serverEnd := readEnd(client, eventWait), readEnd(server, eventWait)
			for side, ch := range map[string]<-chan end{"client": clientEnd, "upstream": serverEnd} {
				e := <-ch
				if !tc.want(e.err) {
					t.Errorf("%s read: %v", side, e.err)
				}
				late := e.at.Sub(added) - timeout
				if late < 0 || late > slack {
					t.Errorf("%s closed %v after the add, want %v to %v", side, e.at.Sub(added), timeout, timeout+slack)
				}
				t.Logf("%s: %v, %v after the timeout (measured from before Add)", side, e.err, late)
			}
			// The session is over once Toxiproxy has drained.
			waitFor(t, "session end", func() bool { return l.Stats().Open == 0 })
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(eventWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, eventWait)
		}
		time.Sleep(time.Millisecond) // polling, not synchronisation
	}
}

func TestHalfOpenDropsEverythingAndClosesNothing(t *testing.T) {
	const window = 100 * time.Millisecond
	noLeak(t)
	u := newUpstream(t, false)
	l := newLink(t, u.addr())
	client, server := connect(t, l, u)
	if err := l.Add(HalfOpen()); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("lost upstream")); err != nil {
		t.Fatalf("client write: %v, want success", err)
	}
	if _, err := server.Write([]byte("lost downstream")); err != nil {
		t.Fatalf("upstream write: %v, want success", err)
	}
	if e := <-readEnd(server, 3*window); !isTimeout(e.err) {
		t.Errorf("upstream read: %v, want a timeout (nothing, not even EOF)", e.err)
	}
	if e := <-readEnd(client, 3*window); !isTimeout(e.err) {
		t.Errorf("client read: %v, want a timeout", e.err)
	}
	// One side goes away: the other must not hear of it.
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if e := <-readEnd(server, 3*window); !isTimeout(e.err) {
		t.Errorf("upstream read after the client closed: %v, want a timeout", e.err)
	}
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v", took)
	}
	if e := <-readEnd(server, eventWait); e.err != io.EOF {
		t.Errorf("upstream read after Close: %v, want EOF", e.err)
	}
	if s := l.Stats(); s.UpstreamBytes != int64(len("hello")) || s.DownstreamBytes != int64(len("hello back")) {
		t.Errorf("Stats() = %+v: dropped bytes were counted as passed", s)
	}
}

func TestHalfOpenRemovedLetsTrafficAndHeldCloseThrough(t *testing.T) {
	const window = 100 * time.Millisecond
	noLeak(t)
	u := newUpstream(t, false)
	l := newLink(t, u.addr())
	client, server := connect(t, l, u)
	if err := l.Add(HalfOpen().Named("cable")); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	if e := <-readEnd(server, 3*window); !isTimeout(e.err) {
		t.Fatalf("upstream read: %v, want a timeout", e.err)
	}
	if err := l.Remove("cable"); err != nil {
		t.Fatal(err)
	}
	send(t, client, server, "back")
	send(t, server, client, "back too")
	// A FIN held while it was silent goes through once it is removed.
	if err := l.Add(HalfOpen().Named("cable")); err != nil {
		t.Fatal(err)
	}
	_ = client.CloseWrite()
	if e := <-readEnd(server, 3*window); !isTimeout(e.err) {
		t.Fatalf("upstream read after the client's FIN: %v, want a timeout", e.err)
	}
	if err := l.Remove("cable"); err != nil {
		t.Fatal(err)
	}
	if e := <-readEnd(server, eventWait); e.err != io.EOF {
		t.Errorf("upstream read once healed: %v, want EOF", e.err)
	}
}

func TestHalfOpenDeliversWhatWasInFlight(t *testing.T) {
	noLeak(t)
	u := newUpstream(t, false)
	l := newLink(t, u.addr())
	client, server := connect(t, l, u)
	if err := l.Add(Latency(300, 0).On(Downstream)); err != nil {
		t.Fatal(err)
	}
	s := l.open()[0]
	before := s.lastRead.Load()
	if _, err := server.Write([]byte("in flight")); err != nil {
		t.Fatal(err)
	}
	// The event: the link has read it (it now waits in the latency toxic).
	waitFor(t, "read by the link", func() bool { return s.lastRead.Load() != before })
	// In the other stream: adding a toxic behind a latency toxic
	// interrupts it, and Toxiproxy's latency then sends its current chunk
	// at once.
	if err := l.Add(HalfOpen().On(Upstream)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("in flight"))
	_ = client.SetReadDeadline(time.Now().Add(eventWait))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "in flight" {
		t.Fatalf("client read %q, %v; want %q", got, err, "in flight")
	}
}

func TestDownCutsAndUpRestores(t *testing.T) {
	noLeak(t)
	u := newUpstream(t, false)
	l := newLink(t, u.addr())
	client, server := connect(t, l, u)
	l.Down()
	if e := <-readEnd(client, eventWait); e.err == nil || isTimeout(e.err) {
		t.Errorf("client read after Down: %v, want the connection closed", e.err)
	}
	if e := <-readEnd(server, eventWait); e.err != io.EOF {
		t.Errorf("upstream read after Down: %v, want EOF", e.err)
	}
	if c, err := net.Dial("tcp", l.Addr()); err == nil {
		e := <-readEnd(c, eventWait)
		_ = c.Close()
		if !errors.Is(e.err, syscall.ECONNRESET) && e.err != io.EOF {
			t.Errorf("a connection made while down read %v, want it reset or closed", e.err)
		}
		t.Logf("dial while down: accepted, then %v", e.err)
	} else {
		t.Logf("dial while down: %v", err)
	}
	l.Up()
	connect(t, l, u)
	if s := l.Stats(); s.Accepted != 3 {
		t.Errorf("Stats().Accepted = %d, want 3", s.Accepted)
	}
}

func TestResetPeer(t *testing.T) {
	for _, when := range []string{"added to an open connection", "added before connecting"} {
		t.Run(when, func(t *testing.T) {
			noLeak(t)
			u := newUpstream(t, false)
			l := newLink(t, u.addr())
			var client, server *net.TCPConn
			if when == "added before connecting" {
				if err := l.Add(ResetPeer(0).On(Upstream)); err != nil {
					t.Fatal(err)
				}
				c, err := net.Dial("tcp", l.Addr())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = c.Close() })
				client, server = c.(*net.TCPConn), u.next(t)
				send(t, server, client, "downstream still passes")
			} else {
				client, server = connect(t, l, u)
				if err := l.Add(ResetPeer(0).On(Upstream)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := client.Write([]byte("trigger")); err != nil {
				t.Fatal(err)
			}
			for side, c := range map[string]net.Conn{"client": client, "upstream": server} {
				if e := <-readEnd(c, eventWait); !errors.Is(e.err, syscall.ECONNRESET) {
					t.Errorf("%s read: %v, want ECONNRESET", side, e.err)
				}
			}
		})
	}
}

func TestSlicerKeepsTheStreamIntact(t *testing.T) {
	noLeak(t)
	u := newUpstream(t, false)
	l := newLink(t, u.addr())
	client, server := connect(t, l, u)
	if err := l.Add(Slicer(4, 3, 0)); err != nil {
		t.Fatal(err)
	}
	var msg strings.Builder
	for i := range 300 {
		fmt.Fprintf(&msg, "%d,", i)
	}
	send(t, server, client, msg.String())
}

func TestAddAndRemoveErrors(t *testing.T) {
	noLeak(t)
	u := newUpstream(t, false)
	l := newLink(t, u.addr())
	for _, bad := range []Toxic{
		{Type: "no_such_toxic"},
		Latency(1, 0).On("sideways"),
		{Type: "latency", Toxicity: 2},
	} {
		if err := l.Add(bad); err == nil {
			t.Errorf("Add(%+v) succeeded", bad)
		}
	}
	if err := l.Add(Latency(1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := l.Add(Latency(2, 0)); !errors.Is(err, toxiproxy.ErrToxicAlreadyExists) {
		t.Errorf("adding latency_downstream twice: %v", err)
	}
	if err := l.Remove("latency_downstream"); err != nil {
		t.Error(err)
	}
	if err := l.Remove("latency_downstream"); !errors.Is(err, toxiproxy.ErrToxicNotFound) {
		t.Errorf("removing it twice: %v", err)
	}
	_ = l.Close()
	if err := l.Add(Latency(1, 0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
}

func TestManyLinksInParallelLeaveNoGoroutine(t *testing.T) {
	noLeak(t)
	u := newUpstream(t, true)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- func() error {
				l, err := NewLink(fmt.Sprintf("case-%d", i), u.addr(), nil)
				if err != nil {
					return err
				}
				c, err := net.Dial("tcp", l.Addr())
				if err != nil {
					return err
				}
				defer c.Close()
				msg := fmt.Sprintf("link %d", i)
				if _, err := c.Write([]byte(msg)); err != nil {
					return err
				}
				got := make([]byte, len(msg))
				_ = c.SetReadDeadline(time.Now().Add(eventWait))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
					return fmt.Errorf("link %d: echo %q, %v", i, got, err)
				}
				return l.Close()
			}()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// BenchmarkIdleTimeoutLateness measures how late after its timeout
// idle_timeout closes an idle connection, as the client sees it (EOF),
// counting from just before Add.
func BenchmarkIdleTimeoutLateness(b *testing.B) {
	const timeout = 20 * time.Millisecond
	u := newUpstream(b, false)
	l, err := NewLink(b.Name(), u.addr(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var late, worst time.Duration
	for i := 0; b.Loop(); i++ {
		client, _ := connect(b, l, u)
		name := fmt.Sprint("idle", i)
		added := time.Now()
		if err := l.Add(IdleTimeout(timeout.Milliseconds(), false).Named(name)); err != nil {
			b.Fatal(err)
		}
		returned := time.Now()
		e := <-readEnd(client, eventWait)
		if e.err != io.EOF {
			b.Fatal(e.err)
		}
		d := e.at.Sub(added) - timeout
		if d > 50*time.Millisecond {
			b.Logf("Add took %v; late after Add returned: %v", returned.Sub(added), e.at.Sub(returned)-timeout)
		}
		late += d
		worst = max(worst, d)
		if d > 50*time.Millisecond {
			b.Logf("iteration %d: %v late", i, d)
		}
		if err := l.Remove(name); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(late.Microseconds())/float64(b.N), "late-µs/op")
	b.ReportMetric(float64(worst.Microseconds()), "worst-late-µs")
}

// Toxiproxy's own timeout, reset_peer and limit_data leave two goroutines
// per connection that still has data coming when they close it; faults'
// adapters drain.
func TestClosingToxicsUnderTrafficLeaveNoGoroutine(t *testing.T) {
	for _, tc := range []struct {
		toxic Toxic
		every time.Duration // between writes; 0: back to back
	}{
		{ResetPeer(0), 0},
		{ResetPeer(20), 0},
		{LimitData(5000), 0},
		// timeout restarts its timer on every chunk it drops: it only
		// fires in a gap.
		{Timeout(20), 40 * time.Millisecond},
	} {
		t.Run(tc.toxic.Type+fmt.Sprint(tc.toxic.Attributes), func(t *testing.T) {
			noLeak(t)
			u := newUpstream(t, false)
			l := newLink(t, u.addr())
			client, server := connect(t, l, u)
			go func() { _, _ = io.Copy(io.Discard, server) }()
			writing := make(chan error, 1)
			go func() {
				buf := make([]byte, 512)
				var tick <-chan time.Time
				if tc.every > 0 {
					ticker := time.NewTicker(tc.every)
					defer ticker.Stop()
					tick = ticker.C
				}
				for {
					if tick != nil {
						<-tick
					}
					for range 20 {
						if _, err := client.Write(buf); err != nil {
							writing <- err
							return
						}
					}
				}
			}()
			// Traffic flows: the link has passed some of it.
			waitFor(t, "traffic", func() bool { return l.Stats().UpstreamBytes > 10_000 })
			if err := l.Add(tc.toxic.On(Upstream)); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-writing:
				t.Logf("client write: %v", err)
			case <-time.After(eventWait):
				t.Fatal("the connection was not closed")
			}
		})
	}
}

// TestEndsPassAsTheyCame: a peer's RST reaches the other side as a RST and
// its FIN as a FIN, in each direction, and after a FIN the other direction
// still carries data (a half-close, as a close handshake after it needs).
// Before, every end reached the other side as a FIN of both directions,
// so the suite could not tell a proxy's reset of its API server from a
// plain close.
func TestEndsPassAsTheyCame(t *testing.T) {
	// endsOf connects through a new link and returns the side that ends
	// (from) and the other (to), for dir.
	endsOf := func(t *testing.T, dir string) (l *Link, from, to *net.TCPConn) {
		noLeak(t)
		u := newUpstream(t, false)
		l = newLink(t, u.addr())
		client, server := connect(t, l, u)
		if dir == "upstream to client" {
			return l, server, client
		}
		return l, client, server
	}
	for _, dir := range []string{"client to upstream", "upstream to client"} {
		t.Run(dir+"/RST", func(t *testing.T) {
			_, from, to := endsOf(t, dir)
			reset := readEnd(to, eventWait)
			if err := from.SetLinger(0); err != nil {
				t.Fatal(err)
			}
			_ = from.Close()
			if e := <-reset; !errors.Is(e.err, syscall.ECONNRESET) {
				t.Errorf("the other side's read: %v, want ECONNRESET", e.err)
			}
		})
		t.Run(dir+"/FIN", func(t *testing.T) {
			l, from, to := endsOf(t, dir)
			if err := from.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			_ = to.SetReadDeadline(time.Now().Add(eventWait))
			if n, err := to.Read(make([]byte, 8)); n != 0 || !errors.Is(err, io.EOF) {
				t.Fatalf("the other side's read: %d bytes, %v, want EOF", n, err)
			}
			send(t, to, from, "an answer after the FIN")
			_ = to.Close()
			if e := <-readEnd(from, eventWait); !errors.Is(e.err, io.EOF) {
				t.Errorf("after the other side's close: %v, want EOF", e.err)
			}
			waitFor(t, "the link to forget the connection", func() bool { return l.Stats().Open == 0 })
		})
	}
}
