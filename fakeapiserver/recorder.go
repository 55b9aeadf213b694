package fakeapiserver

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/execconform/execconform/execproto"
)

// Direction says which way a frame crossed the connection.
type Direction string

// The two directions of a session's connection, seen from the server.
const (
	FromClient Direction = "client->server"
	FromServer Direction = "server->client"
)

// WebSocket opcodes, RFC 6455 section 5.2.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

func opcodeName(op byte) string {
	switch op {
	case opContinuation:
		return "continuation"
	case opText:
		return "text"
	case opBinary:
		return "binary"
	case opClose:
		return "close"
	case opPing:
		return "ping"
	case opPong:
		return "pong"
	}
	return "reserved"
}

// FrameRecord is one WebSocket frame as it crossed the wire, parsed from the
// raw bytes of the connection (not from the WebSocket library's view), so
// that fragmentation, control frames and malformed frames are all seen.
type FrameRecord struct {
	Seq       int64         `json:"seq"`
	At        time.Duration `json:"at_ns"` // since the session started (monotonic)
	Dir       Direction     `json:"dir"`
	Opcode    string        `json:"opcode"` // WebSocket: "text", "binary", "close", ...; SPDY: "syn_stream", "data", "goaway", ...
	Fin       bool          `json:"fin"`
	Masked    bool          `json:"masked,omitempty"`
	Length    int64         `json:"length"`            // payload length on the wire
	Channel   int           `json:"channel"`           // exec channel of the message; -1 for control frames and continuations
	Payload   string        `json:"payload,omitempty"` // decoded payload prefix (base64 decoded on base64 protocols), channel byte removed
	Truncated bool          `json:"truncated,omitempty"`
	CloseCode int           `json:"close_code,omitempty"` // close frames: the status code (1005 when absent)
	Reason    string        `json:"close_reason,omitempty"`
	// SPDY only: the frame's stream (0 for connection-level frames) and
	// the streamType its SYN_STREAM named. Channel is then the exec
	// channel of that stream type; Fin a half-close of the stream by the
	// frame's sender; CloseCode the status of a GOAWAY or RST_STREAM.
	StreamID   uint32 `json:"stream_id,omitempty"`
	StreamType string `json:"stream_type,omitempty"`
}

// CloseRecord tells how a session's connection ended.
type CloseRecord struct {
	// FirstBy is "client" or "server": who sent a close frame first ("" if
	// nobody did). Over SPDY the close frame is GOAWAY, its code the
	// GOAWAY status, and Completed means both sent one.
	FirstBy      string        `json:"first_by,omitempty"`
	ClientSent   bool          `json:"client_sent"`
	ClientCode   int           `json:"client_code,omitempty"`
	ClientReason string        `json:"client_reason,omitempty"`
	ClientAt     time.Duration `json:"client_at_ns,omitempty"`
	ServerSent   bool          `json:"server_sent"`
	ServerCode   int           `json:"server_code,omitempty"`
	ServerReason string        `json:"server_reason,omitempty"`
	ServerAt     time.Duration `json:"server_at_ns,omitempty"`
	// Completed: both sides sent a close frame (the handshake was answered).
	Completed bool `json:"completed"`
	// TCP is how the TCP connection ended as the server saw it: one of the TCP* constants.
	TCP   string        `json:"tcp"`
	TCPAt time.Duration `json:"tcp_at_ns,omitempty"`
}

// How the TCP connection of a session ended, as recorded in CloseRecord.TCP.
const (
	TCPOpen         = ""                // still open
	TCPAfterClose   = "after-handshake" // closed after a completed close handshake
	TCPEOF          = "eof"             // the peer sent FIN with no close handshake completed
	TCPReset        = "reset"           // the peer reset the connection
	TCPTimeout      = "timeout"         // a read deadline passed
	TCPServerClosed = "server-closed"   // the server closed it without a completed handshake
)

// Recorder records every frame of one connection in both directions with
// bounded memory: the first and the last Limit/2 frames are kept whole (up
// to PayloadPrefix bytes of payload each) and the rest are only counted.
type Recorder struct {
	start    time.Time
	protocol execproto.Protocol
	dialect  string // a dialect connection: messages are not on exec channels
	prefix   int
	limit    int

	mu      sync.Mutex
	seq     int64
	head    []FrameRecord
	tail    []FrameRecord // ring of the last frames
	tailPos int
	dropped int64
	stats   map[Direction]*DirStats
	closeR  CloseRecord
	errors  []string
	parsers map[Direction]*frameParser
	// SPDY (StartTransport): the transport, a parser per direction and
	// what each stream's SYN_STREAM said.
	transport   execproto.Transport
	spdy        map[Direction]*spdyParser
	spdyStreams map[uint32]spdyStreamInfo
	frags       int64 // continuation frames received from the client
	// stdinFIN: over SPDY, the client half-closed its stdin stream (a
	// FIN, not a RST_STREAM).
	stdinFIN bool
}

