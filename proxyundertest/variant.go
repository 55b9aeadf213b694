package proxyundertest

import (
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/execconform/execconform/execproto"
	"github.com/gorilla/websocket"
)

// Variant selects a deliberately broken behaviour of the proxy, so that the
// conformance suite can be shown to catch it. The zero value is the correct
// reference proxy.
type Variant string

// The variants. Each broken one models a bug seen in real web consoles.
const (
	// Correct is the reference behaviour: exit on stdin, then a close
	// handshake with the backend.
	Correct Variant = ""
	// NoExit never sends the exit: on a frontend end it drops the backend
	// TCP connection, without a close frame either (the naive pre-fix proxy).
	NoExit Variant = "no-exit"
	// AlwaysBase64Exit sends the exit in base64 text framing whatever the
	// negotiated subprotocol; the close handshake is done correctly.
	AlwaysBase64Exit Variant = "base64-exit"
	// ExitThenDrop sends the exit, then drops the backend TCP connection
	// without a close frame: the API server logs an abnormal closure, and
	// on a runtime that has not read the exit yet the shell lives on.
	ExitThenDrop Variant = "exit-then-drop"
	// CloseNoExit does the close handshake but sends no exit: a clean
	// close frame leaves a tty shell alive on containerd (the measured
	// ground truth in shared/E2E-NOTES.md).
	CloseNoExit Variant = "close-no-exit"
	// ExitCloseNoDrain writes the exit and a close frame, then closes TCP
	// at once, from the loop that read the backend (so nothing reads it
	// from the farewell on). With backend output unread in the receive
	// buffer (an echo, a flood) the close becomes a RST, and the server
	// may drop what it had not yet read.
	ExitCloseNoDrain Variant = "exit-close-no-drain"
	// ExitOnStdout sends the exit on channel 1 (stdout) instead of 0: an
	// off-by-one in a hand-written framer. The server ignores it.
	ExitOnStdout Variant = "exit-on-stdout"
	// ExitNoNewline sends "exit" without a line ending: the shell waits
	// for the rest of the line forever.
	ExitNoNewline Variant = "exit-no-newline"
	// ExitNoInterrupt sends the exit without the Ctrl-C first ("exit\r"
	// on a tty): enough at an idle prompt, but a half-typed line makes it
	// "echexit", a busy foreground program (sleep 600) never reads it, and
	// behind an output flood (yes) it waits forever. The proxies that
	// send a bare "exit" are most of those that send one at all.
	ExitNoInterrupt Variant = "exit-no-interrupt"
	// NoKeepalive sends no pings and sets no read deadline on the
	// frontend: a half-open client (a silent NAT drop) is never noticed.
	NoKeepalive Variant = "no-keepalive"
	// CloseNotRelayed does not relay the backend's close: when the shell
	// ends, the client's TCP connection is closed without a close frame
	// (and without the status), so the console cannot say why.
	CloseNotRelayed Variant = "close-not-relayed"
	// FirstProtocolOnly forwards only the first subprotocol the client
	// offered (a proxy that copies one header value).
	FirstProtocolOnly Variant = "first-protocol-only"
	// SortedOffers forwards the client's offer sorted by name (a proxy
	// that rebuilds the header from a set of names): without v5 the
	// kubelet takes the first it supports, now in the wrong order.
	SortedOffers Variant = "sorted-offers"
	// EchoClientProtocol answers the client with its own first offer
	// instead of the backend's choice, so both ends frame differently.
	EchoClientProtocol Variant = "echo-client-protocol"
	// ExitConcurrentWrite writes the exit from the cleanup path, on the
	// backend connection, while the copy loop may still be writing the
	// frontend's last input to it: two writers on one connection. It is
	// harmless while the copy loop is idle; in the middle of a message
	// gorilla/websocket panics ("concurrent write to websocket
	// connection"), after scribbling on the message in flight. net/http
	// recovers a handler's panic and its deferred Closes drop both
	// connections; in any other goroutine the panic ends the process. The
	// exit is lost either way. Seen in web consoles that wrote their
	// farewell from the frontend reader's error path beside a writer
	// goroutine (the "one writer per connection" part of the fix).
	ExitConcurrentWrite Variant = "exit-concurrent-write"
	// FragmentedInput keeps gorilla/websocket's default 4 KiB write buffer
	// on the backend connection, so every message over 4 KiB (a paste) goes
	// out as continuation frames, which the API server reads as separate
	// messages: each continuation's first byte becomes a channel number.
	// Every gorilla-based proxy with default Dialer buffers does this.
	FragmentedInput Variant = "fragmented-input"
	// FDLeak leaks one open file per session (a per-session audit log
	// opened and never closed): the process runs out of descriptors after
	// enough sessions. Only counting the process's open files shows it.
	FDLeak Variant = "fd-leak"
	// LeakGoroutine leaks one goroutine per session (a forwarding loop
	// that waits on a channel nobody closes).
	LeakGoroutine Variant = "goroutine-leak"

	// The front door: who may use the proxy's backend credentials.

	// NoFrontAuth requires no front credential: a console backend that
	// trusts whoever reaches it (kubectl proxy, a sidecar on a shared
	// network). Anyone who can connect gets a shell with its token.
	NoFrontAuth Variant = "no-front-auth"
	// FrontAuthPresenceOnly checks that a credential is there, not that it
	// is right (a session cookie's presence taken for a session).
	FrontAuthPresenceOnly Variant = "front-auth-presence-only"
	// NoOriginCheck accepts every Origin (gorilla's CheckOrigin returning
	// true, as copied from examples): a page on any site the user visits
	// opens a shell with the user's cookie (cross-site WebSocket hijacking).
	NoOriginCheck Variant = "no-origin-check"
	// OriginPrefixMatch tests the Origin with a string prefix of its own
	// host name, port left out: http://127.0.0.1.evil.example:PORT passes.
	OriginPrefixMatch Variant = "origin-prefix-match"
	// NoHostCheck serves any Host: nothing but the front credential stands
	// between a DNS-rebinding page and a shell.
	NoHostCheck Variant = "no-host-check"
	// OpenDoor is the reference proxy as it was: no front credential, no
	// Host check (it checks the Origin, which a rebinding page passes),
	// and every request that is not an exec upgrade relayed to the API
	// server with its own token (the fake's session list, with what
	// clients typed, to anyone).
	OpenDoor Variant = "open-door"

	// SPDY: what pass-through proxies do with client-go's SPDY executor.

	// SPDYTunnel carries SPDY as an opaque byte tunnel, as
	// k8s.io/apimachinery's UpgradeAwareHandler does (kubectl proxy, most
	// Go consoles' "proxy the upgrade" code): it cannot write an exit into
	// a stream it does not parse, so every client drop on a tty leaves the
	// shell alive.
	SPDYTunnel Variant = "spdy-tunnel"
	// WebSocketOnly refuses SPDY upgrades (400), as a proxy written for
	// browsers does: a SPDY client (kubectl's fallback, client-go's SPDY
	// executor) cannot get through.
	WebSocketOnly Variant = "websocket-only"
	// TTYHalfCloseForwarded passes a client's stdin half-close on to the
	// backend on a tty session too (the SPDY stdin FIN, the v5 CLOSE
	// signal): the runtime keeps the tty shell alive, and the closed stdin
	// can no longer carry the exit when the client then drops.
	TTYHalfCloseForwarded Variant = "tty-half-close-forwarded"
)

