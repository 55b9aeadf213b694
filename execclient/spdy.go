package execclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/execconform/execconform/execproto"
)

// SPDYConn is one exec session over SPDY/3.1 seen from the client, as
// client-go's SPDY executor opens it (k8s.io/client-go/tools/remotecommand:
// spdy.go and the v2/v3/v4 stream protocols): an upgrade offering stream
// protocol versions, then one stream per exec stream, created by the
// client in client-go's order (error, stdin, stdout, stderr unless tty,
// resize on a tty from v3). The wire is k8s.io/streaming's httpstream/spdy
// (github.com/moby/spdystream under it) over a connection the client
// dials itself, so that it can end it every way a client can: cleanly
// (RST_STREAM of its streams and GOAWAY, as client-go's deferred Close
// does), with a TCP FIN and nothing else, with a RST, or by going silent.
//
// Its methods are safe for concurrent use. Done is closed once the
// connection is over and every reader goroutine has returned.
type SPDYConn struct {
	conn    httpstream.Connection
	tcp     *net.TCPConn
	tap     *spdyTap
	resp    *http.Response
	proto   execproto.Protocol
	opts    Options
	log     *slog.Logger
	start   time.Time
	streams map[byte]httpstream.Stream // set by DialSPDY, then read only

	wmu sync.Mutex // one writer at a time on the streams

	killed  chan struct{} // closed by AbortTCP, Reset or Freeze's end
	done    chan struct{}
	readers sync.WaitGroup

	mu          sync.Mutex
	changed     chan struct{}
	out         []byte
	outTotal    int64
	cursor      int64
	status      []byte
	statusEnded bool // the error stream ended
	kill        killKind
	killErr     error
	closed      bool // Close sent GOAWAY
	tcpClosed   bool
	ended       bool
	end         End
}

var _ Session = (*SPDYConn)(nil)

// spdyTap sits under spdystream: it feeds the trace, remembers how reading
// ended, and parks the reader for Freeze.
type spdyTap struct {
	net.Conn
	r       io.Reader // the upgrade response's reader, then the connection
	trace   Trace
	frozen  atomic.Bool
	killed  <-chan struct{}
	parked  chan struct{}
	parkOne sync.Once
	readErr atomic.Pointer[error]
}

func (t *spdyTap) Read(b []byte) (int, error) {
	if t.frozen.Load() {
		t.park()
		return 0, ErrFrozen
	}
	n, err := t.r.Read(b)
	if n > 0 && t.trace != nil && !t.frozen.Load() {
		t.trace.Received(b[:n])
	}
	if err != nil {
		if t.frozen.Load() {
			t.park()
			return n, ErrFrozen
		}
		t.readErr.CompareAndSwap(nil, &err)
	}
	return n, err
}

// park holds a frozen reader until the connection is cut.
func (t *spdyTap) park() {
	t.parkOne.Do(func() { close(t.parked) })
	<-t.killed
}

func (t *spdyTap) Write(b []byte) (int, error) {
	if t.frozen.Load() {
		return 0, ErrFrozen
	}
	if t.trace != nil {
		t.trace.Sent(b)
	}
	return t.Conn.Write(b)
}

// err is the error that ended reading, nil if none did (spdystream stopped
// reading at the peer's GOAWAY).
func (t *spdyTap) err() error {
	if p := t.readErr.Load(); p != nil {
		return *p
	}
	return nil
}

