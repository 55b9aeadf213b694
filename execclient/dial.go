package execclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/internal/sockbuf"
)

// HandshakeError is returned by Dial when the server answers the upgrade
// request with anything but a valid 101 Switching Protocols, so that callers
// can check for 400, 401 or 403.
type HandshakeError struct {
	StatusCode int         // the response status; 101 when the 101 itself was invalid
	Header     http.Header // the response headers
	Body       string      // the start of the body, at most MaxHandshakeBody bytes
}

// Error reports the status and the start of the body.
func (e *HandshakeError) Error() string {
	body := e.Body
	if len(body) > 200 {
		body = body[:200] + "..."
	}
	return fmt.Sprintf("execclient: handshake refused: %d %s: %q", e.StatusCode, http.StatusText(e.StatusCode), body)
}

// ErrProtocolMismatch is returned by Dial with Options.StrictProtocol when the
// server's Sec-WebSocket-Protocol answer is not one of the offered names.
var ErrProtocolMismatch = errors.New("execclient: subprotocol answer does not match the offer")

// Dial opens the WebSocket to url (ws:// or wss://), offering the
// subprotocols of opts, and starts the reader. The handshake (TCP, TLS,
// upgrade) is bounded by ctx and opts.HandshakeTimeout; ctx does not matter
// after Dial returns. A refused handshake gives a *HandshakeError. No proxy
// from the environment is used: the client connects to the URL's host.
func Dial(ctx context.Context, url string, opts Options) (*Conn, error) {
	opts = opts.withDefaults()
	start := time.Now()
	header, err := requestHeader(opts)
	if err != nil {
		return nil, err
	}

	hctx, cancel := context.WithTimeout(ctx, opts.HandshakeTimeout)
	defer cancel()
	ds := &dialState{tlsConfig: opts.TLSConfig, autotune: opts.AutotuneBuffers}
	// gorilla only applies ctx's deadline to the connection once it is
	// dialled; this makes cancellation interrupt the upgrade as well.
	stop := context.AfterFunc(hctx, ds.abort)

	d := websocket.Dialer{
		NetDialContext:    ds.dial,
		NetDialTLSContext: ds.dialTLS,
	}
	ws, resp, err := d.DialContext(hctx, url, header)
	if err != nil {
		if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
			err = ds.refusal(resp)
		} else if hctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", hctx.Err(), err)
		}
		stop()
		ds.closeTCP()
		opts.Logger.Debug("execclient: dial failed", "url", url, "err", err)
		return nil, fmt.Errorf("execclient: dial %s: %w", url, err)
	}
	if !stop() {
		// ctx ended just as the handshake finished: abort may have put a
		// past deadline on the connection, so it cannot be used.
		ds.closeTCP()
		return nil, fmt.Errorf("execclient: dial %s: %w", url, hctx.Err())
	}
	if opts.StrictProtocol {
		if err := checkProtocol(opts, ws.Subprotocol()); err != nil {
			ds.closeTCP()
			return nil, fmt.Errorf("execclient: dial %s: %w", url, err)
		}
	}
	dname := ""
	if !opts.Dialect.IsKubernetes() {
		dname = opts.Dialect.Name
	}
	ds.rc.goLive(opts.Trace, execproto.Protocol(ws.Subprotocol()), dname)
	c := newConn(ws, resp, ds.tcp, opts, start)
	opts.Logger.Debug("execclient: connected", "url", url, "protocol", c.proto.String(), "dialect", dname, "local", ds.tcp.LocalAddr().String())
	go c.readLoop()
	if c.codec != nil {
		if err := c.sendStart(); err != nil {
			_ = c.Reset()
			return nil, fmt.Errorf("execclient: dial %s: %w", url, err)
		}
	}
	return c, nil
}