// Variants returns every known variant, Correct first.
func Variants() []Variant {
	return []Variant{Correct, NoExit, AlwaysBase64Exit, ExitThenDrop, CloseNoExit, ExitCloseNoDrain,
		ExitOnStdout, ExitNoNewline, ExitNoInterrupt, NoKeepalive, CloseNotRelayed, FirstProtocolOnly, SortedOffers, EchoClientProtocol, ExitConcurrentWrite,
		FragmentedInput, LeakGoroutine, FDLeak,
		NoFrontAuth, FrontAuthPresenceOnly, NoOriginCheck, OriginPrefixMatch, NoHostCheck, OpenDoor,
		SPDYTunnel, WebSocketOnly, TTYHalfCloseForwarded}
}

// String names v, with "correct" for the zero value.
func (v Variant) String() string {
	if v == Correct {
		return "correct"
	}
	return string(v)
}

func (v Variant) valid() bool {
	for _, w := range Variants() {
		if v == w {
			return true
		}
	}
	return false
}

// The exit sequences written on stdin when the frontend has gone.
const (
	// ExitTTY is for tty sessions. Ctrl-C interrupts a busy foreground
	// program (sleep 600) and discards a half-typed line. The empty line
	// after it is sacrificial: a shell interrupted while reading (dash in
	// canonical mode, bash's readline key by key) throws away what it had
	// just read, so "\x03exit\r" in one write loses the exit at an idle
	// prompt (measured: dash and bash stay alive, bash reports "xit: command
	// not found"). Enter in a tty is \r, which the line discipline turns
	// into a newline.
	ExitTTY = "\x03\rexit\r"
	// ExitNoTTY is for sessions whose stdin is a pipe.
	ExitNoTTY = "exit\n"
)

