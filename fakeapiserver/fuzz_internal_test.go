package fakeapiserver

// Fuzz, property and throughput tests of the Recorder's frame parser. They
// are in the internal test package because the parser (Recorder.feed) is
// unexported and only reachable through a live connection otherwise.
//
//	go test -run '^$' -fuzz FuzzFrameParser -fuzztime 60s ./fakeapiserver/
//	go test -run '^$' -bench FeedParser ./fakeapiserver/

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"testing/quick"
	"time"

	"github.com/execconform/execconform/execproto"
)

// frameSpec is one well-formed WebSocket frame to encode.
type frameSpec struct {
	op        byte
	fin       bool
	masked    bool
	lenForm   int    // 0: minimal length encoding; 1: 16-bit; 2: 64-bit (non-minimal allowed)
	payload   []byte // for close frames: code and reason, built from closeCode/reason
	closeCode int    // close frames: 0 for no code
	reason    []byte
	b64Data   []byte // data frames on base64 protocols: the bytes the payload encodes; nil otherwise
}

// String keeps failure messages short.
func (f frameSpec) String() string {
	head := f.payload[:min(len(f.payload), 16)]
	return fmt.Sprintf("{%s fin=%v masked=%v len=%d form=%d payload=%q...}", opcodeName(f.op), f.fin, f.masked, len(f.payload), f.lenForm, head)
}

var fuzzMaskKey = [4]byte{0xa1, 0x5b, 0x3c, 0xe7}

