// Package execproto holds the facts of the Kubernetes exec/attach WebSocket
// subprotocols: their names, channel numbers, message framing and the status
// written on the error channel. Every other package of execconform speaks the
// protocol through it, so that the fake API server, the client emulator and
// the reference proxy can never disagree on a byte.
//
// Sources: k8s.io/apimachinery/pkg/util/remotecommand/constants.go,
// k8s.io/streaming/pkg/httpstream/wsstream/conn.go and KEP-4006.
package execproto

import (
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/gorilla/websocket"
)

// Protocol is a WebSocket subprotocol (Sec-WebSocket-Protocol) of the exec
// endpoint. The zero value, ProtocolNone, is what a client that offers no
// subprotocol gets: the server treats it as binary v1.
type Protocol string

// The subprotocols the API server accepts for exec over WebSocket.
const (
	ProtocolNone     Protocol = ""                         // none offered: binary v1 framing
	ProtocolV1       Protocol = "channel.k8s.io"           // binary, channel byte prefix
	ProtocolBase64   Protocol = "base64.channel.k8s.io"    // text, '0'+channel then base64
	ProtocolV4       Protocol = "v4.channel.k8s.io"        // binary, JSON status on channel 3
	ProtocolV4Base64 Protocol = "v4.base64.channel.k8s.io" // text, JSON status on channel 3
	ProtocolV5       Protocol = "v5.channel.k8s.io"        // binary, plus the CLOSE signal (255)
)

// AllProtocols lists every protocol a WebSocket exec client can end up with,
// the none-offered case first.
var AllProtocols = []Protocol{ProtocolNone, ProtocolV1, ProtocolBase64, ProtocolV4, ProtocolV4Base64, ProtocolV5}

// Stream (channel) numbers, from remotecommand/constants.go.
const (
	StreamStdin  byte = 0
	StreamStdout byte = 1
	StreamStderr byte = 2
	StreamError  byte = 3 // status: plain text before v4, JSON metav1.Status from v4
	StreamResize byte = 4 // JSON TerminalSize
	StreamClose  byte = 255
)

// NumStreams is the number of channels of an exec session (0 to 4).
const NumStreams = 5

// Supported reports whether the server accepts p.
func (p Protocol) Supported() bool {
	for _, q := range AllProtocols {
		if p == q {
			return true
		}
	}
	return false
}

// Base64 reports whether p frames data as text: '0'+channel then standard base64.
func (p Protocol) Base64() bool { return p == ProtocolBase64 || p == ProtocolV4Base64 }

// StatusJSON reports whether the error channel carries a JSON metav1.Status
// (v4 and later) rather than plain text on failure only.
func (p Protocol) StatusJSON() bool {
	return p == ProtocolV4 || p == ProtocolV4Base64 || p == ProtocolV5
}

// StreamClose reports whether p has the CLOSE signal [255, channel] (v5).
func (p Protocol) StreamClose() bool { return p == ProtocolV5 }

// String names p, with "none" for the none-offered case, as used in test names.
func (p Protocol) String() string {
	if p == ProtocolNone {
		return "none"
	}
	return string(p)
}

// ParseProtocol is the inverse of String.
func ParseProtocol(s string) (Protocol, error) {
	if s == "none" {
		return ProtocolNone, nil
	}
	p := Protocol(s)
	if s == "" || !p.Supported() {
		return "", fmt.Errorf("execproto: unknown subprotocol %q", s)
	}
	return p, nil
}

// ErrNoProtocol is returned by Negotiate when no offered subprotocol is
// supported; the real server then refuses the handshake with 403.
var ErrNoProtocol = errors.New("requested protocol(s) are not supported")

// kubeletProtocols are the subprotocols the kubelet's exec handler accepts
// (k8s.io/kubelet pkg/cri/streaming/remotecommand/websocket.go,
// createWebSocketStreams: "", channel.k8s.io, base64.channel.k8s.io and
// the two v4 names). v5 is not among them: the API server answers v5 itself.
var kubeletProtocols = []Protocol{ProtocolNone, ProtocolV1, ProtocolBase64, ProtocolV4, ProtocolV4Base64}

