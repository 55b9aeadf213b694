package realapiserver

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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
)

// relay is one case's recording relay: a TLS server on loopback that
// forwards every request to the real API server over TLS and, once an exec
// is upgraded, records its frames with the fake server's recorder.
type relay struct {
	srv *Server
	ln  net.Listener
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session // by tag
	changed  chan struct{}       // closed (and replaced) when a session is added
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

func newRelay(s *Server, log *slog.Logger) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("realapiserver: relay: %w", err)
	}
	r := &relay{srv: s, ln: ln, log: log, sessions: map[string]*session{}, changed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		if !r.track(c) {
			_ = c.Close()
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer r.untrack(c)
			r.handle(c)
		}()
	}
}

func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

// close stops the relay and cuts every connection it holds.
func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	_ = r.ln.Close()
	r.wg.Wait()
}

// handshakeTimeout bounds a TLS handshake and the wait for a request's
// response from the API server.
const handshakeTimeout = 15 * time.Second

// handle relays one connection from the target: requests one after the
// other until one is upgraded, then the WebSocket, recorded.
func (r *relay) handle(raw net.Conn) {
	defer raw.Close()
	conn := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{r.srv.cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := conn.Handshake(); err != nil {
		r.log.Debug("relay: TLS handshake from the target failed", "err", err)
		return
	}
	_ = conn.SetDeadline(time.Time{})
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: handshakeTimeout}, Config: r.srv.upstreamTLS}
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	upc, err := d.DialContext(ctx, "tcp", r.srv.cl.APIServer.Host)
	cancel()
	if err != nil {
		r.log.Warn("relay: cannot reach the API server", "err", err)
		_, _ = io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		return
	}
	up := upc.(*tls.Conn)
	r.track(up)
	defer r.untrack(up)
	defer up.Close()
	br, ubr := bufio.NewReader(conn), bufio.NewReader(up)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		tag := tagOf(req.URL.Query()["command"])
		started := time.Now()
		if err := req.Write(up); err != nil {
			return
		}
		_ = up.SetReadDeadline(time.Now().Add(handshakeTimeout))
		resp, err := http.ReadResponse(ubr, req)
		if err != nil {
			return
		}
		_ = up.SetReadDeadline(time.Time{})
		if resp.StatusCode != http.StatusSwitchingProtocols {
			if tag != "" {
				r.log.Debug("relay: the API server refused an exec", "tag", tag, "status", resp.Status)
			}
			err := resp.Write(conn)
			_ = resp.Body.Close()
			if err != nil || resp.Close {
				return
			}
			continue
		}
		// Upgraded: the response as it came, then the WebSocket, recorded.
		if _, err := fmt.Fprintf(conn, "HTTP/%d.%d %s\r\n", resp.ProtoMajor, resp.ProtoMinor, resp.Status); err != nil {
			return
		}
		if err := resp.Header.Write(conn); err != nil {
			return
		}
		if _, err := io.WriteString(conn, "\r\n"); err != nil {
			return
		}
		// A SPDY upgrade (client-go's SPDY executor, tunnelled by the API
		// server to the kubelet) is recorded as SPDY frames.
		transport := execproto.TransportWebSocket
		p, _ := execproto.ParseProtocol(resp.Header.Get("Sec-WebSocket-Protocol"))
		offered := execproto.RedactOffer(execproto.Offered(req.Header.Values("Sec-WebSocket-Protocol")))
		if strings.EqualFold(resp.Header.Get("Upgrade"), execproto.SPDYUpgrade) {
			transport = execproto.TransportSPDY
			p = execproto.Protocol(resp.Header.Get(execproto.HeaderProtocolVersion))
			offered = execproto.RedactOffer(req.Header.Values(execproto.HeaderProtocolVersion))
		}
		rec := fakeapiserver.NewRecorder(started, p, 0, 0)
		rec.StartTransport(transport, p)
		// Bytes the target sent after its request are already in br.
		pending, _ := br.Peek(br.Buffered())
		front := rec.Tap(&prefixConn{Conn: conn, r: io.MultiReader(strings.NewReader(string(pending)), conn)})
		s := &session{relay: r, tag: tag, started: started, rec: rec, protocol: p, transport: transport, query: req.URL.Query(), done: make(chan struct{}),
			offered: offered}
		r.add(s)
		r.pipe(front, conn, up, ubr, rec)
		close(s.done)
		return
	}
}

// pipe copies both ways until both directions have ended, passing on how
// each ended: a FIN as a TLS close_notify, a reset as a reset. A reset
// from the target is one also when the read got EOF: Linux reports a RST
// once, and when the write toward the target took it, the read beside it
// sees EOF; front's tap (rec) tells them apart. Passed on as a FIN, the
// reset would let the API server's close frame (v5) come back and be
// recorded, where through a direct connection it is lost (seen: 3 and 7
// of 30 v5 net/backend-leg/reset cases recorded the server's close).
func (r *relay) pipe(front net.Conn, frontTLS, up *tls.Conn, ubr *bufio.Reader, rec *fakeapiserver.Recorder) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // target -> API server
		defer wg.Done()
		_, err := io.Copy(up, front)
		if (err != nil && errors.Is(err, syscall.ECONNRESET)) || rec.Close().TCP == fakeapiserver.TCPReset {
			resetTLS(up)
			return
		}
		_ = up.CloseWrite()
	}()
	go func() { // API server -> target
		defer wg.Done()
		_, err := io.Copy(front, ubr)
		if err != nil && errors.Is(err, syscall.ECONNRESET) {
			_ = front.Close()
			return
		}
		_ = frontTLS.CloseWrite()
	}()
	wg.Wait()
	_ = front.Close()
	_ = up.Close()
}

// resetTLS aborts c's TCP connection with a reset.
func resetTLS(c *tls.Conn) {
	if tcp, ok := c.NetConn().(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = c.Close()
}

// prefixConn reads from r (bytes already buffered, then the connection).
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func (r *relay) add(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.tag != "" {
		r.sessions[s.tag] = s
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// wait waits until the session tagged tag has been upgraded.
func (r *relay) wait(ctx context.Context, tag string) (*session, error) {
	for {
		r.mu.Lock()
		s, ok := r.sessions[tag]
		changed := r.changed
		r.mu.Unlock()
		if ok {
			return s, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("no exec tagged %s reached the API server: %w", tag, ctx.Err())
		}
	}
}

// tagOf finds the session tag in an exec's command.
func tagOf(command []string) string {
	for _, a := range command {
		if t, ok := strings.CutPrefix(a, tagEnv+"="); ok {
			return t
		}
	}
	return ""
}
