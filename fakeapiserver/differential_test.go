// Differential tests: the fake API server against the real server-side code
// of Kubernetes, k8s.io/streaming/pkg/httpstream/wsstream (what the kubelet
// and the API server's stream translator serve exec with), driven by the same
// client with the same bytes. Where the two legitimately differ, the
// difference is asserted explicitly with the reason, so that these tests
// document how faithful the fake is.

package fakeapiserver_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/execconform/execconform/fakeapiserver"
)

// The subprotocol names, spelled out here rather than taken from execproto,
// so that the reference side does not depend on the code under test.
const (
	pNone     = ""
	pV1       = "channel.k8s.io"
	pBase64   = "base64.channel.k8s.io"
	pV4       = "v4.channel.k8s.io"
	pV4Base64 = "v4.base64.channel.k8s.io"
	pV5       = "v5.channel.k8s.io"
)

var allWSProtocols = []string{pNone, pV1, pBase64, pV4, pV4Base64, pV5}

// The reference server logs every receive error through klog; keep the
// test output for test failures.
func init() { klog.SetLogger(logr.Discard()) }

func isBase64Proto(p string) bool { return p == pBase64 || p == pV4Base64 }
func isJSONStatus(p string) bool  { return p == pV4 || p == pV4Base64 || p == pV5 }

// kubeletSuccess is json.Marshal(metav1.Status{Status: metav1.StatusSuccess}):
// what the kubelet writes on the error channel, from v4 on, when the command
// exits 0 (before v4 it writes nothing on success).
const kubeletSuccess = `{"metadata":{},"status":"Success"}`

// ---------------------------------------------------------------------------
// The reference: wsstream set up as the kubelet sets it up for exec.

// refResult is what the reference handler saw for one request.
type refResult struct {
	protocol string
	openErr  error
	// stdinEOF: reading stdin returned EOF (the echo loop ended);
	// statusErr is the error of the status write that followed (nil: the
	// connection was still open when stdin ended).
	stdinEOF  bool
	statusErr error
}

// reference is an httptest server whose exec handler is wsstream with the
// kubelet's channels and protocols, running a built-in "cat": it echoes
// stdin on stdout until stdin ends, then writes the success status and
// closes, as the kubelet does when the command exits.
type reference struct {
	srv *httptest.Server
	wg  sync.WaitGroup

	mu      sync.Mutex
	results map[string]chan refResult
}

func startReference(t *testing.T) *reference {
	t.Helper()
	ref := &reference{results: map[string]chan refResult{}}
	ref.srv = httptest.NewServer(http.HandlerFunc(ref.serve))
	t.Cleanup(func() {
		ref.srv.Close()
		// Hijacked connections outlive srv.Close: every handler must have
		// ended by now (each test closes its connections first).
		done := make(chan struct{})
		go func() { ref.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("reference exec handlers still running after the test")
		}
	})
	return ref
}

func (ref *reference) slot(id string) chan refResult {
	ref.mu.Lock()
	defer ref.mu.Unlock()
	ch, ok := ref.results[id]
	if !ok {
		ch = make(chan refResult, 1)
		ref.results[id] = ch
	}
	return ch
}

// result waits for the reference handler of request id to finish.
func (ref *reference) result(t *testing.T, id string) refResult {
	t.Helper()
	select {
	case r := <-ref.slot(id):
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("reference handler for %s did not finish", id)
		return refResult{}
	}
}

func readOrIgnore(on bool) wsstream.ChannelType {
	if on {
		return wsstream.ReadChannel
	}
	return wsstream.IgnoreChannel
}

func writeOrIgnore(on bool) wsstream.ChannelType {
	if on {
		return wsstream.WriteChannel
	}
	return wsstream.IgnoreChannel
}