// DialSPDY opens a SPDY exec session to url (http(s)://, or ws(s)://
// taken as http(s)), offering opts.RawProtocols verbatim (one header line
// each) or opts.Protocols, by default execproto.ClientGoSPDYOffer, and
// creates the streams the URL's stdin, stdout, stderr and tty ask for, in
// client-go's order. The handshake and the streams' creation are bounded
// by ctx and opts.HandshakeTimeout. A refused upgrade gives a
// *HandshakeError. opts.Trace, if it is a TransportTrace, is started with
// TransportSPDY and then gets every byte after the upgrade response (a
// plain Trace gets nothing: it would read SPDY as WebSocket frames).
func DialSPDY(ctx context.Context, rawURL string, opts Options) (*SPDYConn, error) {
	opts = opts.withDefaults()
	start := time.Now()
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("execclient: dial %s: %w", rawURL, err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("execclient: dial %s: scheme %q is not http(s)", rawURL, u.Scheme)
	}
	q := u.Query()
	flag := func(k string) bool { return q.Get(k) == "true" || q.Get(k) == "1" }

	hctx, cancel := context.WithTimeout(ctx, opts.HandshakeTimeout)
	defer cancel()
	ds := &dialState{tlsConfig: opts.TLSConfig}
	stop := context.AfterFunc(hctx, ds.abort)
	c, err := dialSPDY(hctx, ds, u, opts, start)
	if !stop() && err == nil {
		err = hctx.Err()
		c.cutNow()
	}
	if err != nil {
		ds.closeTCP()
		opts.Logger.Debug("execclient: SPDY dial failed", "url", redactURL(u), "err", err)
		return nil, fmt.Errorf("execclient: dial %s: %w", redactURL(u), err)
	}
	if err := c.createStreams(flag("stdin"), flag("stdout"), flag("stderr"), flag("tty")); err != nil {
		c.cutNow()
		<-c.done
		return nil, fmt.Errorf("execclient: dial %s: %w", redactURL(u), err)
	}
	opts.Logger.Debug("execclient: SPDY connected", "url", redactURL(u), "protocol", c.proto.String(), "local", c.tcp.LocalAddr().String())
	return c, nil
}

// redactURL drops a URL's user info, for messages.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// dialSPDY does the TCP, TLS and upgrade part of DialSPDY.
func dialSPDY(ctx context.Context, ds *dialState, u *url.URL, opts Options, start time.Time) (*SPDYConn, error) {
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	var raw net.Conn
	var err error
	if u.Scheme == "https" {
		raw, err = ds.dialTLS(ctx, "tcp", host)
	} else {
		raw, err = ds.dial(ctx, "tcp", host)
	}
	if err != nil {
		return nil, err
	}
	// ds wraps the connection in a recConn (for gorilla); SPDY reads it
	// itself.
	if rc, ok := raw.(*recConn); ok {
		raw = rc.Conn
	}

	req := &http.Request{Method: http.MethodPost, URL: u, Host: u.Host, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	for k, vs := range opts.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", execproto.SPDYUpgrade)
	offer := spdyOfferOf(opts)
	for _, v := range offer {
		req.Header.Add(execproto.HeaderProtocolVersion, v)
	}
	if err := req.Write(raw); err != nil {
		return nil, err
	}
	br := bufio.NewReader(raw)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), execproto.SPDYUpgrade) {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxHandshakeBody))
		return nil, &HandshakeError{StatusCode: resp.StatusCode, Header: resp.Header, Body: string(body)}
	}
	proto := execproto.Protocol(resp.Header.Get(execproto.HeaderProtocolVersion))
	if opts.StrictProtocol && !slices.Contains(offer, string(proto)) {
		return nil, fmt.Errorf("%w: %q answered to %v", ErrProtocolMismatch, proto, offer)
	}
	_ = raw.SetDeadline(time.Time{})
	c := &SPDYConn{
		tcp: ds.tcp, resp: resp, proto: proto, opts: opts, log: opts.Logger, start: start,
		streams: map[byte]httpstream.Stream{},
		killed:  make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{}),
		end: End{ServerCloseCode: -1},
	}
	c.tap = &spdyTap{Conn: raw, r: br, killed: c.killed, parked: make(chan struct{})}
	if tt, ok := opts.Trace.(TransportTrace); ok {
		tt.StartTransport(execproto.TransportSPDY, proto)
		c.tap.trace = tt
	}
	conn, err := spdy.NewClientConnection(c.tap)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	go c.watch()
	return c, nil
}

