package proxyundertest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/execconform/execconform/execproto"
)

// SPDY exec, as client-go's SPDY executor speaks it (kubectl's SPDY path,
// and every terminal built on remotecommand.NewSPDYExecutor). The proxy
// ends SPDY on both sides, so that it can act on the streams:
//
//	client ──SPDY──▶ spdySession ──SPDY──▶ API server (tunnelled to the kubelet)
//	        streams    one pair per           the same streams,
//	        by type    streamType             created by the proxy
//
// Every stream the client creates gets its twin on the backend, with the
// same headers, before the client's stream is accepted; data is copied
// stream by stream (stdin and resize toward the backend, stdout, stderr
// and error toward the client). When the client goes away (GOAWAY, FIN,
// RST) or the proxy shuts down, the proxy writes the exit sequence on the
// backend's stdin stream itself (it holds that stream, and is its only
// writer from then on), waits for the backend to end the session, and
// closes the backend connection (RST_STREAM of what is left, GOAWAY, and
// TCP once the backend has closed). A tty's stdin half-close is held
// back: a real runtime keeps a tty shell alive when its stdin closes, and
// a stdin stream closed on the backend could never carry the exit.
//
// A pass-through proxy that only tunnels the bytes (k8s.io/apimachinery's
// UpgradeAwareHandler, kubectl proxy) cannot do any of that: the SPDYTunnel
// variant is one.

// isSPDYUpgrade reports whether r asks for a SPDY/3.1 upgrade.
func isSPDYUpgrade(r *http.Request) bool {
	return httpstream.IsUpgradeRequest(r) && strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), execproto.SPDYUpgrade)
}