// StdinFIN reports whether the client half-closed its SPDY stdin stream
// with a FIN (a RST_STREAM, or the connection's end, is none).
func (r *Recorder) StdinFIN() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stdinFIN
}

// fragments counts the continuation frames the client has sent so far.
func (r *Recorder) fragments() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.frags
}

// DirStats counts what crossed in one direction.
type DirStats struct {
	Frames   int64            `json:"frames"`
	Bytes    int64            `json:"bytes"`               // payload bytes
	Messages map[string]int64 `json:"messages_by_channel"` // data messages per exec channel
}

func newRecorder(start time.Time, p execproto.Protocol, prefix, limit int) *Recorder {
	r := &Recorder{start: start, protocol: p, prefix: prefix, limit: limit,
		stats: map[Direction]*DirStats{
			FromClient: {Messages: map[string]int64{}},
			FromServer: {Messages: map[string]int64{}},
		}}
	r.parsers = map[Direction]*frameParser{
		FromClient: {r: r, dir: FromClient},
		FromServer: {r: r, dir: FromServer},
	}
	return r
}

// feed passes raw connection bytes going in dir to the frame parser.
func (r *Recorder) feed(dir Direction, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.spdy != nil {
		r.spdy[dir].feed(b)
		return
	}
	r.parsers[dir].feed(b)
}

// protocolError records a protocol error seen by the server.
func (r *Recorder) protocolError(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addError(msg)
}

func (r *Recorder) addError(msg string) {
	if len(r.errors) < 100 {
		r.errors = append(r.errors, msg)
	}
}

// tcpEnd records how the TCP connection ended; only the first call counts.
func (r *Recorder) tcpEnd(how string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closeR.TCP != TCPOpen {
		return
	}
	if r.closeR.Completed && (how == TCPEOF || how == TCPServerClosed) {
		how = TCPAfterClose
	}
	r.closeR.TCP = how
	r.closeR.TCPAt = time.Since(r.start)
}

func (r *Recorder) add(f FrameRecord) {
	r.seq++
	f.Seq = r.seq
	if r.spdy != nil && f.Fin && f.Dir == FromClient && f.Channel == int(execproto.StreamStdin) {
		r.stdinFIN = true
	}
	st := r.stats[f.Dir]
	st.Frames++
	st.Bytes += f.Length
	if f.Channel >= 0 && (r.spdy == nil || f.Opcode == "data") {
		st.Messages[r.channelName(f.Channel)]++
	}
	if f.Opcode == "continuation" && f.Dir == FromClient {
		r.frags++
	}
	if f.Opcode == "close" || f.Opcode == "goaway" {
		r.closeFrame(f)
	}
	half := r.limit / 2
	if len(r.head) < half || r.limit <= 0 {
		r.head = append(r.head, f)
		return
	}
	if len(r.tail) < r.limit-half {
		r.tail = append(r.tail, f)
		return
	}
	r.tail[r.tailPos] = f
	r.tailPos = (r.tailPos + 1) % len(r.tail)
	r.dropped++
}

func (r *Recorder) closeFrame(f FrameRecord) {
	c := &r.closeR
	if f.Dir == FromClient {
		if c.ClientSent {
			return
		}
		c.ClientSent, c.ClientCode, c.ClientReason, c.ClientAt = true, f.CloseCode, f.Reason, f.At
		if c.FirstBy == "" {
			c.FirstBy = "client"
		}
	} else {
		if c.ServerSent {
			return
		}
		c.ServerSent, c.ServerCode, c.ServerReason, c.ServerAt = true, f.CloseCode, f.Reason, f.At
		if c.FirstBy == "" {
			c.FirstBy = "server"
		}
	}
	c.Completed = c.ClientSent && c.ServerSent
}

// channelName names an exec channel; 255 is the CLOSE signal only on
// protocols that have it.
func (r *Recorder) channelName(c int) string {
	if c == int(execproto.StreamClose) && !r.protocol.StreamClose() {
		return "invalid"
	}
	return channelName(c)
}

func channelName(c int) string {
	switch byte(c) {
	case execproto.StreamStdin:
		return "stdin"
	case execproto.StreamStdout:
		return "stdout"
	case execproto.StreamStderr:
		return "stderr"
	case execproto.StreamError:
		return "error"
	case execproto.StreamResize:
		return "resize"
	case execproto.StreamClose:
		return "close-signal"
	}
	return "invalid"
}