// spdyOfferOf is the versions DialSPDY offers.
func spdyOfferOf(o Options) []string {
	if o.RawProtocols != nil {
		return o.RawProtocols
	}
	var names []string
	for _, p := range o.Protocols {
		if p != execproto.ProtocolNone {
			names = append(names, string(p))
		}
	}
	if len(names) == 0 {
		return slices.Clone(execproto.ClientGoSPDYOffer)
	}
	return names
}

// createStreams creates the exec streams as client-go's v2, v3 and v4
// protocols do: error first, then stdin, stdout, stderr (not with a tty),
// resize (a tty, from v3); each waits for the server's reply.
func (c *SPDYConn) createStreams(stdin, stdout, stderr, tty bool) error {
	type want struct {
		stream byte
		on     bool
	}
	resize := tty && c.proto != execproto.SPDYProtocolV1 && c.proto != execproto.SPDYProtocolV2
	for _, w := range []want{
		{execproto.StreamError, true},
		{execproto.StreamStdin, stdin},
		{execproto.StreamStdout, stdout},
		{execproto.StreamStderr, stderr && !tty},
		{execproto.StreamResize, resize},
	} {
		if !w.on {
			continue
		}
		h := http.Header{}
		h.Set(execproto.HeaderStreamType, execproto.StreamType(w.stream))
		st, err := c.conn.CreateStream(h)
		if err != nil {
			return fmt.Errorf("create the %s stream: %w", execproto.StreamType(w.stream), err)
		}
		c.streams[w.stream] = st
		switch w.stream {
		case execproto.StreamStdout, execproto.StreamStderr:
			c.readers.Add(1)
			go c.readOutput(st)
		case execproto.StreamError:
			c.readers.Add(1)
			go c.readStatus(st)
		}
	}
	return nil
}

