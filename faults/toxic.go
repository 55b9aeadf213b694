package faults

import (
	"encoding/json"
	"fmt"
)

// Direction is the stream a toxic acts on, as Toxiproxy names it.
type Direction string

const (
	Upstream   Direction = "upstream"   // client -> upstream
	Downstream Direction = "downstream" // upstream -> client
)

// Toxic types that this package adds to Toxiproxy's.
const (
	TypeIdleTimeout = "idle_timeout"
	TypeHalfOpen    = "half_open"
)

// Toxic is one fault to add to a Link. It mirrors Toxiproxy's JSON toxic.
type Toxic struct {
	// Name is unique on the link; empty means Type_Stream, as in Toxiproxy.
	Name string
	// Type is a Toxiproxy toxic type ("latency", "reset_peer", ...) or one
	// of TypeIdleTimeout and TypeHalfOpen.
	Type string
	// Stream is the chain the toxic sits in; empty means Downstream, as in
	// Toxiproxy. idle_timeout and half_open act on both directions whatever
	// their stream.
	Stream Direction
	// Toxicity is the probability that a connection is affected; 0 means 1.
	Toxicity float32
	// Attributes are the toxic's parameters, as in Toxiproxy's JSON.
	Attributes map[string]any
}

// On returns t acting on stream d.
func (t Toxic) On(d Direction) Toxic { t.Stream = d; return t }

// Named returns t named name.
func (t Toxic) Named(name string) Toxic { t.Name = name; return t }

func toxic(typ string, attrs map[string]any) Toxic {
	return Toxic{Type: typ, Attributes: attrs}
}

// Latency delays every chunk by ms milliseconds, plus or minus jitter.
func Latency(ms, jitter int64) Toxic {
	return toxic("latency", map[string]any{"latency": ms, "jitter": jitter})
}

// Bandwidth limits the stream to kbps kilobytes (not kilobits) per second,
// Toxiproxy's "rate".
func Bandwidth(kbps int64) Toxic {
	return toxic("bandwidth", map[string]any{"rate": kbps})
}

// Slicer cuts chunks into pieces of avgSize bytes, plus or minus
// sizeVariation, sent delayUs microseconds apart.
func Slicer(avgSize, sizeVariation, delayUs int) Toxic {
	return toxic("slicer", map[string]any{"average_size": avgSize, "size_variation": sizeVariation, "delay": delayUs})
}

// ResetPeer resets both connections (RST, SO_LINGER 0) timeoutMs
// milliseconds after the next chunk (or end of stream) arrives in its
// stream: as in Toxiproxy, an idle stream is never reset. Unlike the plain
// Toxiproxy server, it resets even when added to a connection that is
// already open.
func ResetPeer(timeoutMs int64) Toxic {
	return toxic("reset_peer", map[string]any{"timeout": timeoutMs})
}

// Timeout drops all data in its stream and closes the connection once ms
// milliseconds pass with no chunk arriving (Toxiproxy restarts its timer
// on every chunk it drops, so steady traffic is never closed); 0 never
// closes it. Removing it closes the connection.
func Timeout(ms int64) Toxic {
	return toxic("timeout", map[string]any{"timeout": ms})
}

// LimitData closes the connection once bytes bytes have passed its stream.
func LimitData(bytes int64) Toxic {
	return toxic("limit_data", map[string]any{"bytes": bytes})
}

// SlowClose delays the close of its stream by delayMs milliseconds.
func SlowClose(delayMs int64) Toxic {
	return toxic("slow_close", map[string]any{"delay": delayMs})
}

// IdleTimeout closes both connections after ms milliseconds with no data
// in either direction; with reset, by RST instead of FIN. See
// IdleTimeoutToxic.
func IdleTimeout(ms int64, reset bool) Toxic {
	return toxic(TypeIdleTimeout, map[string]any{"timeout": ms, "reset": reset})
}

// HalfOpen silently drops everything both ways and closes nothing. See
// HalfOpenToxic.
func HalfOpen() Toxic {
	return toxic(TypeHalfOpen, nil)
}

// toxiproxyJSON is t as Toxiproxy's ToxicCollection.AddToxicJson reads it,
// and the toxicity left for the toxic itself to apply (see binding).
func (t Toxic) toxiproxyJSON() (name string, body []byte, toxicity float32, err error) {
	stream := t.Stream
	switch stream {
	case "":
		stream = Downstream
	case Upstream, Downstream:
	default:
		return "", nil, 0, fmt.Errorf("stream %q: want %q or %q", t.Stream, Upstream, Downstream)
	}
	toxicity = t.Toxicity
	if toxicity == 0 {
		toxicity = 1
	}
	if toxicity < 0 || toxicity > 1 {
		return "", nil, 0, fmt.Errorf("toxicity %v: want 0 to 1", t.Toxicity)
	}
	name = t.Name
	if name == "" {
		name = t.Type + "_" + string(stream)
	}
	typ, proxyToxicity := t.Type, toxicity
	if a, ok := adapted[t.Type]; ok {
		typ = a
	}
	switch t.Type {
	case TypeIdleTimeout, TypeHalfOpen:
		// Decided once per connection when the toxic attaches, not at
		// each restart of its stub as Toxiproxy would.
		proxyToxicity = 1
	}
	attrs := t.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}
	body, err = json.Marshal(map[string]any{
		"name":       name,
		"type":       typ,
		"stream":     stream,
		"toxicity":   proxyToxicity,
		"attributes": attrs,
	})
	return name, body, toxicity, err
}
