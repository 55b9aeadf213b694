package fakeapiserver

// The SPDY exec transport, as the kubelet serves it (the API server
// tunnels a SPDY upgrade to the kubelet unchanged, and containerd's
// streaming server runs the same code). Matched, without copying, to
// k8s.io/kubelet v0.34.4 pkg/cri/streaming/remotecommand (httpstream.go:
// createHTTPStreamStreams, the v1..v4 protocol handlers' waitForStreams,
// handleResizeEvents, v1WriteStatusFunc, v4WriteStatusFunc; exec.go:
// ServeExec) and to k8s.io/streaming's httpstream and httpstream/spdy,
// which this file uses for the wire:
//
//   - negotiation: httpstream.Handshake over execproto.KubeletSPDYProtocols
//     (v4, v3, v2, channel.k8s.io, the kubelet's order); on its error the
//     kubelet answers http.Error(w, err, 400) on top of what Handshake
//     wrote, so a refusal (no version in common) is Handshake's 403, with
//     X-Accepted-Stream-Protocol-Versions, whose text/plain body carries
//     the error twice. A request without X-Stream-Protocol-Version is
//     refused too (400): kubelet 1.34's Handshake (k8s.io/apimachinery
//     v0.34.4) requires the header, so the kubelet's fallback to
//     channel.k8s.io for "" is dead code; the fake answers with its
//     words, "unable to upgrade: X-Stream-Protocol-Version is required",
//     once (k8s.io/streaming's Handshake has words of its own).
//   - the upgrade: spdy.NewResponseUpgrader, its connection read and
//     written through the session's tapConn, so that the Recorder sees the
//     SPDY frames (spdyrecord.go); an idle timeout of 4 h (the kubelet's
//     streamingConnectionIdleTimeout default).
//   - the streams: the client creates them, each named by its streamType
//     header (case-sensitive); the server waits for 1 (error) + one per
//     stdin/stdout/stderr asked for + resize when tty and v3 or later,
//     counting a stream when its SYN_REPLY has gone, for at most
//     Config.StreamCreationTimeout (the kubelet's 30 s default). Every
//     stream of a known type counts, a duplicate too (the later one
//     replaces the earlier); a stream of an unknown type (resize before v3
//     included) is replied to and not counted. v1 resets the error stream
//     and half-closes (FIN) the stdin stream once the streams are there.
//     On timeout the kubelet logs and returns: no process, no status.
//   - the exec: the process starts once the streams are there; stdout and
//     stderr go as DATA on their streams; the stdin stream's data goes to
//     the process, and its end (the client's FIN) closes the process's
//     stdin (containerd: a tty keeps its pty); the resize stream carries
//     successive JSON TerminalSize objects, read until one does not
//     decode.
//   - the end: when the process exits, the status on the error stream
//     (v4: the JSON metav1.Status, execproto.EncodeStatus; v1-v3: the
//     message, on failure only), then conn.Close(): RST_STREAM on every
//     stream, GOAWAY, and spdystream closes the TCP connection. When the
//     client's connection ends first (GOAWAY, FIN, RST) the runtime
//     semantics apply to the live process, as on WebSocket.
//
// Where the fake differs from the kubelet, and why:
//   - on a stream-creation timeout the kubelet leaves the connection open
//     (until the client leaves or the idle timeout); the fake closes it
//     (GOAWAY, then TCP) so that nothing lingers. It also stops waiting
//     when the server shuts down.
//   - a stream created after the wait blocks the kubelet's stream handler
//     for ever (its channel is no longer read), so the stream is never
//     replied to and spdystream's frame worker for it stalls; the fake
//     resets it (RST_STREAM) and counts it (BadInput.LateStream).
//   - the kubelet never reads the streams only the server writes (stdout,
//     stderr, error), nor unknown or replaced ones: DATA the client sends
//     on them blocks a spdystream frame worker. The fake reads and drops
//     it, counting it (BadInput), so that the other streams keep flowing.
//   - after the client's connection ended the kubelet keeps its socket
//     until the process exits; the fake closes it at once.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/execconform/execconform/execproto"
)

// DefaultStreamCreationTimeout is how long the server waits for a SPDY
// client's streams when Config leaves it unset: the kubelet's default
// (remotecommand.DefaultStreamCreationTimeout).
const DefaultStreamCreationTimeout = 30 * time.Second

// kubeletIdleTimeout is the kubelet's streamingConnectionIdleTimeout default.
const kubeletIdleTimeout = 4 * time.Hour

// errStreamTimeout is the kubelet's error when the streams did not come.
var errStreamTimeout = errors.New("timed out waiting for client to create streams")