// ExitSequence returns ExitTTY or ExitNoTTY.
func ExitSequence(tty bool) []byte {
	if tty {
		return []byte(ExitTTY)
	}
	return []byte(ExitNoTTY)
}

// ExitMessage returns the WebSocket message (type and payload) carrying the
// exit sequence on stdin under protocol p: what the correct proxy sends.
func ExitMessage(p execproto.Protocol, tty bool) (int, []byte) {
	return execproto.Encode(p, execproto.StreamStdin, ExitSequence(tty))
}

// farewell is what the proxy does to the backend connection when the session
// ends on the frontend side (or on Shutdown).
type farewell struct {
	exit       *frame // written first; nil: none
	closeFrame bool   // then a close frame
	drain      bool   // then read the backend until its close reply and its TCP close
	// waitExit: between the exit and the close frame, wait (half the
	// close bound at most) for the backend to end the session itself.
	waitExit bool
	// With closeFrame and drain false the backend TCP connection is closed
	// at once, whatever was written.
}

func (f farewell) String() string {
	return fmt.Sprintf("exit=%t wait-exit=%t close-frame=%t drain=%t", f.exit != nil, f.waitExit, f.closeFrame, f.drain)
}

// farewell is the ONLY place where the Variant changes the proxy's
// behaviour. Add new variants here, each with the real-world bug it models.
func (v Variant) farewell(p execproto.Protocol, tty bool) farewell {
	t, b := ExitMessage(p, tty)
	exit := &frame{typ: t, data: b}
	switch v {
	case NoExit:
		// The naive proxy: its frontend error path calls Close() on the
		// backend *websocket.Conn, which drops TCP with neither the exit nor
		// a close frame. The API server sees EOF and stops copying stdin;
		// the runtime keeps the pty open, so a tty shell lives on as an
		// orphan (kubernetes/kubernetes#89031, rancher/rancher#16192).
		return farewell{}
	case AlwaysBase64Exit:
		// A console written for browsers' base64.channel.k8s.io hard-codes
		// the text framing '0'+base64 for its exit. On a binary subprotocol
		// the server reads the first byte '0' (48) as a channel number that
		// does not exist and the shell never sees the exit.
		t, b := execproto.Encode(execproto.ProtocolBase64, execproto.StreamStdin, ExitSequence(tty))
		return farewell{exit: &frame{typ: t, data: b}, waitExit: true, closeFrame: true, drain: true}
	case ExitThenDrop:
		return farewell{exit: exit}
	case CloseNoExit:
		return farewell{closeFrame: true, drain: true}
	case ExitCloseNoDrain:
		return farewell{exit: exit, closeFrame: true}
	case ExitOnStdout:
		t, b := execproto.Encode(p, execproto.StreamStdout, ExitSequence(tty))
		return farewell{exit: &frame{typ: t, data: b}, waitExit: true, closeFrame: true, drain: true}
	case ExitNoNewline:
		t, b := execproto.Encode(p, execproto.StreamStdin, []byte("exit"))
		return farewell{exit: &frame{typ: t, data: b}, waitExit: true, closeFrame: true, drain: true}
	case ExitNoInterrupt:
		seq := ExitNoTTY
		if tty {
			seq = "exit\r"
		}
		t, b := execproto.Encode(p, execproto.StreamStdin, []byte(seq))
		return farewell{exit: &frame{typ: t, data: b}, waitExit: true, closeFrame: true, drain: true}
	}
	// The close frame waits for the shell: on a real cluster a close
	// right behind the exit can overtake it in the runtime's stream
	// server, which then closes stdin before the exit reached the pty
	// (measured by make e2e-local, TestExitSequences: 1 of 30 v4
	// half-typed sessions kept its shell). The shell's exit makes the
	// API server send the status and close first; the proxy's close
	// frame is then the reply.
	return farewell{exit: exit, waitExit: true, closeFrame: true, drain: true}
}