// Negotiate picks the subprotocol the API server answers for the client's
// whole offer (as Offered reads it), as Kubernetes 1.30 and later do with
// the TranslateStreamCloseWebsocketRequests feature on (the default):
//
//   - v5.channel.k8s.io anywhere in the offer wins, whatever its position:
//     the exec and attach handlers (k8s.io/kubernetes
//     pkg/registry/core/pod/rest/subresources.go) hand such a request to
//     the API server's own stream translator
//     (wsstream.IsWebSocketRequestWithStreamCloseProtocol, which looks at
//     every name of the first header line), and its WebSocket server
//     knows only v5 (k8s.io/apiserver pkg/util/proxy/websocket.go);
//   - otherwise the request goes to the kubelet, whose wsstream takes the
//     first offered name it supports, in the client's order (wsstream
//     conn.go, handshake): "", channel.k8s.io, base64.channel.k8s.io,
//     v4.channel.k8s.io, v4.base64.channel.k8s.io. An empty offer, or an
//     empty name in it, is "" (ProtocolNone, binary v1).
//
// None supported: ErrNoProtocol (the handshake is refused with 403).
// Names the server does not know (a bearer token, a console's own
// entries, SPDY's v2 and v3) are skipped.
func Negotiate(offered []string) (Protocol, error) {
	if slices.Contains(offered, string(ProtocolV5)) {
		return ProtocolV5, nil
	}
	if len(offered) == 0 {
		return ProtocolNone, nil
	}
	for _, o := range offered {
		if slices.Contains(kubeletProtocols, Protocol(o)) {
			return Protocol(o), nil
		}
	}
	return "", fmt.Errorf("%w: %v", ErrNoProtocol, RedactOffer(offered))
}