// encodeFrame writes f as it crosses the wire (RFC 6455 section 5.2).
func encodeFrame(f frameSpec) []byte {
	b0 := f.op
	if f.fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	var m byte
	if f.masked {
		m = 0x80
	}
	n := len(f.payload)
	form := f.lenForm
	if form == 0 {
		switch {
		case n > 0xffff:
			form = 2
		case n > 125:
			form = 1
		}
	}
	if form == 1 && n > 0xffff {
		form = 2
	}
	switch form {
	case 0:
		out = append(out, m|byte(n))
	case 1:
		out = append(out, m|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, m|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !f.masked {
		return append(out, f.payload...)
	}
	out = append(out, fuzzMaskKey[:]...)
	for i, b := range f.payload {
		out = append(out, b^fuzzMaskKey[i%4])
	}
	return out
}

func encodeFrames(fs []frameSpec) []byte {
	var out []byte
	for _, f := range fs {
		out = append(out, encodeFrame(f)...)
	}
	return out
}

// closeSpec builds a close frame, with a code and reason unless code is 0.
func closeSpec(code int, reason string, masked bool) frameSpec {
	f := frameSpec{op: opClose, fin: true, masked: masked, closeCode: code, reason: []byte(reason)}
	if code != 0 {
		f.payload = binary.BigEndian.AppendUint16(nil, uint16(code))
		f.payload = append(f.payload, reason...)
	}
	return f
}

// dataSpec builds a data frame on channel ch for protocol p.
func dataSpec(p execproto.Protocol, op byte, fin, masked bool, ch byte, data []byte) frameSpec {
	f := frameSpec{op: op, fin: fin, masked: masked}
	if p.Base64() && op != opContinuation {
		_, f.payload = execproto.Encode(p, ch, data)
		f.b64Data = data
		return f
	}
	if op == opContinuation {
		f.payload = data
		return f
	}
	f.payload = append([]byte{ch}, data...)
	return f
}

// seedStreams are streams of valid frames: every opcode, masked and not,
// 7-bit, 16-bit and 64-bit lengths, fragmented messages, close frames with
// and without codes, base64 text frames.
func seedStreams() [][]byte {
	big16 := bytes.Repeat([]byte("x"), 300)
	big64 := bytes.Repeat([]byte{0, 1, 2, 0xff}, 70000/4)
	var out [][]byte
	for _, masked := range []bool{true, false} {
		out = append(out,
			encodeFrame(dataSpec(execproto.ProtocolV5, opBinary, true, masked, 0, []byte("exit\r"))),
			encodeFrame(dataSpec(execproto.ProtocolV5, opBinary, true, masked, 1, nil)),
			encodeFrame(dataSpec(execproto.ProtocolBase64, opText, true, masked, 0, []byte("exit\r"))),
			encodeFrame(dataSpec(execproto.ProtocolV4Base64, opText, true, masked, 1, big16)),
			encodeFrame(dataSpec(execproto.ProtocolV4, opBinary, true, masked, 1, big16)),
			// A frame of more than 64 KiB (minimal 64-bit length), cut
			// after 200 bytes: the whole of it would slow every
			// execution; TestFrameParserSplitProperty feeds such frames
			// whole.
			encodeFrame(dataSpec(execproto.ProtocolV4, opBinary, true, masked, 1, big64))[:200],
			encodeFrame(frameSpec{op: opBinary, fin: true, masked: masked, lenForm: 2, payload: []byte{1, 'h', 'i'}}),
			encodeFrame(frameSpec{op: opBinary, fin: true, masked: masked, lenForm: 1, payload: []byte{1, 'h', 'i'}}),
			encodeFrames([]frameSpec{
				dataSpec(execproto.ProtocolV5, opBinary, false, masked, 0, []byte("ec")),
				{op: opPing, fin: true, masked: masked, payload: []byte("ping")},
				dataSpec(execproto.ProtocolV5, opContinuation, false, masked, 0, []byte("ho")),
				dataSpec(execproto.ProtocolV5, opContinuation, true, masked, 0, []byte(" hi\r")),
			}),
			encodeFrame(frameSpec{op: opPong, fin: true, masked: masked, payload: []byte("pong")}),
			encodeFrame(frameSpec{op: opPing, fin: true, masked: masked}),
			encodeFrame(closeSpec(1000, "", masked)),
			encodeFrame(closeSpec(1001, "tab closed", masked)),
			encodeFrame(closeSpec(0, "", masked)),
			encodeFrame(frameSpec{op: opBinary, fin: true, masked: masked, payload: []byte{255, 0}}),
		)
	}
	// A 64-bit length with the top bit set, and a truncated header.
	out = append(out, []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 0xaa}, []byte{0x82, 0x7e, 0x01})
	return out
}

// fuzzConfig derives a recorder configuration from a fuzz byte. Only
// values a Config can give are used (New makes both positive).
func fuzzConfig(mode uint8) (p execproto.Protocol, prefix, limit int) {
	p = execproto.AllProtocols[int(mode)%len(execproto.AllProtocols)]
	prefix = 1 + int(mode>>3)%16*4 // 1..61
	limit = 1 + int(mode>>5)*3     // 1..22
	return p, prefix, limit
}

// feedSplit feeds b in chunks whose sizes come from cuts (cycling), so that
// frames straddle reads at fuzz-chosen points.
func feedSplit(r *Recorder, dir Direction, b []byte, cuts []byte) {
	if len(cuts) == 0 {
		r.feed(dir, b)
		return
	}
	for i := 0; len(b) > 0; i++ {
		n := int(cuts[i%len(cuts)])%97 + 1
		n = min(n, len(b))
		r.feed(dir, b[:n])
		b = b[n:]
	}
}

// checkInvariants asserts what must hold whatever the bytes were.
func checkInvariants(t *testing.T, r *Recorder, prefix, limit int) Record {
	t.Helper()
	rec := r.Snapshot()
	if len(rec.Frames) > limit {
		t.Fatalf("%d frames kept, limit %d", len(rec.Frames), limit)
	}
	total := rec.Stats[FromClient].Frames + rec.Stats[FromServer].Frames
	if int64(len(rec.Frames))+rec.FramesDropped != total {
		t.Fatalf("kept %d + dropped %d != counted %d", len(rec.Frames), rec.FramesDropped, total)
	}
	if len(rec.ProtocolErrors) > 100 {
		t.Fatalf("%d protocol errors kept", len(rec.ProtocolErrors))
	}
	// printable writes a byte that is not UTF-8 as \xNN: at most 4 output
	// bytes per input byte; a bad base64 prefix is marked "!base64:".
	// Ping and pong payloads keep prefix+2 bytes (the room reserved for a
	// channel byte or close code is not taken off them).
	const mark = len("!base64:")
	var last int64
	for _, f := range rec.Frames {
		if f.Length < 0 {
			t.Fatalf("negative length: %+v", f)
		}
		if f.Seq <= last {
			t.Fatalf("sequence not increasing: %d after %d", f.Seq, last)
		}
		last = f.Seq
		bound := 4*prefix + mark
		if f.Opcode == "ping" || f.Opcode == "pong" {
			bound = 4 * (prefix + 2)
		}
		if len(f.Payload) > bound {
			t.Fatalf("payload of %d bytes kept, prefix %d: %+v", len(f.Payload), prefix, f)
		}
		if len(f.Reason) > 4*prefix {
			t.Fatalf("close reason of %d bytes kept, prefix %d", len(f.Reason), prefix)
		}
		if f.Channel < -1 || f.Channel > 255 {
			t.Fatalf("channel %d", f.Channel)
		}
	}
	for _, dir := range []Direction{FromClient, FromServer} {
		p := r.parsers[dir]
		if len(p.hdr) > 14 {
			t.Fatalf("%s: header buffer of %d bytes", dir, len(p.hdr))
		}
		if len(p.payload) > prefix+2 {
			t.Fatalf("%s: payload buffer of %d bytes, prefix %d", dir, len(p.payload), prefix)
		}
	}
	return rec
}

// specsFromBytes turns fuzz bytes into a sequence of well-formed frames (a
// valid fragmentation, control frames at most 125 bytes and final).
func specsFromBytes(p execproto.Protocol, data []byte) []frameSpec {
	var out []frameSpec
	inMessage := false
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	take := func(n int) []byte {
		n = min(n, len(data))
		b := data[:n]
		data = data[n:]
		return append([]byte(nil), b...)
	}
	for len(data) > 0 && len(out) < 64 {
		sel, flags, size := next(), next(), int(next())
		masked := flags&1 != 0
		form := int(flags>>1) % 3
		switch sel % 5 {
		case 0: // a data frame, or a continuation inside a message
			op := byte(opBinary)
			if p.Base64() {
				op = opText
			}
			fin := flags&8 != 0 || p.Base64() // base64 messages are not fragmented here
			if inMessage {
				op = opContinuation
			}
			f := dataSpec(p, op, fin, masked, (flags>>4)%6, take(size))
			f.lenForm = form
			out = append(out, f)
			inMessage = !fin
		case 1:
			out = append(out, frameSpec{op: opPing, fin: true, masked: masked, payload: take(size % 126)})
		case 2:
			out = append(out, frameSpec{op: opPong, fin: true, masked: masked, payload: take(size % 126)})
		case 3:
			code := 0
			if flags&4 != 0 {
				code = 1000 + size
			}
			out = append(out, closeSpec(code, string(take(size%124)), masked))
		case 4: // a large frame, cheap to build, exercising the 16/64-bit forms
			f := frameSpec{op: opBinary, fin: true, masked: masked, lenForm: form, payload: bytes.Repeat([]byte{next()}, 126+size*3)}
			if p.Base64() {
				f = dataSpec(p, opText, true, masked, 1, bytes.Repeat([]byte{byte(size)}, 100+size*3))
				f.lenForm = form
			}
			if inMessage {
				f.op = opContinuation
				f.b64Data = nil
				f.fin = true
			}
			out = append(out, f)
			if f.op == opContinuation {
				inMessage = false
			}
		}
	}
	return out
}

// checkWellFormed asserts that the recorder turned the specs into exactly
// one record each, in order, with the right fields.
func checkWellFormed(t *testing.T, p execproto.Protocol, prefix int, specs []frameSpec, got []FrameRecord, dir Direction) {
	t.Helper()
	var recs []FrameRecord
	for _, f := range got {
		if f.Dir == dir {
			recs = append(recs, f)
		}
	}
	if len(recs) != len(specs) {
		t.Fatalf("%s: %d frames in, %d records out", dir, len(specs), len(recs))
	}
	for i, s := range specs {
		r := recs[i]
		ctx := fmt.Sprintf("%s frame %d (%+v): record %+v", dir, i, s, r)
		if r.Opcode != opcodeName(s.op) || r.Fin != s.fin || r.Masked != s.masked || r.Length != int64(len(s.payload)) {
			t.Fatalf("header mismatch: %s", ctx)
		}
		switch s.op {
		case opClose:
			want := s.closeCode
			if want == 0 {
				want = 1005
			}
			if r.CloseCode != want {
				t.Fatalf("close code %d, want %d: %s", r.CloseCode, want, ctx)
			}
			if wr := printable(s.reason[:min(len(s.reason), prefix)]); s.closeCode != 0 && r.Reason != wr {
				t.Fatalf("close reason %q, want %q: %s", r.Reason, wr, ctx)
			}
		case opText, opBinary:
			if len(s.payload) == 0 {
				if r.Channel != -1 {
					t.Fatalf("channel of an empty message: %s", ctx)
				}
				break
			}
			ch := int(s.payload[0])
			if p.Base64() {
				ch -= '0'
				if ch < 0 {
					ch = 255
				}
			}
			if r.Channel != ch {
				t.Fatalf("channel %d, want %d: %s", r.Channel, ch, ctx)
			}
			body := s.payload[1:]
			switch {
			case !p.Base64():
				if want := printable(body[:min(len(body), prefix)]); r.Payload != want || r.Truncated != (len(body) > prefix) {
					t.Fatalf("payload %q (truncated %v), want %q: %s", r.Payload, r.Truncated, want, ctx)
				}
			case s.b64Data != nil:
				k := min(len(body), prefix)
				want := s.b64Data
				if k < len(body) {
					want = want[:min(len(want), 3*(k/4))]
				}
				if r.Payload != printable(want) {
					t.Fatalf("base64 payload %q, want %q: %s", r.Payload, printable(want), ctx)
				}
			}
		case opContinuation:
			if r.Channel != -1 {
				t.Fatalf("continuation with a channel: %s", ctx)
			}
			if !p.Base64() {
				if want := printable(s.payload[:min(len(s.payload), prefix)]); r.Payload != want {
					t.Fatalf("continuation payload %q, want %q: %s", r.Payload, want, ctx)
				}
			}
		case opPing, opPong:
			if r.Channel != -1 {
				t.Fatalf("control frame with a channel: %s", ctx)
			}
		}
	}
}

// FuzzFrameParser: on arbitrary bytes, split anywhere, in both directions,
// the parser never panics and keeps bounded memory; on well-formed frames
// built from the same bytes it yields exactly one record per frame.
func FuzzFrameParser(f *testing.F) {
	for i, s := range seedStreams() {
		f.Add(s, []byte{byte(i), 1, 7, 200}, uint8(i*37))
		f.Add(s, []byte(nil), uint8(i))
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte, mode uint8) {
		p, prefix, limit := fuzzConfig(mode)

		// Arbitrary bytes: the client side split at the chosen points,
		// the server side whole.
		r := newRecorder(time.Now(), p, prefix, limit)
		feedSplit(r, FromClient, data, cuts)
		r.feed(FromServer, data)
		checkInvariants(t, r, prefix, limit)

		// Well-formed frames: exactly one record each. The limit is
		// raised so that every record is kept.
		specs := specsFromBytes(p, data)
		client := encodeFrames(specs)
		server := make([]frameSpec, len(specs))
		copy(server, specs)
		for i := range server {
			server[i].masked = false
		}
		keep := 2*len(specs) + 2
		r = newRecorder(time.Now(), p, prefix, keep)
		feedSplit(r, FromClient, client, cuts)
		feedSplit(r, FromServer, encodeFrames(server), append([]byte{mode}, cuts...))
		rec := checkInvariants(t, r, prefix, keep)
		if len(rec.ProtocolErrors) != 0 {
			t.Fatalf("protocol errors on well-formed frames: %q", rec.ProtocolErrors)
		}
		checkWellFormed(t, p, prefix, specs, rec.Frames, FromClient)
		checkWellFormed(t, p, prefix, server, rec.Frames, FromServer)
	})
}