func (ref *reference) serve(w http.ResponseWriter, r *http.Request) {
	ref.wg.Add(1)
	defer ref.wg.Done()
	q := r.URL.Query()
	flag := func(name string) bool { b, _ := strconv.ParseBool(q.Get(name)); return b }
	stdin, stdout, stderr := flag("stdin"), flag("stdout"), flag("stderr")
	if flag("tty") {
		stderr = false
	}
	// The kubelet's exec channels: stdin read, stdout and stderr write (when
	// requested), the error channel always written, resize read.
	channels := []wsstream.ChannelType{
		readOrIgnore(stdin), writeOrIgnore(stdout), writeOrIgnore(stderr),
		wsstream.WriteChannel, wsstream.ReadChannel,
	}
	// Which server answers, as the API server dispatches exec (k8s.io/kubernetes
	// pkg/registry/core/pod/rest/subresources.go, TranslateStreamCloseWebsocketRequests
	// on): an offer with v5 anywhere in it goes to the API server's own stream
	// translator, whose WebSocket server supports only v5 (k8s.io/apiserver
	// pkg/util/proxy/websocket.go); any other to the kubelet, with its five
	// protocols (k8s.io/kubelet pkg/cri/streaming/remotecommand/websocket.go).
	var protocols map[string]wsstream.ChannelProtocolConfig
	if wsstream.IsWebSocketRequestWithStreamCloseProtocol(r) {
		protocols = map[string]wsstream.ChannelProtocolConfig{pV5: {Binary: true, Channels: channels}}
	} else {
		protocols = wsstream.NewDefaultChannelProtocols(channels)
		protocols[pV4] = wsstream.ChannelProtocolConfig{Binary: true, Channels: channels}
		protocols[pV4Base64] = wsstream.ChannelProtocolConfig{Binary: false, Channels: channels}
	}

	var res refResult
	defer func() { ref.slot(q.Get("diffid")) <- res }()
	conn := wsstream.NewConn(protocols)
	proto, streams, err := conn.Open(w, r)
	if err != nil {
		res.openErr = err
		return
	}
	defer conn.Close() // as the kubelet's handler: close frame 1000, then TCP close
	res.protocol = proto

	// The empty message on the lowest writable channel.
	switch {
	case stdout:
		_, _ = streams[1].Write(nil)
	case stderr:
		_, _ = streams[2].Write(nil)
	default:
		_, _ = streams[3].Write(nil)
	}
	// The kubelet drains the resize channel in its own goroutine; a reader is
	// needed, or a resize message would block wsstream's read loop.
	go func() { _, _ = io.Copy(io.Discard, streams[4]) }()

	_, _ = io.Copy(streams[1], streams[0]) // cat
	res.stdinEOF = true
	if isJSONStatus(proto) {
		_, res.statusErr = streams[3].Write([]byte(kubeletSuccess))
	}
}

// ---------------------------------------------------------------------------
// The client: gorilla, with raw frame access.

// endpoint is one of the two servers.
type endpoint struct {
	name   string // "wsstream" or "fake"
	base   *url.URL
	header http.Header
	ref    *reference // nil for the fake
}

var diffSeq atomic.Int64

func endpoints(t *testing.T, cfg fakeapiserver.Config) (kube, fake endpoint) {
	t.Helper()
	ref := startReference(t)
	cfg.Insecure = true // both plain ws://, so that the client path is the same
	srv := startServer(t, cfg)
	ru, err := url.Parse(ref.srv.URL)
	require.NoError(t, err)
	kube = endpoint{name: "wsstream", base: ru, header: http.Header{}, ref: ref}
	fake = endpoint{name: "fake", base: srv.URL(), header: auth(srv)}
	return kube, fake
}

// streams says which of stdin, stdout, stderr are requested.
type streams struct{ stdin, stdout, stderr bool }

var allStreams = streams{true, true, true}

// dialed is the outcome of one upgrade request.
type dialed struct {
	id     string
	status int
	header http.Header
	body   string
	c      *wsClient // nil unless 101
}

// protocolHeader gives the response's Sec-WebSocket-Protocol: its value and
// whether the header was present at all.
func (d dialed) protocolHeader() (string, bool) {
	v, ok := d.header[http.CanonicalHeaderKey("Sec-WebSocket-Protocol")]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// dial sends one exec upgrade request for cat, with one
// Sec-WebSocket-Protocol header line per element of lines (none if nil).
func (e endpoint) dial(t *testing.T, lines []string, s streams, replyClose bool) dialed {
	t.Helper()
	id := fmt.Sprintf("d%d", diffSeq.Add(1))
	u := *e.base
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path = "/api/v1/namespaces/default/pods/fakepod/exec"
	q := url.Values{"command": {"cat"}, "diffid": {id}}
	q.Set("stdin", strconv.FormatBool(s.stdin))
	q.Set("stdout", strconv.FormatBool(s.stdout))
	q.Set("stderr", strconv.FormatBool(s.stderr))
	q.Set("tty", "false")
	u.RawQuery = q.Encode()
	h := e.header.Clone()
	if lines != nil {
		h["Sec-Websocket-Protocol"] = lines
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(u.String(), h)
	out := dialed{id: id}
	if resp != nil {
		out.status, out.header = resp.StatusCode, resp.Header
		if resp.Body != nil {
			b, _ := io.ReadAll(resp.Body)
			out.body = string(b)
		}
	}
	if err != nil {
		require.ErrorIs(t, err, websocket.ErrBadHandshake, "%s: dial", e.name)
		return out
	}
	out.c = newWSClient(t, ws, replyClose)
	return out
}

// wsEvent is one thing the client read.
type wsEvent struct {
	kind string // "msg", "close" (the server's close frame), "pong", "end"
	mt   int
	raw  []byte
	code int
	err  error
}

// wsClient reads everything the server sends into an event list.
type wsClient struct {
	ws         *websocket.Conn
	proto      string
	replyClose bool
	wmu        sync.Mutex // one writer at a time, gorilla's or raw
	done       chan struct{}

	mu      sync.Mutex
	evs     []wsEvent
	cur     int
	changed chan struct{}
}

func newWSClient(t *testing.T, ws *websocket.Conn, replyClose bool) *wsClient {
	c := &wsClient{ws: ws, proto: ws.Subprotocol(), replyClose: replyClose, done: make(chan struct{}), changed: make(chan struct{})}
	ws.SetCloseHandler(func(code int, text string) error {
		c.push(wsEvent{kind: "close", code: code, raw: []byte(text)})
		if c.replyClose {
			c.wmu.Lock()
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
			c.wmu.Unlock()
		}
		return nil
	})
	ws.SetPongHandler(func(s string) error {
		c.push(wsEvent{kind: "pong", raw: []byte(s)})
		return nil
	})
	go func() {
		defer close(c.done)
		for {
			mt, p, err := ws.ReadMessage()
			if err != nil {
				c.push(wsEvent{kind: "end", err: err})
				return
			}
			c.push(wsEvent{kind: "msg", mt: mt, raw: p})
		}
	}()
	t.Cleanup(func() {
		_ = ws.Close()
		<-c.done
	})
	return c
}

func (c *wsClient) push(e wsEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evs = append(c.evs, e)
	close(c.changed)
	c.changed = make(chan struct{})
}

// next returns the next event, waiting for it (bounded: a hang is a failure).
func (c *wsClient) next(t *testing.T) wsEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		if c.cur < len(c.evs) {
			e := c.evs[c.cur]
			c.cur++
			c.mu.Unlock()
			return e
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
			t.Fatal("no event from the server within 10s")
		}
	}
}