func (c *SPDYConn) readOutput(st httpstream.Stream) {
	defer c.readers.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := st.Read(buf)
		if n > 0 {
			c.mu.Lock()
			c.out = append(c.out, buf[:n]...)
			c.outTotal += int64(n)
			if len(c.out) > 2*MaxOutput {
				c.out = append([]byte(nil), c.out[len(c.out)-MaxOutput:]...)
			}
			c.notify()
			c.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// readStatus reads the error stream to its end: its content is the status.
func (c *SPDYConn) readStatus(st httpstream.Stream) {
	defer c.readers.Done()
	b, _ := io.ReadAll(io.LimitReader(st, MaxMessage))
	c.mu.Lock()
	if len(b) > 0 {
		c.status = b
	}
	c.statusEnded = true
	c.notify()
	c.mu.Unlock()
}

// MaxMessage bounds the status read from a SPDY error stream.
const MaxMessage = 64 << 10

// watch waits for the connection's end (spdystream's reader returned: the
// server's GOAWAY, the TCP connection's end, or a local cut), fixes End,
// waits (bounded) for the server to close TCP, and closes done.
func (c *SPDYConn) watch() {
	<-c.conn.CloseChan()
	c.readers.Wait()
	readErr := c.tap.err()
	c.mu.Lock()
	end := End{ServerCloseCode: -1, At: c.since()}
	kill := c.kill
	switch {
	case kill != killNone:
		end.Err = c.killErr
	case readErr == nil:
		end.GoAway = true // spdystream stopped at the server's GOAWAY
	default:
		end.Err = readErr
	}
	c.end, c.ended = end, true
	c.notify()
	tcpClosed := c.tcpClosed
	c.mu.Unlock()
	c.log.Debug("execclient: SPDY ended", "end", end.String())

	if !tcpClosed && (kill == killAbort || end.GoAway) {
		// Like a browser, wait a while for the server to close TCP.
		if kill != killAbort {
			_ = c.tcp.SetReadDeadline(time.Now().Add(c.opts.CloseWait))
		}
		buf := make([]byte, 4096)
		for {
			if _, err := c.tcp.Read(buf); err != nil {
				break
			}
		}
	}
	c.mu.Lock()
	if !c.tcpClosed {
		c.tcpClosed = true
		_ = c.tcp.Close()
	}
	c.mu.Unlock()
	close(c.done)
}

func (c *SPDYConn) since() time.Duration { return time.Since(c.start) }

func (c *SPDYConn) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *SPDYConn) wait(ctx context.Context, cond func() bool) error {
	for {
		c.mu.Lock()
		if cond() {
			c.mu.Unlock()
			return nil
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Transport is TransportSPDY.
func (c *SPDYConn) Transport() execproto.Transport { return execproto.TransportSPDY }

// Protocol is the version the server answered (X-Stream-Protocol-Version).
func (c *SPDYConn) Protocol() execproto.Protocol { return c.proto }

// Response is the upgrade response.
func (c *SPDYConn) Response() *http.Response { return c.resp }

// Started is when DialSPDY was called.
func (c *SPDYConn) Started() time.Time { return c.start }

// Done is closed when the connection is over.
func (c *SPDYConn) Done() <-chan struct{} { return c.done }

// End tells how the connection ended: End.GoAway when the server said
// GOAWAY, else Err (io.EOF for its FIN, ECONNRESET for its RST, or
// ErrAborted, ErrReset, ErrClosed for the client's own ends).
func (c *SPDYConn) End() End {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.end
}

// LocalAddr is the client's address.
func (c *SPDYConn) LocalAddr() net.Addr { return c.tcp.LocalAddr() }

// ErrClosed is End.Err after Close: the client ended the session itself.
var ErrClosed = errors.New("execclient: closed by Close (GOAWAY)")

// Close ends the session as client-go does when its stream ends or its
// context is cancelled: RST_STREAM of every stream and GOAWAY
// (httpstream's Connection.Close), then the TCP close once spdystream has
// shut down; it waits for that, bounded by ctx (then it resets TCP). code
// and reason are unused.
func (c *SPDYConn) Close(ctx context.Context, code int, reason string) (*CloseResult, error) {
	began := time.Now()
	c.mu.Lock()
	if c.ended || c.kill != killNone || c.closed {
		c.mu.Unlock()
		return nil, ErrEnded
	}
	c.closed = true
	c.kill, c.killErr = killForce, ErrClosed
	c.mu.Unlock()
	c.wmu.Lock()
	err := c.conn.Close()
	c.wmu.Unlock()
	res := &CloseResult{ReplyCode: -1}
	select {
	case <-c.done:
	case <-ctx.Done():
		_ = c.cut(killReset, ErrReset)
		<-c.done
		err = errors.Join(err, ctx.Err())
	}
	res.Elapsed = time.Since(began)
	return res, err
}

// AbortTCP closes the client's side of TCP (FIN) and nothing else: no
// GOAWAY, no stream ends. The server's streams are read until it closes
// TCP, at most Options.CloseWait.
func (c *SPDYConn) AbortTCP() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tcpClosed || c.ended || c.kill != killNone {
		return ErrEnded
	}
	derr := c.tcp.SetReadDeadline(time.Now().Add(c.opts.CloseWait))
	werr := c.tcp.CloseWrite()
	c.markKilled(killAbort, ErrAborted)
	return errors.Join(derr, werr)
}

// Reset ends TCP with a RST.
func (c *SPDYConn) Reset() error { return c.cut(killReset, ErrReset) }

func (c *SPDYConn) cut(kind killKind, err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tcpClosed {
		return ErrEnded
	}
	c.tcpClosed = true
	if c.kill == killNone || c.kill == killForce {
		c.markKilled(kind, err)
	}
	if kind == killReset {
		if lerr := c.tcp.SetLinger(0); lerr != nil {
			_ = c.tcp.Close()
			return lerr
		}
	}
	return c.tcp.Close()
}

// cutNow resets a connection DialSPDY gives up on.
func (c *SPDYConn) cutNow() { _ = c.cut(killReset, ErrReset) }

// markKilled records a local cut. c.mu must be held.
func (c *SPDYConn) markKilled(kind killKind, err error) {
	c.kill, c.killErr = kind, err
	select {
	case <-c.killed:
	default:
		close(c.killed)
	}
	c.notify()
}

// Freeze makes the client go silent: it stops reading (the server's
// writes back up) and writing (Send fails with ErrFrozen). Only AbortTCP
// or Reset end a frozen connection.
func (c *SPDYConn) Freeze() {
	c.mu.Lock()
	if c.ended || c.kill != killNone {
		c.mu.Unlock()
		return
	}
	c.tap.frozen.Store(true)
	_ = c.tcp.SetReadDeadline(time.Unix(1, 0)) // interrupt a blocked read
	c.mu.Unlock()
	select {
	case <-c.tap.parked:
	case <-c.done:
	}
}

// ErrNoStream: the session has no stream of that kind.
var ErrNoStream = errors.New("execclient: no such stream in this session")

// Send writes data on the stream of exec channel stream.
func (c *SPDYConn) Send(stream byte, data []byte) error {
	st, ok := c.streams[stream]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoStream, execproto.StreamType(stream))
	}
	if err := c.writable(); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := st.Write(data)
	return err
}

func (c *SPDYConn) writable() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.tap.frozen.Load():
		return ErrFrozen
	case c.ended || c.kill != killNone || c.closed:
		return ErrEnded
	}
	return nil
}

