package proxyundertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// waitTimeout bounds every wait for an event in these tests.
const waitTimeout = 10 * time.Second

// fakeBackend is a minimal API server exec endpoint: it negotiates the first
// offered execproto subprotocol (403 when there is none), greets with an
// empty stdout frame, echoes stdin as stdout, and records everything it
// receives, close frame included. Plain requests get a JSON echo of what
// arrived.
type fakeBackend struct {
	srv    *httptest.Server
	opened chan *backendConn // every upgraded connection, in order
	dials  atomic.Int32      // upgrade requests that arrived
	plains atomic.Int32      // plain (not upgrade) requests that arrived
	// lingerNanos: after the close handshake, keep the TCP connection open
	// this long and record "peer closed first" if the proxy closes it before.
	lingerNanos atomic.Int64
	// hold, if set before the first upgrade request, makes the fake wait
	// for it to close before answering an upgrade; arrived gets a value
	// when an upgrade request has arrived.
	hold    chan struct{}
	arrived chan struct{}
}

func newFakeBackend(t *testing.T) *fakeBackend {
	f := &fakeBackend{opened: make(chan *backendConn, 64), arrived: make(chan struct{}, 64)}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// plainEcho is the fake's answer to a non-WebSocket request.
type plainEcho struct {
	Path   string `json:"path"`
	Query  string `json:"query"`
	Auth   string `json:"auth"`
	Cookie string `json:"cookie,omitempty"`
	Method string `json:"method,omitempty"` // set for a method other than GET
}

func (f *fakeBackend) serve(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		f.plains.Add(1)
		e := plainEcho{Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"), Cookie: r.Header.Get("Cookie")}
		if r.Method != http.MethodGet {
			e.Method = r.Method
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(e)
		return
	}
	f.dials.Add(1)
	select {
	case f.arrived <- struct{}{}:
	default:
	}
	if f.hold != nil {
		<-f.hold
	}
	if strings.Contains(r.URL.Path, "/pods/forbidden/") {
		http.Error(w, `pods "forbidden" is forbidden: User "test" cannot create resource "pods/exec"`, http.StatusForbidden)
		return
	}
	offered := websocket.Subprotocols(r)
	proto, err := execproto.Negotiate(offered)
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	hdr := http.Header{}
	if proto != execproto.ProtocolNone {
		hdr.Set("Sec-Websocket-Protocol", string(proto))
	}
	c, err := (&websocket.Upgrader{}).Upgrade(w, r, hdr)
	if err != nil {
		return
	}
	b := &backendConn{
		offered:  offered,
		protocol: proto,
		query:    r.URL.Query(),
		path:     r.URL.Path,
		auth:     r.Header.Get("Authorization"),
		conn:     c,
		linger:   time.Duration(f.lingerNanos.Load()),
		events:   make(chan recorded, 1024),
		done:     make(chan struct{}),
	}
	f.opened <- b
	b.run()
}

// recorded is one thing the fake backend received.
type recorded struct {
	kind string // "message", "close" (a close frame) or "eof" (the connection ended without one)
	typ  int
	data []byte
	code int
	text string
	err  error
}

func (r recorded) String() string {
	switch r.kind {
	case "message":
		t := "binary"
		if r.typ == websocket.TextMessage {
			t = "text"
		}
		return fmt.Sprintf("message %s %q", t, r.data)
	case "close":
		return fmt.Sprintf("close %d %q", r.code, r.text)
	}
	return r.kind
}

func messageString(typ int, data []byte) string {
	return recorded{kind: "message", typ: typ, data: data}.String()
}

// backendConn is one exec session on the fake backend.
type backendConn struct {
	offered  []string
	protocol execproto.Protocol
	query    url.Values
	path     string
	auth     string
	conn     *websocket.Conn
	linger   time.Duration

	wmu       sync.Mutex // the fake's own writers (echo, flood, close) take turns
	sentClose bool

	mu     sync.Mutex
	log    []recorded
	events chan recorded  // every record, for tests that wait for one
	done   chan struct{}  // closed when the session is over and the log final
	flood  sync.WaitGroup // flood writers
}

func (b *backendConn) record(r recorded) {
	b.mu.Lock()
	b.log = append(b.log, r)
	b.mu.Unlock()
	select {
	case b.events <- r:
	default:
	}
}

func (b *backendConn) write(typ int, data []byte) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	_ = b.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	return b.conn.WriteMessage(typ, data)
}

func (b *backendConn) run() {
	defer close(b.done)
	gotClose := false
	b.conn.SetCloseHandler(func(code int, text string) error {
		gotClose = true
		b.record(recorded{kind: "close", code: code, text: text})
		b.wmu.Lock()
		defer b.wmu.Unlock()
		if !b.sentClose { // answer the close frame, as a server does
			b.sentClose = true
			_ = b.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
		}
		return nil
	})
	// The API server writes an empty frame on the lowest writable channel on open.
	_ = b.write(execproto.Encode(b.protocol, execproto.StreamStdout, nil))
	for {
		typ, data, err := b.conn.ReadMessage()
		if err != nil {
			if !gotClose {
				b.record(recorded{kind: "eof", err: err})
			}
			break
		}
		b.record(recorded{kind: "message", typ: typ, data: data})
		fr, err := execproto.Decode(b.protocol, typ, data)
		if err != nil || fr == nil || fr.Stream != execproto.StreamStdin {
			continue
		}
		if string(fr.Data) == "flood\n" {
			b.flood.Add(1)
			go b.floodStdout()
			continue
		}
		_ = b.write(execproto.Encode(b.protocol, execproto.StreamStdout, fr.Data))
	}
	if gotClose && b.linger > 0 {
		// RFC 6455 section 7.1.1: the server closes TCP first; a client
		// that does not wait for it may turn its close into an RST.
		_ = b.conn.NetConn().SetReadDeadline(time.Now().Add(b.linger))
		if _, err := b.conn.NetConn().Read(make([]byte, 1)); !isTimeout(err) {
			b.record(recorded{kind: "peer closed first", err: err})
		}
	}
	// The server closes TCP first once the close handshake is over.
	_ = b.conn.Close()
	b.flood.Wait()
}

// floodStdout writes output until a write fails, like `yes` in the shell.
func (b *backendConn) floodStdout() {
	defer b.flood.Done()
	chunk := []byte(strings.Repeat("y\n", 8<<10))
	for {
		if err := b.write(execproto.Encode(b.protocol, execproto.StreamStdout, chunk)); err != nil {
			return
		}
	}
}

// closeWith starts a close handshake from the backend; run ends when the
// proxy answers.
func (b *backendConn) closeWith(code int, text string) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.sentClose = true
	_ = b.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
}

