package execclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/execconform/execconform/execproto"
)

// SPDYConn is one exec session over SPDY/3.1 seen from the client, driven
// the way client-go's remotecommand SPDY executor drives it (kubectl exec
// before 1.31, and its fallback since): an HTTP upgrade, then one SPDY
// stream per exec stream, created in client-go's order. Its methods are
// safe for concurrent use.
//
// The data path, from the socket up:
//
//	*net.TCPConn ── [TLS] ── spdyWire ── httpstream/spdy (moby/spdystream) ── streams
//	 AbortTCP,               Trace,       frames, GOAWAY,                     error, stdin,
//	 Reset act here          Freeze,      stream resets                       stdout, stderr,
//	                         GOAWAY watch                                     resize
//
// The SPDY framing is the library's; spdyWire only watches the bytes: it
// feeds the Trace, parks the library's reader for Freeze, and parses a
// copy of what the server sends to learn of a GOAWAY. The socket is only
// ever closed by SPDYConn itself (the library's Close of the connection is
// ignored), so that every ending can wait for the server's side as Conn
// does. No pings are sent (client-go pings every 5 s).
type SPDYConn struct {
	conn    httpstream.Connection
	wire    *spdyWire
	resp    *http.Response
	proto   execproto.Protocol
	opts    Options
	log     *slog.Logger
	start   time.Time
	streams spdyStreams // set before DialSPDY returns, then only read

	closeByClose atomic.Bool // Close sent the GOAWAY
	stdinOnce    sync.Once   // the stdin stream is half-closed once
	stdinErr     error       // what that half-close returned

	parkOnce sync.Once
	readers  sync.WaitGroup // the stream readers

	sessionState        // mu guards it and the fields below
	errData      []byte // what the error stream carried (at most MaxMessageSize bytes)
	errDone      bool   // the error stream reached its end
	goAway       bool   // the server sent GOAWAY
	goAwayAt     time.Duration
	wireErr      error // the first read error under the library
	wireErrAt    time.Duration
	frameErr     error // the server's bytes do not parse as SPDY
	peerFIN      bool  // the server closed TCP (we read EOF)
	peerRST      bool  // the server reset TCP
	finished     bool  // the socket is closed; done is about to close
}

var _ Session = (*SPDYConn)(nil)

// spdyStreams are a session's streams by exec channel (execproto.Stream*);
// nil where the session has none.
type spdyStreams [execproto.NumStreams]httpstream.Stream

// Errors of DialSPDY and of writes on a SPDYConn.
var (
	// ErrNoStream: the session has no stream for that exec channel (the
	// URL did not ask for it, or the version has none, or it is not one).
	ErrNoStream = errors.New("execclient: no such stream in this session")
	// errKilled is what the library reads once the client cut the connection.
	errKilled = errors.New("execclient: connection cut by the client")
)

// DialSPDY opens an exec session over SPDY/3.1 to url, as client-go does:
// a POST with Connection: Upgrade, Upgrade: SPDY/3.1 and one
// X-Stream-Protocol-Version line per offered version (Options.Protocols,
// or Options.RawProtocols verbatim, or by default
// execproto.ClientGoSPDYOffer), plus Options.Header. http(s) URLs are
// dialled as they are, ws(s) ones as http(s). After the 101 it creates the
// streams the URL's query asks for, in client-go's order, each waiting for
// the server's reply: error; stdin if stdin=true; stdout if stdout=true;
// stderr if stderr=true and not tty=true; resize if tty=true from v3 on.
// Then it reads stdout and stderr into Output, and the error stream to its
// end for Status.
//
// The upgrade and the stream creation are bounded by ctx and
// Options.HandshakeTimeout; ctx does not matter after DialSPDY returns.
// A refused upgrade gives a *HandshakeError. With Options.StrictProtocol an
// answer that was not offered fails with ErrProtocolMismatch. No proxy
// from the environment is used.
//
// If Options.Trace is a TransportTrace it gets
// StartTransport(execproto.TransportSPDY, Protocol()) and then every byte
// above TLS after the 101, both ways. A Trace that only has Start gets
// nothing: it would read SPDY frames as WebSocket ones.
func DialSPDY(ctx context.Context, url string, opts Options) (*SPDYConn, error) {
	opts = opts.withDefaults()
	start := time.Now()
	c, err := dialSPDY(ctx, url, opts, start)
	if err != nil {
		opts.Logger.Debug("execclient: SPDY dial failed", "url", url, "err", err)
		return nil, fmt.Errorf("execclient: dial %s: %w", url, err)
	}
	opts.Logger.Debug("execclient: SPDY connected", "url", url, "protocol", c.proto.String(), "local", c.tcp.LocalAddr().String())
	return c, nil
}

