package execclient

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	spdyframe "github.com/moby/spdystream/spdy"
	"github.com/stretchr/testify/require"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/execconform/execconform/execproto"
)

// spdyServer is an in-test SPDY exec endpoint built on k8s.io/streaming's
// httpstream.Handshake and spdy.NewResponseUpgrader, as the kubelet is. It
// taps the hijacked connection to see every frame the client sends and how
// the client's TCP ends.
type spdyServer struct {
	ts        *httptest.Server
	url       string // http(s)://.../exec?...
	tlsConfig *tls.Config
	conns     chan *spdySrvConn
	hold      chan struct{} // closed at cleanup: handlers return
}

// spdySrvOpts sets a spdyServer's behaviour.
type spdySrvOpts struct {
	tls          bool
	versions     []execproto.Protocol // accepted, in order; default the kubelet's
	refuseStatus int                  // refuse every upgrade with this status
	refuseBody   string
	handle       func(*spdySrvConn) // after the streams arrived; default spdyEcho
}

// spdySrvConn is the server side of one session.
type spdySrvConn struct {
	req       *http.Request
	proto     execproto.Protocol
	conn      httpstream.Connection
	connReady chan struct{}          // closed once conn is set
	created   chan httpstream.Stream // streams in the order the client created them
	streams   map[string]httpstream.Stream
	frames    chan string   // what the client sent: "SYN_STREAM stdin", "DATA stdin", "FIN stdin", "RST_STREAM stdin", "GOAWAY", "PING"
	readEnd   chan error    // how the client's TCP ended, as the server read it
	stdin     chan []byte   // what spdyEcho read on stdin
	stdinEO   chan struct{} // closed when spdyEcho read stdin's end
	resizes   chan string   // what the resize stream carried
	srv       *spdyServer
}

func newSPDYServer(t *testing.T, o spdySrvOpts) *spdyServer {
	t.Helper()
	s := &spdyServer{conns: make(chan *spdySrvConn, 16), hold: make(chan struct{})}
	versions := o.versions
	if versions == nil {
		versions = execproto.KubeletSPDYProtocols
	}
	var names []string
	for _, v := range versions {
		names = append(names, string(v))
	}
	if o.handle == nil {
		o.handle = spdyEcho
	}
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.refuseStatus != 0 {
			http.Error(w, o.refuseBody, o.refuseStatus)
			return
		}
		proto, err := httpstream.Handshake(r, w, names)
		if err != nil {
			return // Handshake wrote the refusal
		}
		sc := &spdySrvConn{
			req: r, proto: execproto.Protocol(proto), srv: s,
			created:   make(chan httpstream.Stream, 8),
			connReady: make(chan struct{}),
			frames:    make(chan string, 1000),
			readEnd:   make(chan error, 1),
			stdin:     make(chan []byte, 100),
			stdinEO:   make(chan struct{}),
			resizes:   make(chan string, 10),
		}
		conn := spdy.NewResponseUpgrader().UpgradeResponse(&tapWriter{ResponseWriter: w, sc: sc}, r,
			func(st httpstream.Stream, _ <-chan struct{}) error {
				sc.created <- st
				return nil
			})
		if conn == nil {
			return
		}
		sc.conn = conn
		close(sc.connReady)
		defer conn.Close()
		if !sc.awaitStreams() {
			return
		}
		s.conns <- sc
		o.handle(sc)
		select {
		case <-conn.CloseChan():
		case <-s.hold:
		}
	}))
	if o.tls {
		s.ts.StartTLS()
		s.tlsConfig = s.ts.Client().Transport.(*http.Transport).TLSClientConfig
	} else {
		s.ts.Start()
	}
	s.url = s.ts.URL + execPath
	t.Cleanup(s.ts.Close)
	t.Cleanup(func() { close(s.hold) })
	return s
}

// awaitStreams waits, as the kubelet does, for the streams the request
// asks for; false if the connection ended first.
func (sc *spdySrvConn) awaitStreams() bool {
	q := sc.req.URL.Query()
	tty := q.Get("tty") == "true"
	want := 1 // error
	for _, k := range []string{"stdin", "stdout"} {
		if q.Get(k) == "true" {
			want++
		}
	}
	if q.Get("stderr") == "true" && !tty {
		want++
	}
	if tty && spdyHasResize(sc.proto) {
		want++
	}
	sc.streams = map[string]httpstream.Stream{}
	for len(sc.streams) < want {
		select {
		case st := <-sc.created:
			sc.streams[st.Headers().Get(execproto.HeaderStreamType)] = st
		case <-sc.conn.CloseChan():
			return false
		case <-sc.srv.hold:
			return false
		}
	}
	return true
}

// spdyEcho echoes stdin on stdout. "exit N" makes it write the exit status
// N on the error stream, close it and end the connection as the kubelet
// does (RST_STREAM, GOAWAY, then TCP). At stdin's end it writes "stdin
// closed" on stdout. The resize stream goes to resizes.
func spdyEcho(sc *spdySrvConn) {
	if rs := sc.streams[execproto.StreamTypeResize]; rs != nil {
		go func() {
			sc2 := bufio.NewScanner(rs)
			for sc2.Scan() {
				sc.resizes <- sc2.Text()
			}
		}()
	}
	in, out := sc.streams[execproto.StreamTypeStdin], sc.streams[execproto.StreamTypeStdout]
	buf := make([]byte, 4096)
	for {
		n, err := in.Read(buf)
		if err != nil {
			close(sc.stdinEO)
			out.Write([]byte("stdin closed\n"))
			return
		}
		msg := string(buf[:n])
		sc.stdin <- bytes.Clone(buf[:n])
		var code int
		if _, err := fmt.Sscanf(msg, "exit %d", &code); err == nil {
			es := sc.streams[execproto.StreamTypeError]
			if b := execproto.EncodeStatus(sc.proto, execproto.ExitStatus([]string{"sh"}, code)); b != nil {
				es.Write(b)
			}
			es.Close()
			sc.conn.Close()
			return
		}
		out.Write(buf[:n])
	}
}