// drop closes the TCP connection without a close frame.
func (b *backendConn) drop() { _ = b.conn.NetConn().Close() }

// waitDone waits for the session to be over and returns its log.
func (b *backendConn) waitDone(t *testing.T) []string {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(waitTimeout):
		t.Fatalf("fake backend: session still open after %v; received so far: %v", waitTimeout, b.received())
	}
	return b.received()
}

func (b *backendConn) received() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, len(b.log))
	for i, r := range b.log {
		out[i] = r.String()
	}
	return out
}

// next waits for the next record.
func (b *backendConn) next(t *testing.T) recorded {
	t.Helper()
	select {
	case r := <-b.events:
		return r
	case <-time.After(waitTimeout):
		t.Fatalf("fake backend: nothing received within %v", waitTimeout)
		return recorded{}
	}
}

// accept waits for the next backend session.
func (f *fakeBackend) accept(t *testing.T) *backendConn {
	t.Helper()
	select {
	case b := <-f.opened:
		return b
	case <-time.After(waitTimeout):
		t.Fatalf("fake backend: no session within %v", waitTimeout)
		return nil
	}
}

// closeError returns err as a *websocket.CloseError, failing otherwise.
func closeError(t *testing.T, err error) *websocket.CloseError {
	t.Helper()
	var ce *websocket.CloseError
	require.True(t, errors.As(err, &ce), "want a close frame, got %v", err)
	return ce
}