// Type sends s on stdin.
func (c *SPDYConn) Type(s string) error { return c.Send(execproto.StreamStdin, []byte(s)) }

// Resize sends a terminal size on the resize stream (JSON TerminalSize).
func (c *SPDYConn) Resize(width, height uint16) error {
	b, err := json.Marshal(execproto.TerminalSize{Width: width, Height: height})
	if err != nil {
		return err
	}
	return c.Send(execproto.StreamResize, b)
}

// CloseStdin half-closes the stdin stream (a DATA frame with FIN), as
// client-go does when its stdin reader returns EOF.
func (c *SPDYConn) CloseStdin() error {
	st, ok := c.streams[execproto.StreamStdin]
	if !ok {
		return fmt.Errorf("%w: stdin", ErrNoStream)
	}
	if err := c.writable(); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return st.Close()
}

// Expect waits until substr appears in stdout+stderr after the previous
// match, as Conn.Expect does.
func (c *SPDYConn) Expect(ctx context.Context, substr string) error {
	want := []byte(substr)
	var from int64
	found := false
	err := c.wait(ctx, func() bool {
		base := c.outTotal - int64(len(c.out))
		from = max(from, c.cursor, base)
		if i := bytes.Index(c.out[from-base:], want); i >= 0 {
			c.cursor = from + int64(i) + int64(len(want))
			found = true
			return true
		}
		from = max(from, c.outTotal-int64(len(want))+1)
		return c.ended
	})
	if found {
		return nil
	}
	c.mu.Lock()
	t, end := string(tail(c.out, tailLen)), c.end
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("execclient: Expect %q: %w; output tail: %q", substr, err, t)
	}
	return fmt.Errorf("execclient: Expect %q: %w (%s); output tail: %q", substr, ErrEnded, end, t)
}

// Status waits for the error stream's end and parses what it carried:
// v4's JSON status, or before v4 a failure's text (nothing is success:
// ok false). After AbortTCP or Reset it answers at once.
func (c *SPDYConn) Status(ctx context.Context) (execproto.Status, bool, error) {
	err := c.wait(ctx, func() bool { return c.statusEnded || c.ended || c.kill == killAbort || c.kill == killReset })
	if err != nil {
		return execproto.Status{}, false, fmt.Errorf("execclient: Status: %w", err)
	}
	c.mu.Lock()
	raw := c.status
	c.mu.Unlock()
	if raw == nil {
		return execproto.Status{}, false, nil
	}
	s, err := execproto.ParseStatus(c.proto, raw)
	return s, true, err
}

// Output is the tail of stdout+stderr received so far.
func (c *SPDYConn) Output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(tail(c.out, MaxOutput))
}