// dialSPDY is DialSPDY without the error prefix.
func dialSPDY(ctx context.Context, rawURL string, opts Options, start time.Time) (*SPDYConn, error) {
	u, err := spdyURL(rawURL)
	if err != nil {
		return nil, err
	}
	names, lines := opts.spdyOffer()
	header, err := spdyHeader(opts, lines)
	if err != nil {
		return nil, err
	}

	hctx, cancel := context.WithTimeout(ctx, opts.HandshakeTimeout)
	defer cancel()
	ds := &dialState{tlsConfig: opts.TLSConfig, autotune: opts.AutotuneBuffers}
	stop := context.AfterFunc(hctx, ds.abort)
	nc, resp, leftover, err := upgradeSPDY(hctx, ds, u, header)
	if err != nil {
		stop()
		ds.closeTCP()
		if hctx.Err() != nil && !isHandshakeError(err) {
			err = fmt.Errorf("%w (%w)", hctx.Err(), err)
		}
		return nil, err
	}
	if !stop() {
		// ctx ended just as the upgrade finished: abort may have put a
		// past deadline on the connection, so it cannot be used.
		ds.closeTCP()
		return nil, hctx.Err()
	}
	answer := resp.Header.Get(execproto.HeaderProtocolVersion)
	if opts.StrictProtocol {
		if err := checkAnswer(names, true, answer); err != nil {
			ds.closeTCP()
			return nil, err
		}
	}

	c := &SPDYConn{
		resp:         resp,
		proto:        spdyVersion(answer),
		opts:         opts,
		log:          opts.Logger,
		start:        start,
		sessionState: newSessionState(ds.tcp, opts.CloseWait),
	}
	c.wire = newSPDYWire(c, nc, leftover, opts)
	conn, err := spdy.NewClientConnection(c.wire)
	if err != nil {
		c.wire.stopWatch()
		ds.closeTCP()
		return nil, err
	}
	c.conn = conn

	streams, err := c.createStreams(hctx, u.Query())
	if err != nil {
		c.cut(killForce, err)
		go c.finish()
		<-c.done
		return nil, err
	}
	c.streams = streams
	c.startReaders()
	go c.finish()
	return c, nil
}

// isHandshakeError reports whether err is a refusal, which needs no ctx note.
func isHandshakeError(err error) bool {
	var he *HandshakeError
	return errors.As(err, &he)
}

// spdyURL parses url, mapping ws(s) to http(s).
func spdyURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "ws":
		u.Scheme = "http"
	case "https", "wss":
		u.Scheme = "https"
	default:
		return nil, fmt.Errorf("execclient: SPDY needs an http, https, ws or wss URL, not %q", u.Scheme)
	}
	return u, nil
}

// spdyOffer gives the versions offered (for StrictProtocol) and the
// X-Stream-Protocol-Version lines to send: one per version, as client-go's
// spdy.Negotiate adds them. RawProtocols goes verbatim (a non-nil empty
// slice sends one empty line); empty Protocols offer
// execproto.ClientGoSPDYOffer; a list of only ProtocolNone sends no line.
func (o Options) spdyOffer() (names, lines []string) {
	switch {
	case o.RawProtocols != nil:
		if len(o.RawProtocols) == 0 {
			return nil, []string{""}
		}
		return o.RawProtocols, o.RawProtocols
	case len(o.Protocols) == 0:
		return execproto.ClientGoSPDYOffer, execproto.ClientGoSPDYOffer
	}
	for _, p := range o.Protocols {
		if p != execproto.ProtocolNone {
			names = append(names, string(p))
		}
	}
	return names, names
}