// send writes one message through gorilla.
func (c *wsClient) send(mt int, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(mt, payload)
}

// sendRaw writes bytes as they are on the connection, bypassing gorilla.
func (c *wsClient) sendRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.ws.NetConn().Write(b)
	return err
}

// stdin writes data on channel 0, framed for the negotiated protocol.
func (c *wsClient) stdin(data []byte) error {
	mt, payload := encodeFor(c.proto, 0, data)
	return c.send(mt, payload)
}

// encodeFor and decodeFrom frame exec messages (independently of execproto).
func encodeFor(p string, ch byte, data []byte) (int, []byte) {
	if isBase64Proto(p) {
		return websocket.TextMessage, []byte(string(rune('0'+ch)) + base64.StdEncoding.EncodeToString(data))
	}
	return websocket.BinaryMessage, append([]byte{ch}, data...)
}

func decodeFrom(p string, raw []byte) (int, []byte, error) {
	if len(raw) == 0 {
		return -1, nil, errors.New("empty message")
	}
	if isBase64Proto(p) {
		data, err := base64.StdEncoding.DecodeString(string(raw[1:]))
		return int(raw[0]) - '0', data, err
	}
	return int(raw[0]), raw[1:], nil
}

// maskedFrame builds one client frame by hand (masked unless unmasked).
func maskedFrame(fin, rsv1 bool, op byte, payload []byte, unmasked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	if rsv1 {
		b0 |= 0x40
	}
	out := []byte{b0}
	var m byte = 0x80
	if unmasked {
		m = 0
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, m|byte(n))
	default:
		out = append(out, m|126, byte(n>>8), byte(n))
	}
	if unmasked {
		return append(out, payload...)
	}
	key := []byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, key...)
	for i, b := range payload {
		out = append(out, b^key[i%4])
	}
	return out
}

// outcome is what the client observed after an action.
type outcome struct {
	Stdout string   // stdout, decoded and concatenated
	ErrCh  []string // non-empty messages on the error channel
	Pongs  []string
	Close  int  // code of the server's first close frame; -1 if none
	Ended  bool // the connection ended
}

func (o outcome) String() string {
	return fmt.Sprintf("stdout=%q errch=%q pongs=%q close=%d ended=%v", o.Stdout, o.ErrCh, o.Pongs, o.Close, o.Ended)
}

// observe reads until stop says so or the connection ends.
func (c *wsClient) observe(t *testing.T, stop func(outcome) bool) outcome {
	t.Helper()
	o := outcome{Close: -1}
	for !stop(o) {
		e := c.next(t)
		switch e.kind {
		case "msg":
			ch, data, err := decodeFrom(c.proto, e.raw)
			require.NoError(t, err, "undecodable message %q", e.raw)
			switch {
			case ch == 1:
				o.Stdout += string(data)
			case ch == 3 && len(data) > 0:
				o.ErrCh = append(o.ErrCh, string(data))
			}
		case "pong":
			o.Pongs = append(o.Pongs, string(e.raw))
		case "close":
			if o.Close < 0 {
				o.Close = e.code
			}
		case "end":
			o.Ended = true
			return o
		}
	}
	return o
}

func stdoutHas(s string) func(outcome) bool {
	return func(o outcome) bool { return strings.Contains(o.Stdout, s) }
}