// spdyOffer reads a SPDY client's versions in order, one per name.
func spdyOffer(r *http.Request) []string {
	var names []string
	for _, h := range r.Header.Values(execproto.HeaderProtocolVersion) {
		for _, n := range strings.Split(h, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	return names
}

func (p *Proxy) serveSPDY(w http.ResponseWriter, r *http.Request, target *url.URL) {
	if err := p.checkOrigin(r); err != nil {
		p.refuse(w, r, http.StatusForbidden, err)
		return
	}
	switch {
	case p.cfg.Variant.websocketOnly():
		p.refuse(w, r, http.StatusBadRequest, errors.New("an exec request must be a WebSocket upgrade (this proxy does not serve SPDY)"))
		return
	case r.Method != http.MethodGet && r.Method != http.MethodPost:
		p.refuse(w, r, http.StatusMethodNotAllowed, errors.New("a SPDY exec upgrade must be a POST or a GET"))
		return
	}
	hj := &hijackRecorder{ResponseWriter: w}
	if _, ok := w.(http.Hijacker); !ok {
		http.Error(w, "proxyundertest: the connection cannot be upgraded (HTTP/2?)", http.StatusInternalServerError)
		return
	}
	if !p.enter() {
		http.Error(w, "proxyundertest: the proxy is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer p.active.Done()

	id := "s" + strconv.FormatUint(p.nextID.Add(1), 10)
	tty := isTTY(r.URL.Query())
	offered := spdyOffer(r)
	log := p.log.With("session", id, "transport", "spdy", "tty", tty)
	if p.cfg.Variant.tunnelsSPDY() {
		p.tunnelSPDY(hj, r, target, log)
		return
	}

	back, resp, err := p.dialSPDY(r.Context(), r.Method, target, p.cfg.Variant.forwardOffers(offered))
	if err != nil {
		log.Warn("backend dial failed", "err", err)
		http.Error(w, "proxyundertest: backend: "+err.Error(), http.StatusBadGateway)
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// Relay the refusal (403 for no version in common, 400 for none
		// offered, 401, 404 ...) with the versions the server accepts.
		log.Info("backend refused the upgrade", "status", resp.StatusCode, "offered", execproto.RedactOffer(offered))
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		back.closeTCP()
		for _, k := range []string{"Content-Type", execproto.HeaderAcceptedProtocolVersions} {
			for _, v := range resp.Header.Values(k) {
				w.Header().Add(k, v)
			}
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
		return
	}
	chosen := resp.Header.Get(execproto.HeaderProtocolVersion)
	proto := execproto.Protocol(chosen)
	log = log.With("protocol", chosen)
	if chosen == "" || !slices.Contains(offered, chosen) {
		log.Warn("backend chose a version the client did not offer", "offered", execproto.RedactOffer(offered))
		back.closeTCP()
		http.Error(w, fmt.Sprintf("proxyundertest: backend chose stream protocol %q, which the client did not offer", chosen), http.StatusBadGateway)
		return
	}

	s := &spdySession{
		id: id, log: log, variant: p.cfg.Variant, proto: proto, tty: tty,
		closeTimeout: p.cfg.CloseTimeout, back: back,
		shutdown: make(chan struct{}), abort: make(chan struct{}), frontUp: make(chan struct{}),
		pairs: map[byte]*streamPair{},
	}
	w.Header().Set(execproto.HeaderProtocolVersion, p.cfg.Variant.answer(offered, chosen))
	front := spdy.NewResponseUpgrader().UpgradeResponse(hj, r, s.frontStream)
	if front == nil {
		// The upgrader has answered the client; the backend process runs.
		log.Warn("frontend upgrade failed")
		s.farewell(time.Now().Add(s.closeTimeout))
		back.closeTCP()
		return
	}
	s.front, s.frontTCP = front, hj.conn
	close(s.frontUp)
	log.Info("session open", "path", target.Path)
	p.register(s)
	defer p.unregister(s)
	s.run()
}

// spdyBackend is the proxy's SPDY client connection to the API server,
// with its TCP connection: the proxy decides when that closes.
type spdyBackend struct {
	conn httpstream.Connection
	tcp  net.Conn
	rw   net.Conn // tcp, reading what the response's reader buffered first
}

func (b *spdyBackend) closeTCP() { _ = b.tcp.Close() }

// dialSPDY opens the backend connection: TCP (and TLS), the upgrade
// request with offer and the proxy's token, its response. For a 101 the
// SPDY client connection is up; otherwise resp holds the refusal (its
// body readable) and the caller closes the connection.
func (p *Proxy) dialSPDY(ctx context.Context, method string, target *url.URL, offer []string) (*spdyBackend, *http.Response, error) {
	return p.dialSPDYConn(ctx, method, target, offer, false)
}

// dialSPDYConn is dialSPDY; raw leaves the upgraded connection's bytes to
// the caller (spdyBackend.rw) instead of speaking SPDY on it.
func (p *Proxy) dialSPDYConn(ctx context.Context, method string, target *url.URL, offer []string, raw bool) (*spdyBackend, *http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.HandshakeTimeout)
	defer cancel()
	host := target.Host
	if target.Port() == "" {
		if target.Scheme == "https" {
			host = net.JoinHostPort(target.Hostname(), "443")
		} else {
			host = net.JoinHostPort(target.Hostname(), "80")
		}
	}
	var d net.Dialer
	tcp, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, nil, err
	}
	var conn net.Conn = tcp
	if target.Scheme == "https" {
		cfg := p.cfg.TLSConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = target.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(tcp, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = tcp.Close()
			return nil, nil, err
		}
		conn = tc
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	req := &http.Request{Method: method, URL: target, Host: target.Host, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", execproto.SPDYUpgrade)
	for _, v := range offer {
		req.Header.Add(execproto.HeaderProtocolVersion, v)
	}
	p.setAuth(req.Header)
	if err := req.Write(conn); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	if !stop() {
		_ = conn.Close()
		return nil, nil, ctx.Err()
	}
	_ = conn.SetDeadline(time.Time{})
	b := &spdyBackend{tcp: conn}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return b, resp, nil
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), execproto.SPDYUpgrade) {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("upgrade answered with %q, not %s", resp.Header.Get("Upgrade"), execproto.SPDYUpgrade)
	}
	b.rw = &bufferedConn{Conn: conn, r: br}
	if raw {
		return b, resp, nil
	}
	sc, err := spdy.NewClientConnection(b.rw)
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	b.conn = sc
	return b, resp, nil
}

// bufferedConn reads what the response's reader buffered first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// hijackRecorder keeps the connection the SPDY upgrader hijacks, so that
// the session can close its TCP connection itself.
type hijackRecorder struct {
	http.ResponseWriter
	conn net.Conn
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := h.ResponseWriter.(http.Hijacker).Hijack()
	h.conn = c
	return c, rw, err
}

// streamPair is one exec stream on both connections.
type streamPair struct {
	typ         string
	front, back httpstream.Stream
}

// spdySession is one SPDY exec session through the proxy. Its streams come
// up on the frontend's frame handler (frontStream); run owns the ending.
type spdySession struct {
	id           string
	log          *slog.Logger
	variant      Variant
	proto        execproto.Protocol
	tty          bool
	closeTimeout time.Duration
	front        httpstream.Connection
	frontTCP     net.Conn
	back         *spdyBackend

	shutdown     chan struct{}
	shutdownOnce sync.Once
	abort        chan struct{}
	abortOnce    sync.Once
	frontUp      chan struct{} // closed once front and frontTCP are set

	mu       sync.Mutex
	pairs    map[byte]*streamPair
	copies   sync.WaitGroup // the copy loops toward the frontend
	inputs   sync.WaitGroup // the copy loops toward the backend
	stopOut  bool           // the frontend is gone: output is dropped
	stdinMu  sync.Mutex     // one writer of the backend's stdin: the copy loop, then the farewell
	stdinEnd bool           // guarded by stdinMu: nothing more is written to the backend's stdin
}

func (s *spdySession) requestShutdown() { s.shutdownOnce.Do(func() { close(s.shutdown) }) }

func (s *spdySession) forceClose() {
	s.abortOnce.Do(func() { close(s.abort) })
	<-s.frontUp // registered only once it is
	_ = s.frontTCP.Close()
	s.back.closeTCP()
}

// frontStream accepts a stream the client creates once its twin is up on
// the backend (the error stream first, as client-go creates it, so the
// backend sees the client's order). A stream of no known type is refused.
func (s *spdySession) frontStream(st httpstream.Stream, replySent <-chan struct{}) error {
	typ := st.Headers().Get(execproto.HeaderStreamType)
	ch, ok := execproto.StreamOfType(typ)
	if !ok {
		s.log.Info("stream refused: unknown streamType", "stream_type", typ)
		return fmt.Errorf("unknown streamType %q", typ)
	}
	s.mu.Lock()
	_, dup := s.pairs[ch]
	s.mu.Unlock()
	if dup {
		s.log.Info("stream refused: a second stream of a type", "stream_type", typ)
		return fmt.Errorf("a second %s stream", typ)
	}
	h := st.Headers().Clone()
	bs, err := s.back.conn.CreateStream(h)
	if err != nil {
		s.log.Warn("backend stream failed", "stream_type", typ, "err", err)
		return err
	}
	pair := &streamPair{typ: typ, front: st, back: bs}
	s.mu.Lock()
	s.pairs[ch] = pair
	switch ch {
	case execproto.StreamStdin:
		s.inputs.Add(1)
		go s.copyStdin(pair)
	case execproto.StreamResize:
		s.inputs.Add(1)
		go s.copyResize(pair)
	default:
		s.copies.Add(1)
		go s.copyOut(pair)
	}
	s.mu.Unlock()
	return nil
}

// copyOut copies a backend stream (stdout, stderr, error) to the client
// until the backend ends it, then half-closes the client's.
func (s *spdySession) copyOut(p *streamPair) {
	defer s.copies.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := p.back.Read(buf)
		if n > 0 && !s.outStopped() {
			if _, werr := p.front.Write(buf[:n]); werr != nil {
				s.stopOutput()
			}
		}
		if err != nil {
			break
		}
	}
	if !s.outStopped() {
		_ = p.front.Close()
	}
}

func (s *spdySession) outStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopOut
}

func (s *spdySession) stopOutput() {
	s.mu.Lock()
	s.stopOut = true
	s.mu.Unlock()
}

// copyStdin copies the client's stdin to the backend, a read at a time,
// until the client half-closes it (or goes away).
func (s *spdySession) copyStdin(p *streamPair) {
	defer s.inputs.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := p.front.Read(buf)
		if n > 0 && !s.writeStdin(p.back, buf[:n]) {
			return
		}
		if err != nil {
			break
		}
	}
	<-s.frontUp
	select {
	case <-s.front.CloseChan():
		return // the connection ended: the farewell has the stream
	default:
	}
	if s.tty && !s.variant.forwardsTTYHalfClose() {
		s.log.Info("stdin half-closed by the client: held back on a tty (the shell would outlive it, and the exit could not follow)")
		return
	}
	s.stdinMu.Lock()
	defer s.stdinMu.Unlock()
	if !s.stdinEnd {
		s.stdinEnd = true
		_ = p.back.Close()
	}
}

