package fakeapiserver

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/moby/spdystream/spdy"

	"github.com/execconform/execconform/execproto"
)

// The SPDY/3.1 frame layout (draft-mbelshe-httpbis-spdy-00 section 2.2):
// every frame starts with an 8-byte header whose last 24 bits are the
// payload's length. A control frame has the top bit set, then its version
// and type; a DATA frame has the stream ID, then its flags.
const (
	spdyHeaderLen = 8
	// maxRecordedControlFrame bounds a control frame the recorder buffers
	// to decode; a larger one stops the decoding of its direction.
	// client-go's and the kubelet's are a few hundred bytes.
	maxRecordedControlFrame = 1 << 16
	spdyFlagFin             = 0x01 // DATA, SYN_STREAM and SYN_REPLY: the sender's half-close
)

// StartTransport sets the transport and version the recorded connection
// speaks, for a recorder made before they were negotiated: with
// execproto.TransportSPDY the recorder reads each direction as SPDY/3.1
// frames from then on (before any byte of it). Start(p) is
// StartTransport(TransportWebSocket, p). With Sent and Received a Recorder
// is an execclient.TransportTrace.
func (r *Recorder) StartTransport(t execproto.Transport, p execproto.Protocol) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.protocol = p
	r.transport = t
	if t == execproto.TransportSPDY && r.spdy == nil {
		r.spdyStreams = map[uint32]spdyStreamInfo{}
		r.spdy = map[Direction]*spdyParser{
			FromClient: newSPDYParser(r, FromClient),
			FromServer: newSPDYParser(r, FromServer),
		}
	}
}

// Transport is the transport the recorded connection speaks.
func (r *Recorder) Transport() execproto.Transport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return execproto.Transport(r.transport.String())
}

// spdyStreamInfo is what a SYN_STREAM said of its stream.
type spdyStreamInfo struct {
	typ     string
	channel int
}

// spdySource is the reader of a spdyParser's Framer: the bytes of the one
// whole control frame being decoded, so that the Framer never blocks.
type spdySource struct{ b []byte }

func (s *spdySource) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// spdyParser splits one direction's bytes into SPDY frames: DATA frames
// it reads itself, keeping a bounded prefix of the payload; a control
// frame it buffers whole and has the direction's own spdy.Framer decode
// (header compression keeps one zlib state per direction).
type spdyParser struct {
	r      *Recorder
	dir    Direction
	framer *spdy.Framer
	src    spdySource

	hdr     [spdyHeaderLen]byte
	nhdr    int
	control bool
	remain  int64
	frame   []byte // control: header and payload so far
	cur     FrameRecord
	payload []byte // DATA: the payload prefix
	dead    bool   // decoding stopped (a protocol error is recorded)
}

func newSPDYParser(r *Recorder, dir Direction) *spdyParser {
	p := &spdyParser{r: r, dir: dir}
	f, err := spdy.NewFramer(io.Discard, &p.src)
	if err != nil {
		p.stop(fmt.Sprintf("framer: %v", err))
	}
	p.framer = f
	return p
}

// stop records why decoding of the direction stopped and stops it.
func (p *spdyParser) stop(why string) {
	p.dead = true
	p.r.addError(fmt.Sprintf("%s: spdy: %s; the rest of this direction is not decoded", p.dir, why))
}

func (p *spdyParser) feed(b []byte) {
	for len(b) > 0 && !p.dead {
		if p.nhdr < spdyHeaderLen {
			n := copy(p.hdr[p.nhdr:], b)
			p.nhdr += n
			b = b[n:]
			if p.nhdr == spdyHeaderLen {
				p.begin()
			}
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

// begin starts a frame from its 8-byte header.
func (p *spdyParser) begin() {
	h := p.hdr[:]
	length := int64(binary.BigEndian.Uint32(h[4:8]) & 0xffffff)
	flags := h[4]
	p.control = h[0]&0x80 != 0
	p.remain = length
	if p.control {
		if length > maxRecordedControlFrame {
			p.stop(fmt.Sprintf("control frame of %d bytes (over %d)", length, maxRecordedControlFrame))
			return
		}
		p.frame = append(p.frame[:0], h...)
	} else {
		id := binary.BigEndian.Uint32(h[0:4]) & 0x7fffffff
		p.cur = FrameRecord{
			At: time.Since(p.r.start), Dir: p.dir, Opcode: "data", Fin: flags&spdyFlagFin != 0,
			Length: length, StreamID: id, Channel: -1,
		}
		if si, ok := p.r.spdyStreams[id]; ok {
			p.cur.Channel, p.cur.StreamType = si.channel, si.typ
		}
		p.payload = p.payload[:0]
	}
	if length == 0 {
		p.finish()
	}
}

func (p *spdyParser) collect(b []byte) {
	if p.control {
		p.frame = append(p.frame, b...)
		return
	}
	if room := p.r.prefix - len(p.payload); room > 0 {
		p.payload = append(p.payload, b[:min(room, len(b))]...)
	}
}

// finish records the frame whose bytes are all in.
func (p *spdyParser) finish() {
	p.nhdr = 0
	if !p.control {
		f := p.cur
		f.Payload, f.Truncated = printable(p.payload), int64(len(p.payload)) < f.Length
		p.r.add(f)
		return
	}
	p.src.b = p.frame
	fr, err := p.framer.ReadFrame()
	if err != nil {
		p.stop(fmt.Sprintf("decode a control frame (type %d, %d bytes): %v", binary.BigEndian.Uint16(p.frame[2:4]), len(p.frame)-spdyHeaderLen, err))
		return
	}
	f := FrameRecord{At: time.Since(p.r.start), Dir: p.dir, Length: int64(len(p.frame) - spdyHeaderLen), Channel: -1}
	stream := func(id spdy.StreamId) {
		f.StreamID = uint32(id)
		if si, ok := p.r.spdyStreams[f.StreamID]; ok {
			f.Channel, f.StreamType = si.channel, si.typ
		}
	}
	switch fr := fr.(type) {
	case *spdy.SynStreamFrame:
		f.Opcode, f.Fin = "syn_stream", fr.CFHeader.Flags&spdy.ControlFlagFin != 0
		// Of the headers only streamType is kept (the others may carry
		// anything a client sends).
		si := spdyStreamInfo{typ: fr.Headers.Get(execproto.HeaderStreamType), channel: -1}
		if ch, ok := execproto.StreamOfType(si.typ); ok {
			si.channel = int(ch)
		}
		p.r.spdyStreams[uint32(fr.StreamId)] = si
		stream(fr.StreamId)
	case *spdy.SynReplyFrame:
		f.Opcode, f.Fin = "syn_reply", fr.CFHeader.Flags&spdy.ControlFlagFin != 0
		stream(fr.StreamId)
	case *spdy.RstStreamFrame:
		f.Opcode, f.CloseCode = "rst_stream", int(fr.Status)
		stream(fr.StreamId)
	case *spdy.SettingsFrame:
		f.Opcode = "settings"
	case *spdy.PingFrame:
		f.Opcode = "ping"
	case *spdy.GoAwayFrame:
		f.Opcode, f.CloseCode = "goaway", int(fr.Status)
	case *spdy.HeadersFrame:
		f.Opcode, f.Fin = "headers", fr.CFHeader.Flags&spdy.ControlFlagFin != 0
		stream(fr.StreamId)
	case *spdy.WindowUpdateFrame:
		f.Opcode = "window_update"
		if fr.StreamId != 0 {
			stream(fr.StreamId)
		}
	default:
		f.Opcode = "reserved"
	}
	p.r.add(f)
}