// requestHeader builds the upgrade request's extra headers, with the offer.
func requestHeader(o Options) (http.Header, error) {
	h := http.Header{}
	for k, vs := range o.Header {
		ck := http.CanonicalHeaderKey(k)
		switch ck {
		case "Sec-Websocket-Protocol":
			return nil, errors.New("execclient: set subprotocols with Options.Protocols or RawProtocols, not Header")
		case "Upgrade", "Connection", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions":
			return nil, fmt.Errorf("execclient: header %s belongs to the WebSocket handshake", ck)
		}
		h[ck] = append(h[ck], vs...)
	}
	if names, send := o.offer(); send {
		h["Sec-Websocket-Protocol"] = []string{strings.Join(names, ", ")}
	}
	return h, nil
}

// checkProtocol applies Options.StrictProtocol: a browser fails the
// connection unless the answer is one of the offered names, or absent when
// nothing was offered.
func checkProtocol(o Options, got string) error {
	names, sent := o.offer()
	return checkAnswer(names, sent, got)
}

// checkAnswer is checkProtocol for any offer: names, and whether a header
// was sent at all.
func checkAnswer(names []string, sent bool, got string) error {
	switch {
	case got == "" && (!sent || len(names) == 0):
		return nil
	case got == "":
		return fmt.Errorf("%w: offered %q, server answered none", ErrProtocolMismatch, names)
	case !slices.Contains(names, got):
		return fmt.Errorf("%w: offered %q, server answered %q", ErrProtocolMismatch, names, got)
	}
	return nil
}

// dialState holds what Dial's dial functions create: the raw TCP connection
// (kept for AbortTCP and Reset, which must bypass TLS) and the recording
// wrapper gorilla talks through.
type dialState struct {
	tlsConfig *tls.Config
	autotune  bool // Options.AutotuneBuffers

	mu      sync.Mutex
	aborted bool
	tcp     *net.TCPConn
	rc      *recConn
}

// dialTCP connects and remembers the TCP connection.
func (ds *dialState) dialTCP(ctx context.Context, network, addr string) (*net.TCPConn, error) {
	// A bounded send buffer (Linux grows it to 4 MiB on loopback): what
	// the client sent is then mostly read by the server when a write
	// returns, so an ending right after a large paste happens while the
	// server is handling the paste, not while it still sits in the
	// client's kernel.
	nd := net.Dialer{Control: sockbuf.SendControl(sockbuf.Size)}
	if ds.autotune {
		nd.Control = nil
	}
	nc, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tcp, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("execclient: dial %s gave a %T, not a TCP connection", addr, nc)
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.aborted {
		tcp.Close()
		return nil, context.Cause(ctx)
	}
	ds.tcp = tcp
	return tcp, nil
}

// dial is gorilla's NetDialContext, for ws:// URLs.
func (ds *dialState) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	tcp, err := ds.dialTCP(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	ds.rc = &recConn{Conn: tcp}
	return ds.rc, nil
}

// dialTLS is gorilla's NetDialTLSContext, for wss:// URLs: it does the TLS
// handshake itself so that the TCP connection under it is known.
func (ds *dialState) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	tcp, err := ds.dialTCP(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc, err := ds.tlsClient(ctx, tcp, addr)
	if err != nil {
		return nil, err
	}
	ds.rc = &recConn{Conn: tc}
	return ds.rc, nil
}

// tlsClient does the TLS handshake over tcp with the configuration of Dial
// (ServerName from addr, http/1.1 forced), closing tcp if it fails.
func (ds *dialState) tlsClient(ctx context.Context, tcp *net.TCPConn, addr string) (*tls.Conn, error) {
	cfg := &tls.Config{}
	if ds.tlsConfig != nil {
		cfg = ds.tlsConfig.Clone()
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg.ServerName = host
	}
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(tcp, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		tcp.Close()
		return nil, err
	}
	return tc, nil
}

// abort runs when the handshake's context ends: it makes blocked I/O fail.
func (ds *dialState) abort() {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.aborted = true
	if ds.tcp != nil {
		ds.tcp.SetDeadline(time.Unix(1, 0))
	}
}