// writeStdin writes b to the backend's stdin unless the farewell has
// taken the stream; false once it has (or the write failed).
func (s *spdySession) writeStdin(st httpstream.Stream, b []byte) bool {
	s.stdinMu.Lock()
	defer s.stdinMu.Unlock()
	if s.stdinEnd {
		return false
	}
	_, err := st.Write(b)
	return err == nil
}

func (s *spdySession) copyResize(p *streamPair) {
	defer s.inputs.Done()
	_, _ = io.Copy(p.back, p.front)
}

func (s *spdySession) run() {
	var kind endKind
	select {
	case <-s.front.CloseChan():
		kind = frontLost
	case <-s.back.conn.CloseChan():
		kind = backLost
	case <-s.shutdown:
		kind = proxyShutdown
	case <-s.abort:
		kind = proxyShutdown
	}
	deadline := time.Now().Add(s.closeTimeout)
	s.log.Info("session ending", "reason", kind.String())
	if kind.frontend() {
		s.stopOutput()
		s.farewell(deadline)
		_ = s.front.Close() // RST_STREAM of its streams, GOAWAY
		waitUntil(s.front.CloseChan(), deadline, s.abort)
	} else {
		// The backend ended the session (the process exited: its status
		// is on the error stream): relay what is left, then end the
		// client's streams and connection as the kubelet does.
		s.waitCopies(deadline)
		if !s.variant.relaysBackendClose() {
			_ = s.frontTCP.Close() // the CloseNotRelayed bug
		}
		_ = s.front.Close()
		waitUntil(s.front.CloseChan(), deadline, s.abort)
		s.back.closeTCP()
	}
	_ = s.frontTCP.Close()
	s.back.closeTCP()
	s.stdinMu.Lock()
	s.stdinEnd = true
	s.stdinMu.Unlock()
	s.waitCopies(time.Now().Add(s.closeTimeout))
	s.inputs.Wait()
	s.log.Info("session over", "reason", kind.String())
}