func untilEnd(outcome) bool { return false }

// opening reads the first message: the empty "connection established" one.
func (c *wsClient) opening(t *testing.T) wsEvent {
	t.Helper()
	e := c.next(t)
	require.Equal(t, "msg", e.kind, "first event: %+v", e)
	return e
}

// ---------------------------------------------------------------------------
// The tests.

// TestDifferentialNegotiation sends the same offers to both servers: same
// status (101 or 403), same negotiated protocol, same opening message.
func TestDifferentialNegotiation(t *testing.T) {
	kube, fake := endpoints(t, fakeapiserver.Config{})
	type side struct {
		status int
		proto  string
	}
	cases := []struct {
		name  string
		lines []string // Sec-WebSocket-Protocol header lines; nil: no header
		real  side
		fake  *side  // nil: the fake does as the real server does
		why   string // why the fake differs, when it does
	}{
		{name: "nothing offered gets binary v1", real: side{101, pNone}},
		{name: "channel.k8s.io", lines: []string{pV1}, real: side{101, pV1}},
		{name: "base64.channel.k8s.io", lines: []string{pBase64}, real: side{101, pBase64}},
		{name: "v4.channel.k8s.io", lines: []string{pV4}, real: side{101, pV4}},
		{name: "v4.base64.channel.k8s.io", lines: []string{pV4Base64}, real: side{101, pV4Base64}},
		{name: "v5.channel.k8s.io", lines: []string{pV5}, real: side{101, pV5}},
		{name: "kubectl's v5 then v4", lines: []string{pV5 + ", " + pV4}, real: side{101, pV5}},
		// v5 anywhere: the API server's translator answers, and knows only v5.
		{name: "v5 behind v4 still gets v5", lines: []string{pV4 + ", " + pV5}, real: side{101, pV5}},
		{name: "the SPDY version list gets v5", lines: []string{pV5 + ", " + pV4 + ", v3.channel.k8s.io, v2.channel.k8s.io, " + pV1}, real: side{101, pV5}},
		// Without v5 the kubelet lets the client's order win.
		{name: "the client's order wins without v5", lines: []string{pV1 + ", " + pBase64}, real: side{101, pV1}},
		{name: "the other order", lines: []string{pBase64 + ", " + pV1}, real: side{101, pBase64}},
		{name: "Headlamp's list gets v4", lines: []string{"base64.binary.k8s.io, " + pV4 + ", v3.channel.k8s.io, v2.channel.k8s.io, " + pV1}, real: side{101, pV4}},
		// A bearer-token subprotocol beside a valid Authorization header
		// stays in the offer (the header's authenticator comes first), and
		// neither server knows its name.
		{name: "a bearer token and a console's own names are skipped", lines: []string{"base64url.bearer.authorization.k8s.io.dG9rZW4, x-console.v1, " + pV4Base64 + ", " + pBase64}, real: side{101, pV4Base64}},
		{name: "unknown then known", lines: []string{"chat, " + pBase64}, real: side{101, pBase64}},
		{name: "unknown only", lines: []string{"chat, superchat"}, real: side{403, ""}},
		{name: "SPDY-only v3", lines: []string{"v3.channel.k8s.io"}, real: side{403, ""}},
		{name: "SPDY-only v2 and v3", lines: []string{"v2.channel.k8s.io, v3.channel.k8s.io"}, real: side{403, ""}},
		{name: "names are case-sensitive", lines: []string{"V5.CHANNEL.K8S.IO"}, real: side{403, ""}},
		{name: "semicolon is no separator", lines: []string{pV5 + ";" + pV4}, real: side{403, ""}},
		{name: "spaces around a name are trimmed", lines: []string{"  " + pV5 + "  ,  " + pV4}, real: side{101, pV5}},
		{name: "a duplicate is harmless", lines: []string{pV4 + ", " + pV4}, real: side{101, pV4}},
		{name: "an empty header is no offer", lines: []string{""}, real: side{101, pNone}},
		{name: "two header lines, known first", lines: []string{pV4, pV5}, real: side{101, pV4}},
		// x/net/websocket keeps empty names when it splits the header, and
		// wsstream's "" entry (binary v1) matches them.
		{name: "an empty name in the list is the none protocol", lines: []string{"chat, , " + pBase64}, real: side{101, pNone}},
		{name: "but v5 behind an empty name wins", lines: []string{"chat, , " + pV5}, real: side{101, pV5}},
		{name: "a trailing comma is the none protocol", lines: []string{"chat,"}, real: side{101, pNone}},
		// x/net/websocket reads the offer with Header.Get: the first line only.
		{name: "only the first header line counts", lines: []string{"chat", pV5}, real: side{403, ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := kube.dial(t, tc.lines, allStreams, true)
			f := fake.dial(t, tc.lines, allStreams, true)
			wantFake := tc.real
			if tc.fake != nil {
				wantFake = *tc.fake
			}
			assert.Equal(t, tc.real.status, r.status, "wsstream status")
			assert.Equal(t, wantFake.status, f.status, "fake status")
			if tc.fake == nil {
				assert.Equal(t, r.status, f.status, "same status")
			} else {
				t.Logf("known difference: %s", tc.why)
			}
			rp, rHas := r.protocolHeader()
			fp, fHas := f.protocolHeader()
			if r.status == 101 {
				assert.Equal(t, tc.real.proto, rp, "wsstream protocol")
			}
			if f.status == 101 {
				assert.Equal(t, wantFake.proto, fp, "fake protocol")
			}
			if r.status == 101 && f.status == 101 {
				// The same protocol, and the same opening message.
				if tc.fake == nil {
					assert.Equal(t, rp, fp, "same protocol")
				}
				ro, fo := r.c.opening(t), f.c.opening(t)
				if rp == fp {
					assert.Equal(t, ro.mt, fo.mt, "opening message type")
					assert.Equal(t, ro.raw, fo.raw, "opening message bytes")
				}
			}
			if r.status == 101 && rp == pNone {
				// DIFFERENCE: for the none protocol wsstream selects the
				// protocol "" and x/net/websocket then writes the header
				// with an empty value ("Sec-WebSocket-Protocol: "); the fake
				// (gorilla) leaves the header out. Clients read both as no
				// subprotocol (Header.Get gives ""); a browser offered
				// nothing, so the empty header is at worst a curiosity.
				assert.True(t, rHas, "wsstream sends an empty Sec-WebSocket-Protocol")
			}
			if f.status == 101 && fp == pNone {
				assert.False(t, fHas, "the fake sends no Sec-WebSocket-Protocol for the none protocol")
			}
			if f.status == 101 {
				// DIFFERENCE by design: the fake names its session in the
				// upgrade response; the real server sends no such header.
				assert.NotEmpty(t, f.header.Get(fakeapiserver.SessionHeader))
				if r.status == 101 {
					assert.Empty(t, r.header.Get(fakeapiserver.SessionHeader))
				}
			}
			if r.status == 403 {
				// DIFFERENCE: x/net/websocket answers a refused offer with a
				// bare "HTTP/1.1 403 Forbidden" (no headers, no body) and
				// closes; the fake answers as the API server does for its
				// own errors, with a JSON metav1.Status. Clients only use
				// the status code.
				assert.Empty(t, r.body, "wsstream's 403 has no body")
				assert.Empty(t, r.header.Get("Content-Type"))
			}
			if f.status == 403 {
				assert.Equal(t, "application/json", f.header.Get("Content-Type"))
				assert.Contains(t, f.body, `"kind":"Status"`)
				assert.Contains(t, f.body, `"code":403`)
			}
			for _, d := range []dialed{r, f} {
				if d.c != nil {
					_ = d.c.send(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
				}
			}
			rr := kube.ref.result(t, r.id)
			if r.status == 101 {
				assert.Equal(t, tc.real.proto, rr.protocol, "wsstream's own view of the protocol")
			} else {
				assert.Error(t, rr.openErr, "wsstream's Open fails")
			}
		})
	}
}

// TestDifferentialEcho: per protocol, the same opening message and the same
// echo of a stdin message (message type, channel byte or character,
// payload), and the same reply to the client's close frame.
func TestDifferentialEcho(t *testing.T) {
	kube, fake := endpoints(t, fakeapiserver.Config{})
	payload := []byte("hi\x00\xff\r\n")
	for _, p := range allWSProtocols {
		t.Run(protoName(p), func(t *testing.T) {
			var lines []string
			if p != pNone {
				lines = []string{p}
			}
			type seen struct {
				opening, echo wsEvent
				echoLen       int
				stdout        string
				closeCode     int
			}
			run := func(e endpoint) seen {
				d := e.dial(t, lines, allStreams, false)
				require.Equal(t, 101, d.status, "%s: %s", e.name, d.body)
				var s seen
				s.opening = d.c.opening(t)
				require.NoError(t, d.c.stdin(payload))
				for len(s.stdout) < len(payload) {
					ev := d.c.next(t)
					require.Equal(t, "msg", ev.kind, "%s: %+v", e.name, ev)
					ch, data, err := decodeFrom(p, ev.raw)
					require.NoError(t, err)
					require.Equal(t, 1, ch, "%s: echo on stdout", e.name)
					if s.stdout == "" {
						s.echo, s.echoLen = ev, len(data)
					}
					s.stdout += string(data)
				}
				require.NoError(t, d.c.send(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye")))
				o := d.c.observe(t, untilEnd)
				s.closeCode = o.Close
				if e.ref != nil {
					r := e.ref.result(t, d.id)
					assert.True(t, r.stdinEOF)
				}
				return s
			}
			r, f := run(kube), run(fake)

			wantType := websocket.BinaryMessage
			wantOpen := []byte{1}
			if isBase64Proto(p) {
				wantType, wantOpen = websocket.TextMessage, []byte("1")
			}
			assert.Equal(t, wantType, r.opening.mt, "wsstream opening type")
			assert.Equal(t, wantOpen, r.opening.raw, "wsstream opening bytes")
			assert.Equal(t, r.opening.mt, f.opening.mt, "same opening type")
			assert.Equal(t, r.opening.raw, f.opening.raw, "same opening bytes")

			assert.Equal(t, string(payload), r.stdout)
			assert.Equal(t, r.stdout, f.stdout, "same echo")
			assert.Equal(t, r.echo.mt, f.echo.mt, "same echo message type")
			assert.Equal(t, wantType, f.echo.mt)
			assert.Equal(t, r.echo.raw[0], f.echo.raw[0], "same channel byte/character")
			if r.echoLen == len(payload) && f.echoLen == len(payload) {
				// The echo came in one message on both sides (cat could
				// split it; it does not in practice).
				assert.Equal(t, r.echo.raw, f.echo.raw, "same echo bytes")
			}
			// Both answer a client's close (whatever its code) with 1000.
			assert.Equal(t, 1000, r.closeCode, "wsstream close reply")
			assert.Equal(t, r.closeCode, f.closeCode, "same close reply")
		})
	}
}

// TestDifferentialOpeningChannel: the empty opening message goes on the
// lowest writable channel, for every combination of requested streams.
func TestDifferentialOpeningChannel(t *testing.T) {
	kube, fake := endpoints(t, fakeapiserver.Config{})
	for _, p := range []string{pV5, pV4Base64} {
		for _, s := range []streams{{true, true, true}, {true, false, true}, {true, false, false}, {false, true, false}} {
			t.Run(fmt.Sprintf("%s/%+v", p, s), func(t *testing.T) {
				var got [2]wsEvent
				for i, e := range []endpoint{kube, fake} {
					d := e.dial(t, []string{p}, s, true)
					require.Equal(t, 101, d.status, "%s: %s", e.name, d.body)
					got[i] = d.c.opening(t)
					_ = d.c.send(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
					d.c.observe(t, untilEnd)
					if e.ref != nil {
						e.ref.result(t, d.id)
					}
				}
				assert.Equal(t, got[0].mt, got[1].mt)
				assert.Equal(t, got[0].raw, got[1].raw, "wsstream %q, fake %q", got[0].raw, got[1].raw)
			})
		}
	}
}

// TestDifferentialMalformed sends the same odd input to both, then a stdin
// line "kept\n" (which also synchronises: once it is echoed, everything sent
// before it was handled), and compares what the client observes.
func TestDifferentialMalformed(t *testing.T) {
	kube, fake := endpoints(t, fakeapiserver.Config{})
	const kept = "kept\n"
	alive := outcome{Stdout: kept, Close: -1}
	ended := func(code int) outcome { return outcome{Close: code, Ended: true} }
	b64 := func(ch byte, s string) []byte { _, b := encodeFor(pBase64, ch, []byte(s)); return b }

	cases := []struct {
		name   string
		proto  string
		action func(c *wsClient) error
		real   outcome
		fake   *outcome // nil: as real
		why    string
	}{
		// Wrong framing for the protocol: an unknown channel, ignored by both.
		{name: "base64 framing on channel.k8s.io", proto: pV1, real: alive,
			action: func(c *wsClient) error { return c.send(websocket.TextMessage, b64(0, "lost\n")) }},
		{name: "base64 framing on v4.channel.k8s.io", proto: pV4, real: alive,
			action: func(c *wsClient) error { return c.send(websocket.TextMessage, b64(0, "lost\n")) }},
		{name: "base64 framing on v5.channel.k8s.io", proto: pV5, real: alive,
			action: func(c *wsClient) error { return c.send(websocket.TextMessage, b64(0, "lost\n")) }},
		{name: "base64 framing on the none protocol", proto: pNone, real: alive,
			action: func(c *wsClient) error { return c.send(websocket.TextMessage, b64(0, "lost\n")) }},
		{name: "binary framing on base64.channel.k8s.io", proto: pBase64, real: alive,
			action: func(c *wsClient) error { return c.send(websocket.BinaryMessage, []byte("\x00lost\n")) }},
		{name: "bad base64 on v4.base64.channel.k8s.io", proto: pV4Base64, real: alive,
			action: func(c *wsClient) error { return c.send(websocket.TextMessage, []byte("0!!!not base64")) }},
		{name: "an empty message", proto: pV5, real: alive,
			action: func(c *wsClient) error { return c.send(websocket.BinaryMessage, nil) }},
		{name: "a channel byte alone", proto: pV5, real: alive,
			action: func(c *wsClient) error { return c.send(websocket.BinaryMessage, []byte{0}) }},
		{name: "data on the stdout channel", proto: pV4, real: alive,
			action: func(c *wsClient) error { return c.send(websocket.BinaryMessage, []byte("\x01lost\n")) }},

		// The v5 CLOSE signal.
		{name: "v5 CLOSE on stdin: stdin EOF, status, close 1000", proto: pV5,
			real:   outcome{Close: 1000, Ended: true, ErrCh: []string{kubeletSuccess}},
			action: func(c *wsClient) error { return c.send(websocket.BinaryMessage, []byte{255, 0}) }},
		{name: "v5 CLOSE on the error channel is a no-op", proto: pV5, real: alive,
			action: func(c *wsClient) error { return c.send(websocket.BinaryMessage, []byte{255, 3}) }},
		{
			name: "malformed v5 CLOSE of three bytes ends the connection", proto: pV5,
			action: func(c *wsClient) error { return c.send(websocket.BinaryMessage, []byte{255, 0, 0}) },
			real:   ended(1000),
		},
		{
			name: "v5 CLOSE for channel 9 ends the connection", proto: pV5,
			action: func(c *wsClient) error { return c.send(websocket.BinaryMessage, []byte{255, 9}) },
			real:   ended(1000),
		},
		{
			name: "[255, 0] on v4 is an unknown channel", proto: pV4,
			action: func(c *wsClient) error { return c.send(websocket.BinaryMessage, []byte{255, 0}) },
			real:   alive,
		},
		{
			name: "[255] alone on channel.k8s.io is an unknown channel", proto: pV1,
			action: func(c *wsClient) error { return c.send(websocket.BinaryMessage, []byte{255}) },
			real:   alive,
		},
		{
			name: "'/' on base64.channel.k8s.io is an unknown channel", proto: pBase64,
			action: func(c *wsClient) error { return c.send(websocket.TextMessage, []byte("/aGk=")) },
			real:   alive,
		},

		// Wire-level oddities, sent as raw frames.
		{
			name: "a fragmented message", proto: pV4,
			action: func(c *wsClient) error {
				return c.sendRaw(append(maskedFrame(false, false, 0x2, []byte("\x00ec"), false),
					maskedFrame(true, false, 0x0, []byte("ho\n"), false)...))
			},
			real: outcome{Stdout: "ec" + kept, Close: -1}, fake: &outcome{Stdout: "echo\n" + kept, Close: -1},
			why: "x/net/websocket's Message.Receive returns one frame, not one message: wsstream takes every fragment as a message of its own, " +
				"so the continuation's first byte ('h') is read as a channel number (unknown: dropped); gorilla reassembles the message, " +
				"so the fake delivers all of it, and records the fragmentation as a protocol error (\"a real API server reads each frame as a separate message\"). " +
				"A proxy that fragments messages loses data against a real server: the recorder shows it",
		},
		{
			name: "a reserved opcode", proto: pV4,
			action: func(c *wsClient) error {
				return c.sendRaw(maskedFrame(true, false, 0x3, []byte("\x00opcode3\n"), false))
			},
			real: outcome{Stdout: "opcode3\n" + kept, Close: -1}, fake: ptr(ended(websocket.CloseProtocolError)),
			why: "x/net/websocket does not check opcodes and hands the frame over as data; gorilla fails the connection (1002), as RFC 6455 says",
		},
		{
			name: "RSV1 set without an extension", proto: pV4,
			action: func(c *wsClient) error { return c.sendRaw(maskedFrame(true, true, 0x2, []byte("\x00rsv1\n"), false)) },
			real:   outcome{Stdout: "rsv1\n" + kept, Close: -1}, fake: ptr(ended(websocket.CloseProtocolError)),
			why: "x/net/websocket ignores the RSV bits; gorilla fails the connection (1002), as RFC 6455 says",
		},
		{name: "an unmasked client frame", proto: pV4, real: ended(websocket.CloseProtocolError),
			action: func(c *wsClient) error {
				return c.sendRaw(maskedFrame(true, false, 0x2, []byte("\x00unmasked\n"), true))
			}},
		{name: "a ping is answered with its payload", proto: pV5, real: outcome{Stdout: kept, Pongs: []string{"p1"}, Close: -1},
			action: func(c *wsClient) error { return c.sendRaw(maskedFrame(true, false, 0x9, []byte("p1"), false)) }},
		{
			name: "a close frame with the reserved code 1005 on the wire", proto: pV5,
			action: func(c *wsClient) error { return c.sendRaw(maskedFrame(true, false, 0x8, []byte{0x03, 0xed}, false)) },
			real:   ended(1000), fake: ptr(ended(websocket.CloseProtocolError)),
			why: "x/net/websocket does not read the close code and answers 1000; gorilla rejects a code that must not be sent (1002)",
		},
		{name: "a close frame without a code", proto: pV5, real: ended(1000),
			action: func(c *wsClient) error { return c.sendRaw(maskedFrame(true, false, 0x8, nil, false)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var lines []string
			if tc.proto != pNone {
				lines = []string{tc.proto}
			}
			run := func(e endpoint) outcome {
				d := e.dial(t, lines, allStreams, true)
				require.Equal(t, 101, d.status, "%s: %s", e.name, d.body)
				d.c.opening(t)
				require.NoError(t, tc.action(d.c))
				// The line may not get through if the connection is ending.
				_ = d.c.stdin([]byte(kept))
				o := d.c.observe(t, stdoutHas(kept))
				if !o.Ended {
					_ = d.c.send(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
					d.c.observe(t, untilEnd)
				}
				if e.ref != nil {
					e.ref.result(t, d.id)
				}
				return o
			}
			r, f := run(kube), run(fake)
			if tc.real.Ended {
				// Whatever was (or was not) echoed before the end is a race:
				// compare how it ended, and the status only when the
				// process ended by itself (the CLOSE signal).
				r.Stdout, f.Stdout = "", ""
				if tc.real.ErrCh == nil {
					r.ErrCh, f.ErrCh = nil, nil
				}
			}
			assert.Equal(t, tc.real.String(), r.String(), "wsstream")
			want := tc.real
			if tc.fake != nil {
				want = *tc.fake
				t.Logf("known difference: %s", tc.why)
			} else {
				assert.Equal(t, r.String(), f.String(), "the fake does as wsstream does")
			}
			if want.Ended {
				f.Stdout = ""
				if want.ErrCh == nil {
					f.ErrCh = nil
				}
			}
			assert.Equal(t, want.String(), f.String(), "fake")
		})
	}
}

// TestDifferentialCloseSignalReachesStdin: after the v5 CLOSE signal the
// reference's stdin read returns EOF while the connection is still open
// (its status write succeeds), as cat's does on the fake.
func TestDifferentialCloseSignalReachesStdin(t *testing.T) {
	kube, fake := endpoints(t, fakeapiserver.Config{})
	for _, e := range []endpoint{kube, fake} {
		d := e.dial(t, []string{pV5}, allStreams, true)
		require.Equal(t, 101, d.status)
		d.c.opening(t)
		require.NoError(t, d.c.stdin([]byte("before\n")))
		o := d.c.observe(t, stdoutHas("before\n"))
		require.False(t, o.Ended)
		require.NoError(t, d.c.send(websocket.BinaryMessage, []byte{255, 0}))
		o = d.c.observe(t, untilEnd)
		assert.Equal(t, []string{kubeletSuccess}, o.ErrCh, e.name)
		assert.Equal(t, 1000, o.Close, e.name)
		if e.ref != nil {
			r := e.ref.result(t, d.id)
			assert.True(t, r.stdinEOF)
			assert.NoError(t, r.statusErr, "stdin ended while the connection was open")
		}
	}
}

// TestDifferentialCloseAfterExit: both send close 1000 when the command is
// over, but wsstream closes TCP at once, while the fake waits (up to
// CloseTimeout) for the client's close reply, as RFC 6455 has it.
func TestDifferentialCloseAfterExit(t *testing.T) {
	kube, fake := endpoints(t, fakeapiserver.Config{CloseTimeout: time.Minute})
	rawRead := func(c *wsClient, d time.Duration) error {
		<-c.done // gorilla's reader has returned after the close frame
		_ = c.ws.NetConn().SetReadDeadline(time.Now().Add(d))
		_, err := c.ws.NetConn().Read(make([]byte, 1))
		return err
	}
	for _, e := range []endpoint{kube, fake} {
		t.Run(e.name, func(t *testing.T) {
			d := e.dial(t, []string{pV5}, allStreams, false) // no close reply
			require.Equal(t, 101, d.status)
			d.c.opening(t)
			require.NoError(t, d.c.send(websocket.BinaryMessage, []byte{255, 0}))
			o := d.c.observe(t, untilEnd)
			require.Equal(t, 1000, o.Close)
			err := rawRead(d.c, 3*time.Second)
			if e.ref != nil {
				// DIFFERENCE: x/net/websocket's Close writes the close
				// frame and closes TCP without waiting for the reply.
				assert.True(t, errors.Is(err, io.EOF) || isReset(err), "wsstream closed TCP at once: %v", err)
				e.ref.result(t, d.id)
				return
			}
			assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "the fake keeps TCP open for the close reply")
			d.c.wmu.Lock()
			require.NoError(t, d.c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second)))
			d.c.wmu.Unlock()
			err = rawRead(d.c, 10*time.Second)
			assert.ErrorIs(t, err, io.EOF, "after the reply the fake closes TCP")
		})
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

func ptr[T any](v T) *T { return &v }

func protoName(p string) string {
	if p == pNone {
		return "none"
	}
	return p
}