// Record is a snapshot of everything a Recorder saw, ready for JSON.
type Record struct {
	// Started is when the recording started; frames' At count from it.
	Started  time.Time `json:"started"`
	Protocol string    `json:"protocol"`
	// Transport is "spdy" for a SPDY connection, empty for WebSocket.
	Transport      string                  `json:"transport,omitempty"`
	Frames         []FrameRecord           `json:"frames"`
	FramesDropped  int64                   `json:"frames_dropped,omitempty"` // frames counted but not kept (between head and tail)
	Stats          map[Direction]*DirStats `json:"stats"`
	Close          CloseRecord             `json:"close"`
	ProtocolErrors []string                `json:"protocol_errors,omitempty"`
}

// Snapshot copies what was recorded so far.
func (r *Recorder) Snapshot() Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	frames := make([]FrameRecord, 0, len(r.head)+len(r.tail))
	frames = append(frames, r.head...)
	frames = append(frames, r.tail[r.tailPos:]...)
	frames = append(frames, r.tail[:r.tailPos]...)
	stats := map[Direction]*DirStats{}
	for d, s := range r.stats {
		m := make(map[string]int64, len(s.Messages))
		for k, v := range s.Messages {
			m[k] = v
		}
		stats[d] = &DirStats{Frames: s.Frames, Bytes: s.Bytes, Messages: m}
	}
	var transport string
	if r.transport == execproto.TransportSPDY {
		transport = string(r.transport)
	}
	return Record{
		Started:        r.start,
		Protocol:       r.protocol.String(),
		Transport:      transport,
		Frames:         frames,
		FramesDropped:  r.dropped,
		Stats:          stats,
		Close:          r.closeR,
		ProtocolErrors: append([]string(nil), r.errors...),
	}
}

// Start sets the protocol the recorded connection speaks, for a recorder
// made before it was negotiated (execclient.Trace).
func (r *Recorder) Start(p execproto.Protocol) { r.StartTransport(execproto.TransportWebSocket, p) }

// StartDialect is Start for a connection that speaks a front dialect
// (package dialect): its messages are recorded whole, on no channel
// (Channel -1), and Protocol is the dialect's name.
func (r *Recorder) StartDialect(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.protocol = execproto.Protocol(name)
	r.dialect = name
	r.transport = execproto.TransportWebSocket
}

// Protocol is the protocol the recorded connection speaks: the one the
// API server negotiated, on the backend leg.
func (r *Recorder) Protocol() execproto.Protocol {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.protocol
}

// Sent records bytes a WebSocket client wrote (FromClient): with Start and
// Received, a Recorder is an execclient.Trace, the client's view of its leg.
func (r *Recorder) Sent(b []byte) { r.feed(FromClient, b) }

// Received records bytes a WebSocket client read (FromServer).
func (r *Recorder) Received(b []byte) { r.feed(FromServer, b) }

// Trim keeps at most n frames of rec, the first and the last n/2, and
// counts the others as dropped; Stats and Close still count every frame.
func (rec Record) Trim(n int) Record {
	if n <= 0 || len(rec.Frames) <= n {
		return rec
	}
	head, tail := n/2, n-n/2
	frames := make([]FrameRecord, 0, n)
	frames = append(frames, rec.Frames[:head]...)
	frames = append(frames, rec.Frames[len(rec.Frames)-tail:]...)
	rec.FramesDropped += int64(len(rec.Frames) - n)
	rec.Frames = frames
	return rec
}

// Close returns the close record so far.
func (r *Recorder) Close() CloseRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closeR
}

// frameParser is a streaming parser of RFC 6455 frames (section 5.2) over
// the raw bytes of one direction. It keeps only a bounded prefix of each
// payload.
type frameParser struct {
	r   *Recorder
	dir Direction

	hdr     []byte // header bytes collected so far
	need    int    // header length once known (0 = not yet)
	cur     FrameRecord
	mask    [4]byte
	masked  bool
	remain  int64
	off     int64
	payload []byte
	// message state: the channel of the data message in progress
	inMessage  bool
	msgChannel int
	msgFirst   bool // the current frame is the first of its message
}

func (p *frameParser) feed(b []byte) {
	for len(b) > 0 {
		if p.need == 0 || len(p.hdr) < p.need {
			b = p.header(b)
			continue
		}
		n := int64(len(b))
		if n > p.remain {
			n = p.remain
		}
		p.collect(b[:n])
		b = b[n:]
		p.remain -= n
		if p.remain == 0 {
			p.finish()
		}
	}
}