// waitCopies waits for the copies toward the frontend, until deadline.
func (s *spdySession) waitCopies(deadline time.Time) {
	done := make(chan struct{})
	go func() { s.copies.Wait(); close(done) }()
	waitUntil(done, deadline, s.abort)
}

func waitUntil[T any](c <-chan T, deadline time.Time, abort <-chan struct{}) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c:
		return true
	case <-t.C:
	case <-abort:
	}
	return false
}

// farewell ends the backend side after a frontend end: the exit on the
// backend's stdin (the proxy is its only writer from now on), a wait for
// the backend to end the session itself, then GOAWAY and the wait for the
// backend's TCP close (the backend is read to its end, so no RST).
func (s *spdySession) farewell(deadline time.Time) {
	fw := s.variant.spdyFarewell(s.tty)
	s.stdinMu.Lock()
	s.stdinEnd = true
	if fw.exit != nil {
		s.mu.Lock()
		p := s.pairs[fw.stream]
		s.mu.Unlock()
		if p != nil {
			if _, err := p.back.Write(fw.exit); err != nil {
				s.log.Warn("exit write failed", "err", err)
			}
		} else {
			s.log.Warn("no backend stream to write the exit on", "stream", execproto.StreamType(fw.stream))
		}
	}
	s.stdinMu.Unlock()
	backDone := s.back.conn.CloseChan()
	if fw.waitExit {
		// The whole bound, not half of it: the backend reads each stream
		// on its own, and the GOAWAY below resets them, which drops stdin
		// it has read but not yet written to the process (spdystream's
		// Read picks a closed stream over its buffered data): the exit
		// itself, when it waits behind a paste the shell reads slowly
		// (busy/paste-in-flight over SPDY failed 3 runs in 3 on a loaded
		// machine with half of the 2 s bound, 1 in 3 with 3/4).
		if !waitUntil(backDone, deadline, s.abort) {
			deadline = time.Now().Add(s.closeTimeout / 2) // for the GOAWAY's drain
		}
	}
	if !fw.goAway {
		s.back.closeTCP()
		return
	}
	_ = s.back.conn.Close() // RST_STREAM of what is left, GOAWAY
	if fw.drain {
		waitUntil(backDone, deadline, s.abort)
	}
	s.back.closeTCP()
}

