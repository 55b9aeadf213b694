package execproto

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Transport is how an exec session's streams travel between two peers: as
// one WebSocket whose messages carry a channel byte, or as SPDY/3.1 streams,
// one per exec stream (client-go's remotecommand SPDY executor, kubectl
// before 1.31 and as its fallback, kubectl proxy and the kubelet).
type Transport string

const (
	// TransportWebSocket: RFC 6455 with a channel.k8s.io subprotocol.
	TransportWebSocket Transport = "websocket"
	// TransportSPDY: an HTTP upgrade to SPDY/3.1 (k8s.io/streaming's
	// httpstream/spdy, github.com/moby/spdystream under it).
	TransportSPDY Transport = "spdy"
)

// Transports lists every transport, WebSocket first.
var Transports = []Transport{TransportWebSocket, TransportSPDY}

// String names the transport, "websocket" for the zero value.
func (t Transport) String() string {
	if t == "" {
		return string(TransportWebSocket)
	}
	return string(t)
}

// Normal is t with the zero value spelt out: TransportWebSocket.
func (t Transport) Normal() Transport {
	if t == "" {
		return TransportWebSocket
	}
	return t
}

// ParseTransport is the inverse of String.
func ParseTransport(s string) (Transport, error) {
	for _, t := range Transports {
		if s == string(t) {
			return t, nil
		}
	}
	return "", fmt.Errorf("execproto: unknown transport %q (want websocket or spdy)", s)
}

// The SPDY upgrade and its negotiation (k8s.io/streaming/pkg/httpstream:
// HeaderProtocolVersion, HeaderUpgrade; k8s.io/streaming/pkg/httpstream/spdy:
// HeaderSpdy31).
const (
	// SPDYUpgrade is the Upgrade header's value of a SPDY exec request.
	SPDYUpgrade = "SPDY/3.1"
	// HeaderProtocolVersion carries the client's versions, in its order of
	// preference, and the server's choice in the 101 response.
	HeaderProtocolVersion = "X-Stream-Protocol-Version"
	// HeaderAcceptedProtocolVersions lists the server's versions in a
	// refusal (403).
	HeaderAcceptedProtocolVersions = "X-Accepted-Stream-Protocol-Versions"
	// HeaderStreamType names a SPDY stream's exec stream
	// (k8s.io/api/core/v1.StreamType).
	HeaderStreamType = "streamType"
)

// The stream protocol versions of SPDY exec
// (k8s.io/apimachinery/pkg/util/remotecommand/constants.go). Over SPDY the
// version changes what the streams carry, not how they are framed.
const (
	// SPDYProtocolV1: stdin, stdout, stderr and a text error stream; the
	// server waits for every stream the request asked for.
	SPDYProtocolV1 Protocol = "channel.k8s.io"
	// SPDYProtocolV2: v1 without the server's wait for an error stream
	// that a client may not create, and with a text error stream.
	SPDYProtocolV2 Protocol = "v2.channel.k8s.io"
	// SPDYProtocolV3: v2 plus the resize stream (JSON TerminalSize).
	SPDYProtocolV3 Protocol = "v3.channel.k8s.io"
	// SPDYProtocolV4: v3 plus a JSON metav1.Status on the error stream.
	SPDYProtocolV4 Protocol = "v4.channel.k8s.io"
	// SPDYProtocolV5: the version client-go offers first; the kubelet does
	// not accept it over SPDY (it adds the WebSocket CLOSE signal only).
	SPDYProtocolV5 Protocol = "v5.channel.k8s.io"
)

// KubeletSPDYProtocols is what the kubelet accepts over SPDY, in its order
// (remotecommand.SupportedStreamingProtocols of Kubernetes 1.34).
var KubeletSPDYProtocols = []Protocol{SPDYProtocolV4, SPDYProtocolV3, SPDYProtocolV2, SPDYProtocolV1}

// ClientGoSPDYOffer is what client-go's NewSPDYExecutor offers, in order
// (k8s.io/client-go/tools/remotecommand/spdy.go of 1.34).
var ClientGoSPDYOffer = []string{string(SPDYProtocolV5), string(SPDYProtocolV4), string(SPDYProtocolV3), string(SPDYProtocolV2), string(SPDYProtocolV1)}

// The streamType header values (k8s.io/api/core/v1: StreamTypeStdin, ...).
const (
	StreamTypeError  = "error"
	StreamTypeStdin  = "stdin"
	StreamTypeStdout = "stdout"
	StreamTypeStderr = "stderr"
	StreamTypeResize = "resize"
)

// StreamOfType maps a streamType header value to the exec channel that
// carries the same stream over WebSocket, so that records of both
// transports name streams alike.
func StreamOfType(t string) (byte, bool) {
	switch strings.ToLower(t) {
	case StreamTypeStdin:
		return StreamStdin, true
	case StreamTypeStdout:
		return StreamStdout, true
	case StreamTypeStderr:
		return StreamStderr, true
	case StreamTypeError:
		return StreamError, true
	case StreamTypeResize:
		return StreamResize, true
	}
	return 0, false
}

// StreamType is the streamType header value of an exec channel, "" for
// none.
func StreamType(stream byte) string {
	switch stream {
	case StreamStdin:
		return StreamTypeStdin
	case StreamStdout:
		return StreamTypeStdout
	case StreamStderr:
		return StreamTypeStderr
	case StreamError:
		return StreamTypeError
	case StreamResize:
		return StreamTypeResize
	}
	return ""
}

// ErrNoSPDYProtocol is returned by NegotiateSPDY when no offered version
// is one the kubelet accepts; the upgrade is then refused with 403.
var ErrNoSPDYProtocol = errors.New("no stream protocol version in common")

// NegotiateSPDY picks the version the kubelet answers for a SPDY client's
// offer (the X-Stream-Protocol-Version values, each of which may hold
// several comma-separated names), as k8s.io/streaming/pkg/httpstream's
// Handshake does: the first offered version the server supports, in the
// client's order. An offer with no version is refused (the kubelet
// answers 400: "X-Stream-Protocol-Version is required").
func NegotiateSPDY(offered []string) (Protocol, error) {
	var names []string
	for _, h := range offered {
		for _, n := range strings.Split(h, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("%w: %s is required", ErrNoSPDYProtocol, HeaderProtocolVersion)
	}
	for _, n := range names {
		if slices.Contains(KubeletSPDYProtocols, Protocol(n)) {
			return Protocol(n), nil
		}
	}
	return "", fmt.Errorf("%w: client offers %v, the kubelet accepts %v", ErrNoSPDYProtocol, RedactOffer(names), KubeletSPDYProtocols)
}

// SPDYSupported reports whether the kubelet accepts p over SPDY.
func SPDYSupported(p Protocol) bool { return slices.Contains(KubeletSPDYProtocols, p) }

// SPDYStatusJSON reports whether the error stream of version p carries a
// JSON metav1.Status (v4); before it, only a failure's text.
func SPDYStatusJSON(p Protocol) bool { return p == SPDYProtocolV4 }