// isSPDYUpgrade reports whether r asks for the SPDY/3.1 upgrade.
func isSPDYUpgrade(r *http.Request) bool {
	if !httpstream.IsUpgradeRequest(r) {
		return false
	}
	for _, v := range r.Header.Values("Upgrade") {
		if strings.Contains(strings.ToLower(v), strings.ToLower(execproto.SPDYUpgrade)) {
			return true
		}
	}
	return false
}

// spdyVersions is execproto.KubeletSPDYProtocols as Handshake takes them.
func spdyVersions() []string {
	out := make([]string, len(execproto.KubeletSPDYProtocols))
	for i, p := range execproto.KubeletSPDYProtocols {
		out[i] = string(p)
	}
	return out
}

// spdyOffer reads the client's X-Stream-Protocol-Version values as
// Handshake does: every line, split on commas, trimmed, empty names
// dropped.
func spdyOffer(h http.Header) []string {
	var out []string
	for _, line := range h.Values(execproto.HeaderProtocolVersion) {
		for _, p := range strings.Split(line, ",") {
			if p = strings.Trim(p, " "); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// serveSPDY serves an exec request that asks for the SPDY upgrade.
func (s *Server) serveSPDY(w http.ResponseWriter, r *http.Request) {
	req, ok := s.admit(w, r)
	if !ok {
		return
	}
	offered := spdyOffer(r.Header)
	if len(offered) == 0 {
		// k8s.io/apimachinery's Handshake (the kubelet's) writes nothing
		// for a missing header and returns this error, which the kubelet
		// answers with 400; k8s.io/streaming's would answer in its own
		// words first (found by peers/spdydiff).
		err := fmt.Errorf("unable to upgrade: %s is required", execproto.HeaderProtocolVersion)
		s.log.Info("request rejected: SPDY negotiation failed", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	version, err := httpstream.Handshake(r, w, spdyVersions())
	if err != nil {
		// As the kubelet: http.Error(400) after Handshake's own answer
		// (when it wrote one, this adds its text again to the body).
		s.log.Info("request rejected: SPDY negotiation failed", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "offered", execproto.RedactOffer(offered), "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !s.enter(w, r) {
		return
	}
	defer s.wg.Done()

	proto := execproto.Protocol(version)
	sess := s.newSession(req, execproto.TransportSPDY, proto, execproto.RedactOffer(offered))
	// The session ID in the upgrade response lets a test find its session.
	w.Header().Set(SessionHeader, sess.ID)
	sess.Started = time.Now()
	sess.rec = newRecorder(sess.Started, proto, s.cfg.RecordPayload, s.cfg.RecordFrames)
	sess.rec.StartTransport(execproto.TransportSPDY, proto)
	c := &spdyConn{s: sess, incoming: make(chan spdyNewStream), waited: make(chan struct{})}
	tw := &spdyTapWriter{ResponseWriter: w, rec: sess.rec}
	conn := spdy.NewResponseUpgrader().UpgradeResponse(tw, r, c.newStream)
	if conn == nil {
		// The upgrader has answered, or the hijack failed.
		close(c.waited)
		if tw.tap != nil {
			_ = tw.tap.Close()
		}
		s.log.Info("request rejected: SPDY upgrade failed", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		return
	}
	conn.SetIdleTimeout(kubeletIdleTimeout)
	c.conn = conn
	sess.t = c
	sess.tap = tw.tap

	if err := c.waitForStreams(s); err != nil {
		sess.startErr = err.Error()
		sess.noStatus = true
		sess.log.Info("SPDY exec: no process started", "err", err)
	} else {
		s.startSession(sess, req)
	}
	if !s.register(sess, func() { _ = conn.Close(); _ = tw.tap.Close() }) {
		return
	}
	s.runSession(sess)
}

// spdyTapWriter wraps the http.ResponseWriter given to the SPDY upgrader
// so that the hijacked connection is a tapConn recording into rec from its
// first byte (spdystream starts reading before the upgrader returns), and
// so that the upgrader's buffered reader reads through the tap.
type spdyTapWriter struct {
	http.ResponseWriter
	rec *Recorder
	tap *tapConn
}

func (w *spdyTapWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	tap, brw, err := hijackTap(w.ResponseWriter)
	if err != nil {
		return nil, nil, err
	}
	w.tap = tap
	w.tap.rec.Store(w.rec)
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		w.tap.pending = append([]byte(nil), b...)
	}
	return w.tap, bufio.NewReadWriter(bufio.NewReader(w.tap), bufio.NewWriter(w.tap)), nil
}

// spdyNewStream is a stream the client created, and the channel closed
// once its SYN_REPLY is queued.
type spdyNewStream struct {
	st        httpstream.Stream
	replySent <-chan struct{}
}

// spdyConn is a session's SPDY connection: one SPDY stream per exec
// stream. Writes go straight to spdystream (it frames each write whole,
// under its own lock); a goroutine per stream the client may write reads
// it.
type spdyConn struct {
	s        *Session
	conn     httpstream.Connection
	incoming chan spdyNewStream
	waited   chan struct{} // closed when waitForStreams has returned
	// streams by exec channel, set by waitForStreams and read-only after.
	streams [execproto.NumStreams]httpstream.Stream
	// unread are the streams nobody reads for the session: unknown
	// types and replaced duplicates; drained by start.
	unread []httpstream.Stream
}

// newStream is the upgrader's NewStreamHandler: it hands the stream to
// waitForStreams, or resets a stream that comes after the wait.
func (c *spdyConn) newStream(st httpstream.Stream, replySent <-chan struct{}) error {
	select {
	case c.incoming <- spdyNewStream{st, replySent}:
		return nil
	case <-c.waited:
		c.s.ignored(&c.s.badInput.LateStream, fmt.Sprintf("stream %d (streamType %q) created after the server stopped waiting for streams: reset", st.Identifier(), st.Headers().Get(execproto.HeaderStreamType)))
		return errors.New("fakeapiserver: stream created after the wait for streams")
	}
}

// expectedStreams is how many streams the kubelet waits for.
func (c *spdyConn) expectedStreams() int {
	s := c.s
	n := 1 // the error stream
	for _, b := range []bool{s.Stdin, s.Stdout, s.Stderr, s.TTY && c.resizes()} {
		if b {
			n++
		}
	}
	return n
}

// resizes reports whether the version has the resize stream (v3 and later).
func (c *spdyConn) resizes() bool {
	return c.s.Protocol == execproto.SPDYProtocolV3 || c.s.Protocol == execproto.SPDYProtocolV4
}

// waitForStreams waits, as the kubelet's protocol handlers do, until the
// expected number of streams have been replied to, or the stream
// creation timeout.
func (c *spdyConn) waitForStreams(srv *Server) error {
	defer close(c.waited)
	s := c.s
	expired := time.NewTimer(srv.cfg.StreamCreationTimeout)
	defer expired.Stop()
	replied := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	expected, received := c.expectedStreams(), 0
	for received < expected {
		select {
		case ns := <-c.incoming:
			typ := ns.st.Headers().Get(execproto.HeaderStreamType)
			ch, ok := execproto.StreamOfType(typ)
			if !ok || execproto.StreamType(ch) != typ || (ch == execproto.StreamResize && !c.resizes()) {
				// The kubelet: "unexpected stream type", replied, not counted.
				s.ignored(&s.badInput.UnknownStream, fmt.Sprintf("stream %d of unexpected streamType %q on %s", ns.st.Identifier(), typ, s.Protocol))
				c.unread = append(c.unread, ns.st)
				continue
			}
			if prev := c.streams[ch]; prev != nil {
				s.ignored(&s.badInput.DuplicateStream, fmt.Sprintf("second %s stream (%d after %d): the later one is used", typ, ns.st.Identifier(), prev.Identifier()))
				c.unread = append(c.unread, prev)
			}
			c.streams[ch] = ns.st
			go func(sent <-chan struct{}) {
				select {
				case <-sent:
					select {
					case replied <- struct{}{}:
					case <-stop:
					}
				case <-stop:
				}
			}(ns.replySent)
		case <-replied:
			received++
		case <-expired.C:
			return errStreamTimeout
		case <-srv.ctx.Done():
			return errors.New("server shutting down while waiting for streams")
		}
	}
	if s.Protocol == execproto.SPDYProtocolV1 {
		// kubelet 1.0's v1: the error stream is reset as the wait ends
		// (its status is then written into the reset stream), and the
		// server half-closes stdin.
		if st := c.streams[execproto.StreamError]; st != nil {
			_ = st.Reset()
		}
		if st := c.streams[execproto.StreamStdin]; st != nil {
			_ = st.Close()
		}
	}
	return nil
}

// start runs the connection's goroutines on wg: a watcher of the
// connection's end, and a reader of every stream the client may write.
func (c *spdyConn) start(wg *sync.WaitGroup) {
	s := c.s
	wg.Add(1)
	go func() { defer wg.Done(); c.watch() }()
	for ch, st := range c.streams {
		if st == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch byte(ch) {
			case execproto.StreamStdin:
				c.readStdin(st)
			case execproto.StreamResize:
				c.readResize(st)
			default:
				c.drain(st, &s.badInput.ServerChannel, fmt.Sprintf("client wrote on the %s stream, which only the server writes", execproto.StreamType(byte(ch))))
			}
		}()
	}
	for _, st := range c.unread {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.drain(st, &s.badInput.UnknownStream, fmt.Sprintf("client wrote on stream %d, which the server does not read", st.Identifier()))
		}()
	}
}

// watch ends the session's connection when the client's ends (its GOAWAY,
// FIN or RST end spdystream's read loop), and closes the connection once
// the session's connection has ended for any reason.
func (c *spdyConn) watch() {
	s := c.s
	select {
	case <-c.conn.CloseChan():
		cr := s.rec.Close()
		reason := "connection closed"
		switch {
		case cr.ClientSent:
			reason = fmt.Sprintf("client sent GOAWAY (status %d)", cr.ClientCode)
		case cr.TCP != TCPOpen:
			reason = "connection closed: " + cr.TCP
		}
		s.endWS(reason)
	case <-s.wsDone:
	}
	_ = c.conn.Close()
	_ = s.tap.Close()
}

// clientGone reports whether the client's side of the connection has ended.
func (c *spdyConn) clientGone() bool {
	select {
	case <-c.conn.CloseChan():
		return true
	case <-c.s.wsDone:
		return true
	default:
		return false
	}
}

// readStdin copies the stdin stream to the process. Its end while the
// connection lives is the client's half-close (FIN): the process's stdin
// closes; an end with the connection is a disconnect, which the run loop
// handles.
func (c *spdyConn) readStdin(st httpstream.Stream) {
	s := c.s
	if s.proc == nil || !s.Stdin {
		c.drain(st, nil, "stdin data on a session without stdin")
		return
	}
	buf := make([]byte, 32*1024)
	for {
		n, err := st.Read(buf)
		if n > 0 {
			s.writeStdin(append([]byte(nil), buf[:n]...))
		}
		if err != nil {
			switch {
			case c.clientGone():
			case s.rec.StdinFIN():
				s.log.Debug("stdin: the client half-closed its stream")
				s.closeStdinByClient()
			default:
				// A RST_STREAM (httpstream's Connection.Close resets
				// every stream before its GOAWAY): the copy ends, as
				// the kubelet's does, but no half-close was asked.
				s.log.Debug("stdin: the client reset its stream")
				s.proc.closeStdin()
			}
			return
		}
	}
}

// readResize decodes successive TerminalSize objects from the resize
// stream, as the kubelet's handleResizeEvents does, until one does not
// decode; the rest is drained.
func (c *spdyConn) readResize(st httpstream.Stream) {
	s := c.s
	dec := json.NewDecoder(st)
	for {
		var size execproto.TerminalSize
		if err := dec.Decode(&size); err != nil {
			if !errors.Is(err, io.EOF) && !c.clientGone() {
				s.rec.protocolError("resize: " + err.Error())
			}
			break
		}
		s.resize(size)
	}
	c.drain(st, nil, "resize data after a size that did not decode")
}

// drain reads st to its end and drops what it reads, counting each read
// in n (a counter of s.badInput, or nil for a protocol error only).
func (c *spdyConn) drain(st httpstream.Stream, n *int64, what string) {
	s := c.s
	buf := make([]byte, 4096)
	for {
		k, err := st.Read(buf)
		if k > 0 {
			if n != nil {
				s.ignored(n, what)
			} else {
				s.rec.protocolError(what)
			}
		}
		if err != nil {
			return
		}
	}
}

// established does nothing: the kubelet writes nothing when the SPDY
// streams are up (the client knows from their replies).
func (c *spdyConn) established() {}

// send writes data as DATA on the stream of channel stream; a stream the
// client did not create drops it, as the runtime drops output nobody
// asked for.
func (c *spdyConn) send(stream byte, data []byte) bool {
	s := c.s
	select {
	case <-s.wsDone:
		return false
	default:
	}
	st := c.streams[stream]
	if st == nil || len(data) == 0 {
		return true
	}
	if _, err := st.Write(data); err != nil {
		s.endWS("write: " + err.Error())
		return false
	}
	return true
}

// closeAndWait ends the connection as the kubelet's ServeExec does when
// the exec returns (conn.Close(): RST_STREAM on every stream, GOAWAY;
// spdystream then closes the TCP connection) and waits, bounded by
// CloseTimeout, for spdystream's read loop to end.
func (c *spdyConn) closeAndWait() {
	s := c.s
	_ = c.conn.Close()
	t := time.NewTimer(s.srv.cfg.CloseTimeout)
	defer t.Stop()
	select {
	case <-c.conn.CloseChan():
	case <-t.C:
	case <-s.wsDone:
	}
	s.endWS("server closed the connection")
}