// spdyFarewellPlan is what the proxy does to the backend after a frontend
// end over SPDY (farewell's SPDY counterpart).
type spdyFarewellPlan struct {
	exit     []byte // written on stream first; nil: none
	stream   byte
	waitExit bool // then wait (the close bound) for the backend to end
	goAway   bool // then reset the streams and send GOAWAY
	drain    bool // then read the backend to its TCP close
}

// spdyFarewell maps the variants onto SPDY: those that break the exit, or
// the ending, break it here too.
func (v Variant) spdyFarewell(tty bool) spdyFarewellPlan {
	exit := ExitSequence(tty)
	correct := spdyFarewellPlan{exit: exit, stream: execproto.StreamStdin, waitExit: true, goAway: true, drain: true}
	switch v {
	case NoExit:
		return spdyFarewellPlan{}
	case AlwaysBase64Exit:
		_, b := execproto.Encode(execproto.ProtocolBase64, execproto.StreamStdin, exit)
		correct.exit = b
	case ExitThenDrop:
		return spdyFarewellPlan{exit: exit, stream: execproto.StreamStdin}
	case CloseNoExit:
		correct.exit = nil
	case ExitCloseNoDrain:
		correct.waitExit, correct.drain = false, false
	case ExitOnStdout:
		correct.stream = execproto.StreamStdout
	case ExitNoNewline:
		correct.exit = []byte("exit")
	case ExitNoInterrupt:
		if tty {
			correct.exit = []byte("exit\r")
		}
	}
	return correct
}

// tunnelSPDY is the SPDYTunnel variant: the upgrade and every byte after
// it are relayed as they are, with the proxy's token put in, as
// UpgradeAwareHandler (kubectl proxy, the API server's own proxying) does.
// When either side's TCP ends, both are closed: the streams' ends and any
// exit are the client's business.
func (p *Proxy) tunnelSPDY(w *hijackRecorder, r *http.Request, target *url.URL, log *slog.Logger) {
	back, resp, err := p.dialSPDYConn(r.Context(), r.Method, target, spdyOffer(r), true)
	if err != nil {
		http.Error(w, "proxyundertest: backend: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer back.closeTCP()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
		return
	}
	fc, frw, err := w.Hijack()
	if err != nil {
		return
	}
	defer fc.Close()
	if err := resp.Write(fc); err != nil {
		return
	}
	log.Info("session open (tunnel)", "path", target.Path)
	t := &tunnel{front: fc, back: back}
	p.register(t)
	defer p.unregister(t)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(back.rw, frw.Reader); done <- struct{}{} }()
	go func() { _, _ = io.Copy(fc, back.rw); done <- struct{}{} }()
	<-done
	_ = fc.Close()
	back.closeTCP()
	<-done
	log.Info("session over (tunnel)")
}

// tunnel is an open SPDYTunnel session as Shutdown sees it: all it can do
// is drop both connections.
type tunnel struct {
	front net.Conn
	back  *spdyBackend
}

func (t *tunnel) requestShutdown() { t.forceClose() }

func (t *tunnel) forceClose() {
	_ = t.front.Close()
	t.back.closeTCP()
}