// Offered reads the client's offer from the Sec-WebSocket-Protocol header
// values as the API server's WebSocket library does: only the first header
// line counts, split on commas, each name trimmed, empty names kept ("a, ,
// b" offers "", which selects ProtocolNone). Both places that read the
// offer do so: golang.org/x/net/websocket's server handshake
// (hybi.go, ReadHandshake: Header.Get, strings.Split on ",", TrimSpace)
// and wsstream.IsWebSocketRequestWithStreamCloseProtocol.
func Offered(header []string) []string {
	if len(header) == 0 || strings.TrimSpace(header[0]) == "" {
		return nil
	}
	var out []string
	for _, s := range strings.Split(header[0], ",") {
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

// BearerProtocolPrefix starts the subprotocol with which a WebSocket client
// that cannot set headers (a browser) sends its bearer token: the prefix,
// then the token in unpadded base64url (k8s.io/apiserver
// pkg/authentication/request/websocket/protocol.go). It is a credential:
// every output of the suite shows it as RedactedBearer.
const BearerProtocolPrefix = "base64url.bearer.authorization.k8s.io."

// RedactedBearer is how a bearer-token subprotocol is shown.
const RedactedBearer = BearerProtocolPrefix + "<redacted>"

// BearerProtocol is the subprotocol that carries token.
func BearerProtocol(token string) string {
	return BearerProtocolPrefix + base64.RawURLEncoding.EncodeToString([]byte(token))
}

// bearerText finds a bearer-token subprotocol in any text: the prefix
// (in any case) and the token's characters (base64url, with padding or
// percent-escapes a client may add), or one redacted already (also as
// JSON escapes it).
var bearerText = regexp.MustCompile(`(?i)` + regexp.QuoteMeta(BearerProtocolPrefix) + `(<redacted>|\\u003credacted\\u003e|[A-Za-z0-9_=%+/.-]*)`)

// Redact replaces every bearer-token subprotocol in s with RedactedBearer.
func Redact(s string) string {
	if !strings.Contains(strings.ToLower(s), BearerProtocolPrefix) {
		return s
	}
	return bearerText.ReplaceAllLiteralString(s, RedactedBearer)
}

// RedactOffer is offer with every bearer-token subprotocol redacted (a
// copy; nil stays nil).
func RedactOffer(offer []string) []string {
	if offer == nil {
		return nil
	}
	out := make([]string, len(offer))
	for i, o := range offer {
		out[i] = Redact(o)
	}
	return out
}

// Frame is one decoded exec message.
type Frame struct {
	Stream byte   // channel number; StreamClose for a v5 CLOSE signal
	Data   []byte // payload, base64-decoded where the protocol says so; for CLOSE, the closed channel
}

// FrameError describes a message that does not decode under the negotiated protocol.
type FrameError struct {
	Stream byte // the channel the message named, when it named one
	Reason string
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("execproto: frame on channel %d: %s", e.Stream, e.Reason)
}

// Encode frames data for stream under protocol p and returns the WebSocket
// message type (websocket.TextMessage or websocket.BinaryMessage) and payload.
func Encode(p Protocol, stream byte, data []byte) (int, []byte) {
	if p.Base64() {
		out := make([]byte, 1+base64.StdEncoding.EncodedLen(len(data)))
		out[0] = '0' + stream
		base64.StdEncoding.Encode(out[1:], data)
		return websocket.TextMessage, out
	}
	out := make([]byte, 1+len(data))
	out[0] = stream
	copy(out[1:], data)
	return websocket.BinaryMessage, out
}

// EncodeClose frames the v5 CLOSE signal for stream.
func EncodeClose(stream byte) (int, []byte) {
	return websocket.BinaryMessage, []byte{StreamClose, stream}
}

// Decode decodes one message as the server reads it under protocol p. As in
// wsstream, the message type is not checked: a text message on a binary
// protocol is read as bytes (so base64 framing on a binary protocol names
// channel '0' = 48, which does not exist). An empty message gives a nil
// Frame and no error (the server skips it).
func Decode(p Protocol, messageType int, payload []byte) (*Frame, error) {
	if len(payload) == 0 {
		return nil, nil
	}
	if p.StreamClose() && payload[0] == StreamClose {
		if len(payload) != 2 {
			return nil, &FrameError{Stream: StreamClose, Reason: fmt.Sprintf("CLOSE signal of %d bytes, want 2", len(payload))}
		}
		if payload[1] >= NumStreams {
			return nil, &FrameError{Stream: StreamClose, Reason: fmt.Sprintf("CLOSE signal for unknown channel %d", payload[1])}
		}
		return &Frame{Stream: StreamClose, Data: payload[1:2]}, nil
	}
	stream := payload[0]
	if p.Base64() {
		stream -= '0'
	}
	if stream >= NumStreams {
		return nil, &FrameError{Stream: stream, Reason: fmt.Sprintf("unknown channel (first byte %#x)", payload[0])}
	}
	data := payload[1:]
	if p.Base64() {
		dst := make([]byte, base64.StdEncoding.DecodedLen(len(data)))
		n, err := base64.StdEncoding.Decode(dst, data)
		if err != nil {
			return nil, &FrameError{Stream: stream, Reason: "bad base64: " + err.Error()}
		}
		data = dst[:n]
	} else {
		data = append([]byte(nil), data...)
	}
	return &Frame{Stream: stream, Data: data}, nil
}

// DecodeFromServer decodes a message the client reads: the same framing, but
// the v5 CLOSE signal is never sent by the server.
func DecodeFromServer(p Protocol, messageType int, payload []byte) (*Frame, error) {
	if p.StreamClose() && len(payload) > 0 && payload[0] == StreamClose {
		return nil, &FrameError{Stream: StreamClose, Reason: "CLOSE signal from the server"}
	}
	return Decode(p, messageType, payload)
}

// TerminalSize is the JSON body of a resize message on StreamResize.
type TerminalSize struct {
	Width  uint16 `json:"Width"`
	Height uint16 `json:"Height"`
}