// closeTCP closes the connection after a failed Dial.
func (ds *dialState) closeTCP() {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.tcp != nil {
		ds.tcp.Close()
	}
}

// refusal builds the HandshakeError for a non-101 (or invalid 101) answer.
// gorilla keeps only the first KiB of the body; the bytes it read were
// recorded, and the rest is read here, under the handshake deadline.
func (ds *dialState) refusal(resp *http.Response) *HandshakeError {
	body, ok := ds.fullBody()
	if !ok {
		body, _ = io.ReadAll(resp.Body)
	}
	if len(body) > MaxHandshakeBody {
		body = body[:MaxHandshakeBody]
	}
	return &HandshakeError{StatusCode: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

// fullBody re-parses the recorded response and reads on until its body is
// complete or MaxHandshakeBody long.
func (ds *dialState) fullBody() ([]byte, bool) {
	rc := ds.rc
	if rc == nil || rc.over {
		return nil, false
	}
	raw := slices.Clone(rc.rec)
	chunk := make([]byte, 4096)
	for {
		if body, complete := parseBody(raw, false); complete {
			return body, true
		}
		if len(raw) >= maxRecord {
			return nil, false
		}
		n, err := rc.Conn.Read(chunk)
		raw = append(raw, chunk[:n]...)
		if err != nil {
			return parseBody(raw, true)
		}
	}
}

// parseBody parses raw as an HTTP response and returns up to
// MaxHandshakeBody bytes of its body, and whether that is all there will be.
// atEOF says no more bytes will come.
func parseBody(raw []byte, atEOF bool) ([]byte, bool) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxHandshakeBody))
	switch {
	case len(b) == MaxHandshakeBody:
		return b, true
	case err != nil: // truncated
		return b, atEOF
	case resp.ContentLength < 0 && len(resp.TransferEncoding) == 0: // delimited by the close
		return b, atEOF
	}
	return b, true
}

// maxRecord bounds the response bytes recorded during the handshake.
const maxRecord = 64 << 10

// recConn sits between gorilla and the TLS or TCP connection. During the
// handshake it records the bytes gorilla reads, so that a refusal's body can
// be reported beyond gorilla's first KiB, and it ignores gorilla's Close on
// failure, so that the rest can still be read; Dial closes the socket
// itself. Once live (set before the reader starts) it is a pass-through.
// Before live, only Dial's goroutine uses it.
type recConn struct {
	net.Conn
	live  atomic.Bool
	rec   []byte
	over  bool  // more than maxRecord bytes were read
	trace Trace // set before live, then only read
}

// Read reads, recording during the handshake and tracing after it.
func (r *recConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if n > 0 {
		switch {
		case r.live.Load():
			if r.trace != nil {
				r.trace.Received(p[:n])
			}
		case len(r.rec)+n <= maxRecord:
			r.rec = append(r.rec, p[:n]...)
		default:
			r.over = true
		}
	}
	return n, err
}

// Write writes, tracing once live.
func (r *recConn) Write(p []byte) (int, error) {
	if r.trace != nil && r.live.Load() {
		r.trace.Sent(p)
	}
	return r.Conn.Write(p)
}

// goLive ends the handshake: from now on bytes go to t (if any), starting
// with those gorilla read past the upgrade response (frames the server
// sent at once, now in gorilla's buffer).
func (r *recConn) goLive(t Trace, p execproto.Protocol, dialectName string) {
	if t != nil {
		if dt, ok := t.(DialectTrace); ok && dialectName != "" {
			dt.StartDialect(dialectName)
		} else {
			t.Start(p)
		}
		if i := bytes.Index(r.rec, []byte("\r\n\r\n")); i >= 0 && i+4 < len(r.rec) && !r.over {
			t.Received(r.rec[i+4:])
		}
		r.trace = t
	}
	r.rec = nil
	r.live.Store(true)
}

// Close closes once live; during the handshake it does nothing.
func (r *recConn) Close() error {
	if !r.live.Load() {
		return nil
	}
	return r.Conn.Close()
}