// tunnelsSPDY reports whether SPDY is carried as an opaque tunnel.
func (v Variant) tunnelsSPDY() bool { return v == SPDYTunnel }

// websocketOnly reports whether SPDY upgrades are refused.
func (v Variant) websocketOnly() bool { return v == WebSocketOnly }

// forwardsTTYHalfClose reports whether a tty's stdin half-close is passed on.
func (v Variant) forwardsTTYHalfClose() bool { return v == TTYHalfCloseForwarded }

// keepalive reports whether the proxy pings its frontend and times out a
// silent one.
func (v Variant) keepalive() bool { return v != NoKeepalive }

// relaysBackendClose reports whether the backend's close is relayed to the
// frontend as a close frame.
func (v Variant) relaysBackendClose() bool { return v != CloseNotRelayed }

// forwardOffers is what the proxy offers the backend of the client's offers.
func (v Variant) forwardOffers(offered []string) []string {
	switch {
	case v == FirstProtocolOnly && len(offered) > 1:
		return offered[:1]
	case v == SortedOffers:
		return slices.Sorted(slices.Values(offered))
	}
	return offered
}

// answer is the subprotocol the proxy answers the client with.
func (v Variant) answer(offered []string, chosen string) string {
	if v == EchoClientProtocol && len(offered) > 0 {
		return offered[0]
	}
	return chosen
}

// secondWriter reports whether the exit is written beside the backend
// endpoint's writer instead of through it.
func (v Variant) secondWriter() bool { return v == ExitConcurrentWrite }

// fragments reports whether the backend connection keeps gorilla's default
// write buffer (and so fragments large messages).
func (v Variant) fragments() bool { return v == FragmentedInput }

// leaksFile reports whether the proxy leaks an open file per session.
func (v Variant) leaksFile() bool { return v == FDLeak }

// leaks reports whether the proxy leaks a goroutine per session.
func (v Variant) leaks() bool { return v == LeakGoroutine }

// noFrontAuth reports whether the proxy serves requests without a front credential.
func (v Variant) noFrontAuth() bool { return v == NoFrontAuth || v == OpenDoor }

// frontPresenceOnly reports whether any value passes for the front credential.
func (v Variant) frontPresenceOnly() bool { return v == FrontAuthPresenceOnly }

// noOriginCheck reports whether every Origin is allowed.
func (v Variant) noOriginCheck() bool { return v == NoOriginCheck }

// originPrefix reports whether the Origin is tested by a prefix of the host name.
func (v Variant) originPrefix() bool { return v == OriginPrefixMatch }

// noHostCheck reports whether every Host is served.
func (v Variant) noHostCheck() bool { return v == NoHostCheck || v == OpenDoor }

// relaysAPI reports whether requests that are not exec upgrades are
// relayed to the API server with the proxy's token.
func (v Variant) relaysAPI() bool { return v == OpenDoor }

// closeFrameFor builds a close frame; code 1005 (no status) gives an empty
// payload, as RFC 6455 section 7.1.5 requires.
func closeFrameFor(code int, text string) frame {
	if len(text) > maxCloseText {
		text = text[:maxCloseText]
		for !utf8.ValidString(text) { // do not cut a rune in two
			text = text[:len(text)-1]
		}
	}
	return frame{typ: websocket.CloseMessage, data: websocket.FormatCloseMessage(code, text)}
}

// maxCloseText is the longest reason that fits a control frame (RFC 6455
// section 5.5: 125 bytes of payload, 2 of them for the code).
const maxCloseText = 123

// The keepalive the suite runs the reference proxy with (the CLI's default
// target and this package's conformance tests): a ping every second, dead
// after 2 s more without an answer, so a half-open client is found within
// SuiteKeepalive. The proxy's own defaults are 10 s and 10 s; these keep the
// half-open cases quick and are still long enough for a loaded 2-core
// machine running 200 sessions at once.
const (
	SuitePingInterval = time.Second
	SuitePongTimeout  = 2 * time.Second
	SuiteKeepalive    = SuitePingInterval + SuitePongTimeout
)