// tapWriter hands the SPDY upgrader a hijacked connection whose reads are
// tapped.
type tapWriter struct {
	http.ResponseWriter
	sc *spdySrvConn
}

// Hijack hijacks, then puts the tap under the buffered reader (with the
// bytes already buffered first, so that the tap sees the whole stream).
func (tw *tapWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := tw.ResponseWriter.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil, err
	}
	buffered, _ := rw.Reader.Peek(rw.Reader.Buffered())
	pr, pw := io.Pipe()
	tc := &tapConn{Conn: nc, sc: tw.sc, pw: pw, parsed: make(chan struct{}), endCh: make(chan struct{})}
	tc.src = io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), nc)
	go tc.parse(pr)
	return tc, bufio.NewReadWriter(bufio.NewReader(tc), rw.Writer), nil
}

// tapConn is the server's view of the client's bytes.
type tapConn struct {
	net.Conn
	sc      *spdySrvConn
	src     io.Reader
	pw      *io.PipeWriter
	parsed  chan struct{}
	endOnce sync.Once
	endCh   chan struct{} // closed once readEnd has the end
}

func (tc *tapConn) Read(p []byte) (int, error) {
	n, err := tc.src.Read(p)
	if n > 0 {
		tc.pw.Write(p[:n])
	}
	if err != nil {
		tc.ended(err)
	}
	return n, err
}

// ended records how the client's side ended, after every frame before it.
func (tc *tapConn) ended(err error) {
	tc.endOnce.Do(func() {
		tc.pw.Close()
		<-tc.parsed
		tc.sc.readEnd <- err
		close(tc.endCh)
	})
}

// Close is the server library closing the connection: send FIN, then read
// until the client closes its side (so that the client's FIN or RST is
// seen even after a GOAWAY stopped the library's reader), then close.
func (tc *tapConn) Close() error {
	raw := tc.Conn
	if t, ok := raw.(*tls.Conn); ok {
		t.CloseWrite()
		raw = t.NetConn()
	}
	raw.(*net.TCPConn).CloseWrite()
	<-tc.sc.connReady
	select {
	case <-tc.endCh: // the library's reader saw the end
	case <-tc.sc.conn.CloseChan():
		// The library stopped reading (the client's GOAWAY): read on.
		raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, tc) // EOF is a nil error here
		if err == nil {
			tc.ended(io.EOF)
		}
	}
	return tc.Conn.Close()
}

// parse names every frame the client sends.
func (tc *tapConn) parse(pr *io.PipeReader) {
	defer close(tc.parsed)
	defer io.Copy(io.Discard, pr)
	f, err := spdyframe.NewFramer(io.Discard, pr)
	if err != nil {
		return
	}
	types := map[spdyframe.StreamId]string{}
	for {
		fr, err := f.ReadFrame()
		if err != nil {
			return
		}
		switch fr := fr.(type) {
		case *spdyframe.SynStreamFrame:
			types[fr.StreamId] = fr.Headers.Get(execproto.HeaderStreamType)
			tc.sc.frames <- "SYN_STREAM " + types[fr.StreamId]
		case *spdyframe.DataFrame:
			if len(fr.Data) > 0 {
				tc.sc.frames <- "DATA " + types[fr.StreamId]
			}
			if fr.Flags&spdyframe.DataFlagFin != 0 {
				tc.sc.frames <- "FIN " + types[fr.StreamId]
			}
		case *spdyframe.RstStreamFrame:
			tc.sc.frames <- "RST_STREAM " + types[fr.StreamId]
		case *spdyframe.GoAwayFrame:
			tc.sc.frames <- "GOAWAY"
		case *spdyframe.PingFrame:
			tc.sc.frames <- "PING"
		}
	}
}

// dial connects a SPDY client to s.
func (s *spdyServer) dial(t *testing.T, o Options) *SPDYConn {
	t.Helper()
	o.TLSConfig = s.tlsConfig
	c, err := DialSPDY(testCtx(t), s.url, o)
	require.NoError(t, err)
	t.Cleanup(func() { c.Reset() })
	return c
}

// waitFrame reads the client's frames until want, returning those before it.
func (sc *spdySrvConn) waitFrame(t *testing.T, want string) []string {
	t.Helper()
	ctx := testCtx(t)
	var seen []string
	for {
		select {
		case f := <-sc.frames:
			if f == want {
				return seen
			}
			seen = append(seen, f)
		case <-ctx.Done():
			require.FailNow(t, "frame not seen", "want %q, seen %q", want, seen)
		}
	}
}

// drainFrames returns the frames seen so far without waiting.
func (sc *spdySrvConn) drainFrames() []string {
	var seen []string
	for {
		select {
		case f := <-sc.frames:
			seen = append(seen, f)
		default:
			return seen
		}
	}
}

// transportsSPDY runs f over http:// and https://.
func transportsSPDY(t *testing.T, f func(t *testing.T, tlsOn bool)) {
	for _, tlsOn := range []bool{false, true} {
		name := "http"
		if tlsOn {
			name = "https"
		}
		t.Run(name, func(t *testing.T) { f(t, tlsOn) })
	}
}