// spdyHeader builds the upgrade request's headers: Options.Header, then
// the upgrade and the offer, in the order SpdyRoundTripper and
// spdy.Negotiate add them.
func spdyHeader(o Options, lines []string) (http.Header, error) {
	h := http.Header{}
	for k, vs := range o.Header {
		ck := http.CanonicalHeaderKey(k)
		switch ck {
		case http.CanonicalHeaderKey(execproto.HeaderProtocolVersion):
			return nil, errors.New("execclient: set SPDY versions with Options.Protocols or RawProtocols, not Header")
		case "Upgrade", "Connection":
			return nil, fmt.Errorf("execclient: header %s belongs to the SPDY upgrade", ck)
		}
		h[ck] = append(h[ck], vs...)
	}
	h.Add(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	h.Add(httpstream.HeaderUpgrade, spdy.HeaderSpdy31)
	for _, l := range lines {
		h.Add(execproto.HeaderProtocolVersion, l)
	}
	return h, nil
}

// spdyVersion is the version the streams follow: the server's answer, or
// channel.k8s.io (v1) when it gave none, as client-go falls back.
func spdyVersion(answer string) execproto.Protocol {
	if answer == "" {
		return execproto.SPDYProtocolV1
	}
	return execproto.Protocol(answer)
}

// spdyHasResize reports whether version p has the resize stream (v3 on).
func spdyHasResize(p execproto.Protocol) bool {
	switch p {
	case execproto.SPDYProtocolV3, execproto.SPDYProtocolV4, execproto.SPDYProtocolV5:
		return true
	}
	return false
}

// upgradeSPDY dials u, writes the upgrade request and reads the answer. It
// returns the connection (TLS or TCP) with the bytes read past the 101.
func upgradeSPDY(ctx context.Context, ds *dialState, u *url.URL, header http.Header) (net.Conn, *http.Response, []byte, error) {
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	tcp, err := ds.dialTCP(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, nil, err
	}
	var nc net.Conn = tcp
	if u.Scheme == "https" {
		if nc, err = ds.tlsClient(ctx, tcp, addr); err != nil {
			return nil, nil, nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, nil, nil, err
	}
	req.Header = header
	if err := req.Write(nc); err != nil {
		return nil, nil, nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, nil, nil, err
	}
	if !spdyUpgraded(resp) {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxHandshakeBody))
		return nil, nil, nil, &HandshakeError{StatusCode: resp.StatusCode, Header: resp.Header, Body: string(body)}
	}
	leftover, _ := br.Peek(br.Buffered())
	return nc, resp, bytes.Clone(leftover), nil
}

// spdyUpgraded checks the 101 as SpdyRoundTripper.NewConnection does.
func spdyUpgraded(resp *http.Response) bool {
	return resp.StatusCode == http.StatusSwitchingProtocols &&
		strings.Contains(strings.ToLower(resp.Header.Get(httpstream.HeaderConnection)), strings.ToLower(httpstream.HeaderUpgrade)) &&
		strings.Contains(strings.ToLower(resp.Header.Get(httpstream.HeaderUpgrade)), strings.ToLower(spdy.HeaderSpdy31))
}

// createStreams creates the streams as client-go's streamProtocolV2..V4
// createStreams do, one after the other, each waiting for its reply. The
// library bounds that wait at 30 s and cannot be interrupted: if ctx ends
// first, createStreams returns at once and its goroutine ends with the
// library's wait.
func (c *SPDYConn) createStreams(ctx context.Context, q url.Values) (spdyStreams, error) {
	tty := queryBool(q, "tty")
	want := []byte{execproto.StreamError}
	if queryBool(q, "stdin") {
		want = append(want, execproto.StreamStdin)
	}
	if queryBool(q, "stdout") {
		want = append(want, execproto.StreamStdout)
	}
	if queryBool(q, "stderr") && !tty {
		want = append(want, execproto.StreamStderr)
	}
	if tty && spdyHasResize(c.proto) {
		want = append(want, execproto.StreamResize)
	}

	type result struct {
		streams spdyStreams
		err     error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		for _, s := range want {
			h := http.Header{}
			h.Set(execproto.HeaderStreamType, execproto.StreamType(s))
			st, err := c.conn.CreateStream(h)
			if err != nil {
				r.err = fmt.Errorf("execclient: create the %s stream: %w", execproto.StreamType(s), err)
				break
			}
			r.streams[s] = st
		}
		ch <- r
	}()
	select {
	case r := <-ch:
		return r.streams, r.err
	case <-ctx.Done():
		return spdyStreams{}, fmt.Errorf("execclient: create the streams: %w", ctx.Err())
	}
}