// openMessage reports whether specs end inside a fragmented message.
func openMessage(specs []frameSpec) bool {
	open := false
	for _, s := range specs {
		switch s.op {
		case opText, opBinary, opContinuation:
			open = !s.fin
		}
	}
	return open
}

// quickStream is a random stream of well-formed frames for testing/quick.
type quickStream struct {
	Proto  execproto.Protocol
	Prefix int
	Specs  []frameSpec
	Cuts   []byte
}

// Generate implements quick.Generator.
func (quickStream) Generate(rnd *rand.Rand, size int) reflect.Value {
	q := quickStream{
		Proto:  execproto.AllProtocols[rnd.Intn(len(execproto.AllProtocols))],
		Prefix: 1 + rnd.Intn(300),
	}
	raw := make([]byte, rnd.Intn(8*size+1))
	rnd.Read(raw)
	q.Specs = specsFromBytes(q.Proto, raw)
	if rnd.Intn(4) == 0 {
		// One frame longer than 64 KiB: the minimal 64-bit length form.
		op := byte(opBinary)
		switch {
		case openMessage(q.Specs):
			op = opContinuation
		case q.Proto.Base64():
			op = opText
		}
		q.Specs = append(q.Specs, dataSpec(q.Proto, op, true, true, 1, bytes.Repeat([]byte("z"), 70000)))
	}
	q.Cuts = make([]byte, rnd.Intn(16))
	rnd.Read(q.Cuts)
	return reflect.ValueOf(q)
}

