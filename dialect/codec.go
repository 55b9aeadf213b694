package dialect

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/websocket"
)

// ErrNoResize is returned by Resize for a dialect that cannot resize.
var ErrNoResize = errors.New("dialect: the dialect has no resize message")

// EventKind says what a message from the server was.
type EventKind int

// The kinds of server messages.
const (
	EventOther     EventKind = iota // not output: recorded, otherwise ignored
	EventOutput                     // output (Data)
	EventOpen                       // SockJS's open frame "o"
	EventHeartbeat                  // SockJS's heartbeat "h"
	EventClose                      // SockJS's close frame c[code,"reason"]
)

// Event is one decoded server message (a SockJS frame can hold several).
type Event struct {
	Kind   EventKind
	Data   []byte
	Code   int    // EventClose
	Reason string // EventClose
}

// ClientCodec encodes what a client sends and decodes what it receives,
// for one connection.
type ClientCodec struct {
	d       *Dialect
	session string
}

// ClientCodec is a codec for one connection; session fills {session}.
func (d *Dialect) ClientCodec(session string) *ClientCodec {
	return &ClientCodec{d: d, session: session}
}

// Dialect is the codec's dialect.
func (c *ClientCodec) Dialect() *Dialect { return c.d }

func (c *ClientCodec) frameType() int {
	if c.d.Frames == Binary {
		return websocket.BinaryMessage
	}
	return websocket.TextMessage
}

// wrap frames an inner message for the transport: over SockJS, a JSON
// array of one string.
func (c *ClientCodec) wrap(mt int, inner []byte) (int, []byte) {
	if c.d.Transport != SockJS {
		return mt, inner
	}
	b, _ := json.Marshal([]string{string(inner)})
	return websocket.TextMessage, b
}

// Start are the messages to send first, once connected.
func (c *ClientCodec) Start() ([]int, [][]byte, error) {
	var mts []int
	var out [][]byte
	for _, t := range c.d.Start {
		b, err := fill(t, map[string]any{"{session}": c.session})
		if err != nil {
			return nil, nil, err
		}
		mt, p := c.wrap(websocket.TextMessage, b)
		mts, out = append(mts, mt), append(out, p)
	}
	return mts, out, nil
}

// Stdin encodes data typed on stdin.
func (c *ClientCodec) Stdin(data []byte) (int, []byte, error) {
	if c.d.Encoding == Raw {
		mt, p := c.wrap(c.frameType(), data)
		return mt, p, nil
	}
	b, err := fill(c.d.Stdin, map[string]any{"{data}": string(data), "{session}": c.session})
	if err != nil {
		return 0, nil, err
	}
	mt, p := c.wrap(websocket.TextMessage, b)
	return mt, p, nil
}

// Resize encodes a terminal size; ErrNoResize if the dialect has none.
func (c *ClientCodec) Resize(cols, rows uint16) (int, []byte, error) {
	if c.d.Resize == nil {
		return 0, nil, ErrNoResize
	}
	b, err := fill(c.d.Resize, map[string]any{"{rows}": rows, "{cols}": cols, "{session}": c.session})
	if err != nil {
		return 0, nil, err
	}
	mt, p := c.wrap(websocket.TextMessage, b)
	return mt, p, nil
}

// Decode reads one server message. A message the dialect does not
// recognise is EventOther, not an error; an error is a message that
// breaks the transport's framing (a bad SockJS frame).
func (c *ClientCodec) Decode(mt int, payload []byte) ([]Event, error) {
	if c.d.Transport != SockJS {
		return []Event{c.inner(mt, payload)}, nil
	}
	if len(payload) == 0 {
		return nil, errors.New("dialect: empty SockJS frame")
	}
	switch payload[0] {
	case 'o':
		return []Event{{Kind: EventOpen}}, nil
	case 'h':
		return []Event{{Kind: EventHeartbeat}}, nil
	case 'a':
		var msgs []string
		if err := json.Unmarshal(payload[1:], &msgs); err != nil {
			return nil, fmt.Errorf("dialect: SockJS array frame: %w", err)
		}
		var out []Event
		for _, m := range msgs {
			out = append(out, c.inner(websocket.TextMessage, []byte(m)))
		}
		return out, nil
	case 'm':
		var m string
		if err := json.Unmarshal(payload[1:], &m); err != nil {
			return nil, fmt.Errorf("dialect: SockJS message frame: %w", err)
		}
		return []Event{c.inner(websocket.TextMessage, []byte(m))}, nil
	case 'c':
		var cr []any
		if err := json.Unmarshal(payload[1:], &cr); err != nil || len(cr) != 2 {
			return nil, fmt.Errorf("dialect: SockJS close frame %q", payload)
		}
		code, _ := cr[0].(float64)
		reason, _ := cr[1].(string)
		return []Event{{Kind: EventClose, Code: int(code), Reason: reason}}, nil
	}
	return nil, fmt.Errorf("dialect: SockJS frame of unknown type %q", payload[:1])
}

// inner decodes a message inside the transport.
func (c *ClientCodec) inner(mt int, payload []byte) Event {
	if c.d.Encoding == Raw {
		return Event{Kind: EventOutput, Data: payload}
	}
	var obj map[string]any
	if json.Unmarshal(payload, &obj) != nil {
		return Event{Kind: EventOther, Data: payload}
	}
	if !matchLiterals(c.d.Output.When, obj) {
		return Event{Kind: EventOther, Data: payload}
	}
	s, ok := obj[c.d.Output.Data].(string)
	if !ok {
		return Event{Kind: EventOther, Data: payload}
	}
	return Event{Kind: EventOutput, Data: []byte(s)}
}

