package execclient

import (
	"context"
	"net/http"
	"time"

	"github.com/execconform/execconform/execproto"
)

// Session is one exec session seen from the client, whatever its transport:
// *Conn speaks WebSocket, *SPDYConn SPDY/3.1. The harness drives every
// client through it. Its methods are safe for concurrent use.
type Session interface {
	// Transport says how the session's streams travel.
	Transport() execproto.Transport
	// Protocol is the negotiated version: the WebSocket subprotocol, or
	// the X-Stream-Protocol-Version answer of a SPDY upgrade.
	Protocol() execproto.Protocol
	// Response is the upgrade response (101).
	Response() *http.Response
	// Started is when the dial was called: End().At counts from it.
	Started() time.Time
	// Done is closed when the connection has ended and its reader returned.
	Done() <-chan struct{}
	// End tells how the connection ended (valid once Done is closed).
	End() End

	// Close ends the session cleanly, bounded by ctx. WebSocket: the
	// close handshake with code and reason. SPDY: half-close of every
	// stream the client writes, then GOAWAY and TCP close after reading
	// the server to its end (code and reason are unused).
	Close(ctx context.Context, code int, reason string) (*CloseResult, error)
	// AbortTCP half-closes TCP (FIN) without any protocol goodbye, then
	// drains what the server still sends.
	AbortTCP() error
	// Reset ends TCP with a RST.
	Reset() error
	// Freeze stops reading (the server's writes back up) without closing.
	Freeze()

	// Send writes data on an exec stream (execproto.Stream*).
	Send(stream byte, data []byte) error
	// Type sends s on stdin.
	Type(s string) error
	// Resize sends a terminal size on the resize stream.
	Resize(width, height uint16) error
	// CloseStdin half-closes stdin: the v5 CLOSE signal over WebSocket
	// (an error on older subprotocols), a FIN on the stdin stream over SPDY.
	CloseStdin() error

	// Expect waits until substr appears in stdout+stderr after the
	// previous match.
	Expect(ctx context.Context, substr string) error
	// Status waits for the status on the error stream: ok false if the
	// connection ended without one.
	Status(ctx context.Context) (execproto.Status, bool, error)
	// Output is the tail of stdout+stderr received so far.
	Output() string
}

// Transport is TransportWebSocket: a Conn is a WebSocket.
func (c *Conn) Transport() execproto.Transport { return execproto.TransportWebSocket }

var _ Session = (*Conn)(nil)