// TestFrameParserSplitProperty: a stream of N well-formed frames split at
// random points yields exactly N records with the right opcodes and close
// codes; and with a small limit the recorder keeps exactly the first and
// the last frames and counts the rest as dropped.
func TestFrameParserSplitProperty(t *testing.T) {
	check := func(q quickStream) bool {
		stream := encodeFrames(q.Specs)
		keep := len(q.Specs) + 1
		r := newRecorder(time.Now(), q.Proto, q.Prefix, keep)
		feedSplit(r, FromClient, stream, q.Cuts)
		rec := checkInvariants(t, r, q.Prefix, keep)
		checkWellFormed(t, q.Proto, q.Prefix, q.Specs, rec.Frames, FromClient)

		// The same stream under a small limit: the head and the tail.
		limit := 1 + len(q.Cuts)
		r = newRecorder(time.Now(), q.Proto, q.Prefix, limit)
		feedSplit(r, FromClient, stream, q.Cuts)
		small := checkInvariants(t, r, q.Prefix, limit)
		n := len(q.Specs)
		if n <= limit {
			return len(small.Frames) == n && small.FramesDropped == 0
		}
		half := limit / 2
		var want []int64
		for i := 1; i <= half; i++ {
			want = append(want, int64(i))
		}
		for i := n - (limit - half) + 1; i <= n; i++ {
			want = append(want, int64(i))
		}
		var got []int64
		for _, f := range small.Frames {
			got = append(got, f.Seq)
		}
		if !reflect.DeepEqual(got, want) || small.FramesDropped != int64(n-limit) {
			t.Logf("limit %d, %d frames: kept seqs %v, want %v, dropped %d", limit, n, got, want, small.FramesDropped)
			return false
		}
		return true
	}
	cfg := &quick.Config{MaxCount: 300, Rand: rand.New(rand.NewSource(1))}
	if testing.Short() {
		cfg.MaxCount = 50
	}
	if err := quick.Check(check, cfg); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkFeedParser measures the raw parser on a pre-built 4 MiB buffer
// of frames, fed in 32 KiB reads as the tap sees them.
func BenchmarkFeedParser(b *testing.B) {
	const size = 4 << 20
	build := func(next func(i int) frameSpec) []byte {
		var buf []byte
		for i := 0; len(buf) < size; i++ {
			buf = append(buf, encodeFrame(next(i))...)
		}
		return buf
	}
	out32k := bytes.Repeat([]byte("output line\n"), 32*1024/12)
	cases := []struct {
		name  string
		proto execproto.Protocol
		dir   Direction
		buf   []byte
	}{
		{"server-32KiB-binary", execproto.ProtocolV4, FromServer, build(func(int) frameSpec {
			return dataSpec(execproto.ProtocolV4, opBinary, true, false, 1, out32k)
		})},
		{"server-32KiB-base64", execproto.ProtocolV4Base64, FromServer, build(func(int) frameSpec {
			return dataSpec(execproto.ProtocolV4Base64, opText, true, false, 1, out32k[:24*1024])
		})},
		{"client-keystrokes-masked", execproto.ProtocolV5, FromClient, build(func(i int) frameSpec {
			return dataSpec(execproto.ProtocolV5, opBinary, true, true, 0, []byte{byte('a' + i%26)})
		})},
		{"mixed-small", execproto.ProtocolV5, FromServer, build(func(i int) frameSpec {
			switch i % 4 {
			case 0:
				return frameSpec{op: opPing, fin: true, payload: []byte("ping")}
			case 1:
				return dataSpec(execproto.ProtocolV5, opBinary, true, false, 2, []byte("\x1b[31merror\x1b[0m\xff\n"))
			default:
				return dataSpec(execproto.ProtocolV5, opBinary, true, false, 1, out32k[:200])
			}
		})},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.buf)))
			b.ReportAllocs()
			frames := int64(0)
			for b.Loop() {
				r := newRecorder(time.Now(), tc.proto, 256, 2000)
				for off := 0; off < len(tc.buf); off += 32 * 1024 {
					r.feed(tc.dir, tc.buf[off:min(off+32*1024, len(tc.buf))])
				}
				frames = r.Snapshot().Stats[tc.dir].Frames
			}
			b.ReportMetric(float64(frames), "frames/op")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*frames), "ns/frame")
		})
	}
}