// fill is t as JSON, its placeholders replaced by vals.
func fill(t Template, vals map[string]any) ([]byte, error) {
	var walk func(m map[string]any) map[string]any
	walk = func(m map[string]any) map[string]any {
		out := make(map[string]any, len(m))
		for k, v := range m {
			switch v := v.(type) {
			case string:
				if r, ok := vals[v]; ok {
					out[k] = r
					continue
				}
			case map[string]any:
				out[k] = walk(v)
				continue
			case Template:
				out[k] = walk(v)
				continue
			}
			out[k] = v
		}
		return out
	}
	return json.Marshal(walk(t))
}

// matchLiterals reports whether obj holds every literal of want (extra
// fields are allowed: real clients send more).
func matchLiterals(want map[string]any, obj map[string]any) bool {
	for k, w := range want {
		v, ok := obj[k]
		if !ok {
			return false
		}
		if wm, isMap := asMap(w); isMap {
			om, ok := v.(map[string]any)
			if !ok || !matchLiterals(wm, om) {
				return false
			}
			continue
		}
		if !valueEqual(w, v) {
			return false
		}
	}
	return true
}

// InputKind says what a client message was.
type InputKind int

// The kinds of client messages a front reads.
const (
	InputStdin InputKind = iota + 1
	InputResize
	InputStart
)

// Input is one decoded client message.
type Input struct {
	Kind       InputKind
	Data       []byte
	Rows, Cols uint16
	Session    string
}

// ServerCodec decodes what a dialect's client sends and encodes output,
// for a front that serves the dialect. Over SockJS it works on the
// messages inside SockJS's frames (a SockJS server library unwraps them).
type ServerCodec struct{ d *Dialect }

// ServerCodec is the server side of d.
func (d *Dialect) ServerCodec() *ServerCodec { return &ServerCodec{d: d} }

// Decode reads one client message; an error names what it is not.
func (s *ServerCodec) Decode(mt int, payload []byte) (Input, error) {
	if s.d.Encoding == Raw {
		if s.d.Resize != nil && mt == websocket.TextMessage {
			if in, ok := s.match(s.d.Resize, InputResize, payload); ok {
				return in, nil
			}
			return Input{}, fmt.Errorf("dialect %s: a text message that is not a resize: %.80q", s.d.Name, payload)
		}
		return Input{Kind: InputStdin, Data: payload}, nil
	}
	if in, ok := s.match(s.d.Stdin, InputStdin, payload); ok {
		return in, nil
	}
	if s.d.Resize != nil {
		if in, ok := s.match(s.d.Resize, InputResize, payload); ok {
			return in, nil
		}
	}
	for _, t := range s.d.Start {
		if in, ok := s.match(t, InputStart, payload); ok {
			return in, nil
		}
	}
	return Input{}, fmt.Errorf("dialect %s: a message that is neither stdin, resize nor a start message: %.80q", s.d.Name, payload)
}

// match reads payload against t: its literals must match, its
// placeholders are read back.
func (s *ServerCodec) match(t Template, kind InputKind, payload []byte) (Input, bool) {
	var obj map[string]any
	if json.Unmarshal(payload, &obj) != nil {
		return Input{}, false
	}
	in := Input{Kind: kind}
	if !readBack(t, obj, &in) {
		return Input{}, false
	}
	return in, true
}

func readBack(t map[string]any, obj map[string]any, in *Input) bool {
	for k, w := range t {
		v, ok := obj[k]
		if !ok {
			return false
		}
		switch w := w.(type) {
		case map[string]any:
			om, ok := v.(map[string]any)
			if !ok || !readBack(w, om, in) {
				return false
			}
			continue
		case Template:
			om, ok := v.(map[string]any)
			if !ok || !readBack(w, om, in) {
				return false
			}
			continue
		case string:
			switch w {
			case "{data}":
				sv, ok := v.(string)
				if !ok {
					return false
				}
				in.Data = []byte(sv)
				continue
			case "{session}":
				sv, ok := v.(string)
				if !ok {
					return false
				}
				in.Session = sv
				continue
			case "{rows}", "{cols}":
				n, ok := size(v)
				if !ok {
					return false
				}
				if w == "{rows}" {
					in.Rows = n
				} else {
					in.Cols = n
				}
				continue
			}
		}
		if !valueEqual(w, v) {
			return false
		}
	}
	return true
}

// size reads a terminal dimension: a number, or a string of one.
func size(v any) (uint16, bool) {
	var f float64
	switch v := v.(type) {
	case float64:
		f = v
	case string:
		n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, false
		}
		f = n
	default:
		return 0, false
	}
	if f < 0 || f > math.MaxUint16 || f != math.Trunc(f) {
		return 0, false
	}
	return uint16(f), true
}

// Output encodes output for the client, inside the transport.
func (s *ServerCodec) Output(data []byte) (int, []byte) {
	if s.d.Encoding == Raw {
		if s.d.Frames == Binary {
			return websocket.BinaryMessage, data
		}
		return websocket.TextMessage, data
	}
	m := map[string]any{}
	for k, v := range s.d.Output.When {
		m[k] = v
	}
	m[s.d.Output.Data] = string(data)
	b, _ := json.Marshal(m)
	return websocket.TextMessage, b
}

// Request reads the Params of a connect request under prefix (a tty
// dialect's sessions always have one).
func (d *Dialect) Request(prefix string, r *http.Request) (Params, error) {
	p, err := ParseRequest(d.Path, prefix, r)
	if d.TTY == TTYAlways {
		p.TTY = true
	}
	return p, err
}

// SessionRequestParams reads the Params of a session request under prefix.
func (d *Dialect) SessionRequestParams(prefix string, r *http.Request) (Params, error) {
	p, err := ParseRequest(d.Session.Path, prefix, r)
	if d.TTY == TTYAlways {
		p.TTY = true
	}
	return p, err
}