// header consumes header bytes and returns the rest.
func (p *frameParser) header(b []byte) []byte {
	for len(b) > 0 {
		p.hdr = append(p.hdr, b[0])
		b = b[1:]
		if len(p.hdr) == 2 {
			p.need = 2
			switch p.hdr[1] & 0x7f {
			case 126:
				p.need += 2
			case 127:
				p.need += 8
			}
			if p.hdr[1]&0x80 != 0 {
				p.need += 4
			}
		}
		if p.need > 0 && len(p.hdr) == p.need {
			p.start()
			return b
		}
	}
	return b
}

func (p *frameParser) start() {
	h := p.hdr
	op := h[0] & 0x0f
	p.masked = h[1]&0x80 != 0
	length := int64(h[1] & 0x7f)
	i := 2
	switch length {
	case 126:
		length = int64(binary.BigEndian.Uint16(h[2:4]))
		i = 4
	case 127:
		length = int64(binary.BigEndian.Uint64(h[2:10]) & (1<<63 - 1))
		i = 10
	}
	if p.masked {
		copy(p.mask[:], h[i:i+4])
	}
	p.cur = FrameRecord{
		At:      time.Since(p.r.start),
		Dir:     p.dir,
		Opcode:  opcodeName(op),
		Fin:     h[0]&0x80 != 0,
		Masked:  p.masked,
		Length:  length,
		Channel: -1,
	}
	p.remain, p.off, p.payload = length, 0, p.payload[:0]
	p.msgFirst = false
	switch op {
	case opText, opBinary:
		if p.inMessage {
			p.r.addError(string(p.dir) + ": new data frame inside a fragmented message")
		}
		p.inMessage, p.msgFirst, p.msgChannel = !p.cur.Fin, true, -1
	case opContinuation:
		if !p.inMessage {
			p.r.addError(string(p.dir) + ": continuation frame outside a message")
		}
		if p.cur.Fin {
			p.inMessage = false
		}
	}
	if length == 0 {
		p.finish()
	}
}

func (p *frameParser) collect(b []byte) {
	room := int64(p.r.prefix+2) - int64(len(p.payload)) // +2: channel byte / close code
	take := int64(len(b))
	if take > room {
		take = room
	}
	if take > 0 {
		start := len(p.payload)
		p.payload = append(p.payload, b[:take]...)
		if p.masked {
			for j := start; j < len(p.payload); j++ {
				p.payload[j] ^= p.mask[(p.off+int64(j-start))%4]
			}
		}
	}
	p.off += int64(len(b))
}

func (p *frameParser) finish() {
	f := p.cur
	pl := p.payload
	switch f.Opcode {
	case "close":
		f.CloseCode = 1005
		if len(pl) >= 2 {
			f.CloseCode = int(binary.BigEndian.Uint16(pl))
			f.Reason = printable(pl[2:])
		}
	case "ping", "pong":
		if len(pl) > p.r.prefix {
			pl = pl[:p.r.prefix]
		}
		f.Payload, f.Truncated = printable(pl), int64(len(pl)) < f.Length
	case "text", "binary":
		if p.r.dialect != "" {
			// A dialect's message is the dialect's own: no channel.
			f.Channel = -1
			p.msgChannel = -1
			f.Payload, f.Truncated = p.decode(pl, f.Length)
			break
		}
		if len(pl) > 0 {
			ch := int(pl[0])
			if p.r.protocol.Base64() {
				ch -= '0'
			}
			if ch < 0 || ch > 255 {
				ch = 255
			}
			if p.r.protocol.StreamClose() && pl[0] == execproto.StreamClose {
				ch = int(execproto.StreamClose)
			}
			f.Channel = ch
			p.msgChannel = ch
			pl = pl[1:]
		}
		f.Payload, f.Truncated = p.decode(pl, f.Length-1)
	case "continuation":
		f.Payload, f.Truncated = p.decode(pl, f.Length)
	}
	p.r.add(f)
	p.hdr, p.need = p.hdr[:0], 0
}

// decode renders a payload prefix: base64-decoded on base64 protocols.
func (p *frameParser) decode(pl []byte, total int64) (string, bool) {
	if len(pl) > p.r.prefix {
		pl = pl[:p.r.prefix]
	}
	truncated := int64(len(pl)) < total
	if p.r.protocol.Base64() {
		n := len(pl) - len(pl)%4
		dst := make([]byte, base64.StdEncoding.DecodedLen(n))
		m, err := base64.StdEncoding.Decode(dst, pl[:n])
		if err != nil {
			return "!base64:" + printable(pl), truncated
		}
		return printable(dst[:m]), truncated || n < len(pl)
	}
	return printable(pl), truncated
}

// printable keeps valid UTF-8 as is and writes other bytes as \xNN, so a
// payload survives JSON readably.
func printable(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			fmt.Fprintf(&sb, "\\x%02x", b[0])
		} else {
			sb.WriteRune(r)
		}
		b = b[n:]
	}
	return sb.String()
}