// queryBool reads a boolean exec parameter ("true", "1", ...).
func queryBool(q url.Values, key string) bool {
	b, err := strconv.ParseBool(q.Get(key))
	return err == nil && b
}

// Transport is TransportSPDY.
func (c *SPDYConn) Transport() execproto.Transport { return execproto.TransportSPDY }

// Protocol is the version the streams follow: the server's
// X-Stream-Protocol-Version answer, or SPDYProtocolV1 when the answer is
// absent (client-go's fallback; Response has the header verbatim). It is
// reported even if the server chose a version that was not offered (see
// Options.StrictProtocol); an unknown version is treated as v2 (no resize
// stream, a text status).
func (c *SPDYConn) Protocol() execproto.Protocol { return c.proto }

// Response is the server's 101 response (its body is empty).
func (c *SPDYConn) Response() *http.Response { return c.resp }

// Started is when DialSPDY was called: End().At counts from it.
func (c *SPDYConn) Started() time.Time { return c.start }

// LocalAddr is the client's address, to match the connection in server logs.
func (c *SPDYConn) LocalAddr() net.Addr { return c.tcp.LocalAddr() }

// Done is closed when the session has ended (server GOAWAY or end of TCP,
// or our own Close, AbortTCP or Reset), the stream readers have returned and
// the socket is closed. That includes waiting (bounded) for the server to
// close TCP, as for Conn.
func (c *SPDYConn) Done() <-chan struct{} { return c.done }

// End tells how the session ended. It is final once Done is closed;
// before the end is known it is the zero End with ServerCloseCode -1.
// ServerCloseCode is always -1: SPDY has no close frames. GoAway tells
// whether the server sent a GOAWAY; Err is nil then, and nil after a Close
// whose GOAWAY the server answered by closing TCP.
func (c *SPDYConn) End() End {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.end
}

// Output is everything received on stdout and stderr so far, in arrival
// order, or its last MaxOutput bytes if there was more.
func (c *SPDYConn) Output() string { return c.output() }

// OutputTotal is the number of stdout and stderr bytes received so far.
func (c *SPDYConn) OutputTotal() int64 { return c.outputTotal() }

// Expect waits until substr appears in the output after the previous match,
// as Conn.Expect does.
func (c *SPDYConn) Expect(ctx context.Context, substr string) error { return c.expect(ctx, substr) }

// Status waits for the error stream to end, as client-go's
// watchErrorStream reads it to its end, and parses what it carried with
// execproto.ParseStatus: a JSON metav1.Status from v4 on, a text (a
// failure) before. ok is false if it carried nothing: for versions before
// v4 that is how success looks; from v4 on the server always writes a
// status, so its absence is a fault. After AbortTCP or Reset nothing more
// is recorded and Status answers at once with what came before.
func (c *SPDYConn) Status(ctx context.Context) (execproto.Status, bool, error) {
	err := c.wait(ctx, func() bool { return c.errDone || c.ended || c.kill != killNone })
	if err != nil {
		return execproto.Status{}, false, fmt.Errorf("execclient: Status: %w", err)
	}
	c.mu.Lock()
	raw := c.errData
	c.mu.Unlock()
	if len(raw) == 0 {
		return execproto.Status{}, false, nil
	}
	s, err := execproto.ParseStatus(c.proto, raw)
	return s, true, err
}

// since is the time since DialSPDY was called.
func (c *SPDYConn) since() time.Duration { return time.Since(c.start) }
