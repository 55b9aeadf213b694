package execclient

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/execproto"
)

// Defaults for the zero values of Options.
const (
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultMaxMessageSize   = 1 << 20 // 1 MiB, far above the 32 KiB chunks the kubelet writes
	DefaultWriteTimeout     = 10 * time.Second
	DefaultCloseWait        = 2 * time.Second
)

// Bounds of what a Conn keeps.
const (
	// MaxOutput is how much of the stdout+stderr stream Output keeps (the tail).
	MaxOutput = 1 << 20
	// MaxFrames is how many received messages Frames keeps (the first ones).
	MaxFrames = 1000
	// MaxHandshakeBody is how much of a refused handshake's body HandshakeError keeps.
	MaxHandshakeBody = 4 << 10
	// tailLen is how much output an Expect error quotes.
	tailLen = 512
)

// Options configures Dial and DialSPDY. The zero value offers no
// subprotocol over plain ws:// with the defaults above; for DialSPDY it
// offers execproto.ClientGoSPDYOffer (see DialSPDY for how Protocols,
// RawProtocols, Trace and Header differ there; MaxMessageSize bounds the
// status kept from the error stream).
type Options struct {
	// Protocols are offered in this order in Sec-WebSocket-Protocol. Empty:
	// offer none (the header is absent). ProtocolNone inside a non-empty list
	// is skipped; a list of only ProtocolNone offers none.
	Protocols []execproto.Protocol

	// RawProtocols, if non-nil, is offered verbatim instead of Protocols,
	// joined with ", " into one header line, for negotiation tests (unknown
	// names, odd spelling). A non-nil empty slice sends the header with an
	// empty value.
	RawProtocols []string

	// StrictProtocol makes Dial fail, as a browser does, when the server's
	// Sec-WebSocket-Protocol is not one of the offered names, or is absent
	// although something was offered. Off, Dial accepts any answer and
	// Protocol reports it.
	StrictProtocol bool

	// Trace, if set, receives the connection's bytes once the WebSocket is
	// open (as gorilla reads and writes them, above TLS), for a frame
	// timeline of the client's leg. Its methods are called from the
	// connection's reader and writer, so it must be safe for concurrent use.
	Trace Trace

	// Header holds extra request headers: Authorization, Origin, Cookie.
	// It must not set Sec-WebSocket-Protocol (use Protocols or RawProtocols)
	// nor the headers the WebSocket handshake owns.
	Header http.Header

	// TLSConfig is used for wss:// URLs. It is cloned; ServerName defaults to
	// the URL's host and NextProtos is forced to http/1.1 (WebSocket over
	// HTTP/2 is not emulated).
	TLSConfig *tls.Config

	// HandshakeTimeout bounds TCP connect, TLS and the HTTP upgrade together
	// (on top of Dial's ctx). Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// MaxMessageSize is the read limit for one message from the server; a
	// bigger one ends the connection (gorilla sends close 1009). Default
	// DefaultMaxMessageSize.
	MaxMessageSize int64

	// WriteTimeout bounds every write: data messages, pongs, close frames.
	// Default DefaultWriteTimeout.
	WriteTimeout time.Duration

	// CloseWait bounds how long the client waits for the server to close TCP
	// after a close handshake the server started, and after AbortTCP, before
	// closing the socket itself. (After Close, its ctx bounds the wait.)
	// Default DefaultCloseWait.
	CloseWait time.Duration

	// AutotuneBuffers leaves the kernel's own (autotuned) send buffer to
	// the connection instead of the small fixed one (see dialTCP): for
	// throughput measurements.
	AutotuneBuffers bool

	// Logger receives debug events (dial, refusal, end). Nil discards.
	Logger *slog.Logger

	// Dialect, if set (and not dialect.Kubernetes), is the front dialect
	// the WebSocket speaks instead of the exec subprotocols (Dial only):
	// Type, Resize and Send(StreamStdin) are encoded for it, its output
	// messages are the output, and it carries no status (Status answers
	// none) and no stdin close. The URL is the dialect's (ConnectURL).
	// Subprotocols come from Protocols or RawProtocols as ever
	// (DialDialect offers the dialect's own).
	Dialect *dialect.Dialect
	// DialectSession fills the dialect's {session} (a session request's
	// answer).
	DialectSession string
}

// withDefaults returns o with zero values replaced by the defaults.
func (o Options) withDefaults() Options {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.CloseWait <= 0 {
		o.CloseWait = DefaultCloseWait
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// offer gives the subprotocol names to send, and whether to send the header.
func (o Options) offer() ([]string, bool) {
	if o.RawProtocols != nil {
		return o.RawProtocols, true
	}
	var names []string
	for _, p := range o.Protocols {
		if p != execproto.ProtocolNone {
			names = append(names, string(p))
		}
	}
	return names, len(names) > 0
}

// Trace receives the raw bytes of an open connection: Start once with the
// negotiated protocol, before any bytes; Sent with every write to the server
// (before it is written, so that a frame is seen before its answer);
// Received with every read from it. fakeapiserver.Recorder is one.
type Trace interface {
	Start(p execproto.Protocol)
	Sent(b []byte)
	Received(b []byte)
}

// DialectTrace is a Trace that records a dialect connection: the client
// calls StartDialect(name) instead of Start. fakeapiserver.Recorder is one.
type DialectTrace interface {
	Trace
	StartDialect(name string)
}

// TransportTrace is a Trace that also parses SPDY: a SPDY client calls
// StartTransport(TransportSPDY, p) instead of Start(p), and the Trace then
// reads the bytes as SPDY/3.1 frames. fakeapiserver.Recorder is one.
type TransportTrace interface {
	Trace
	StartTransport(t execproto.Transport, p execproto.Protocol)
}
