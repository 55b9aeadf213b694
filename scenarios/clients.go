package scenarios

import (
	"fmt"
	"slices"

	"github.com/execconform/execconform/execproto"
)

// Client is who drives a case: the suite's own emulator (the default),
// or a real client run for real (clients/).
type Client string

// The clients.
const (
	ClientEmulator Client = ""          // the suite's emulator (execclient); printed "emulator"
	ClientGo       Client = "client-go" // client-go's remotecommand executors, in a process of their own
	ClientKubectl  Client = "kubectl"   // a real kubectl binary on a pty
	ClientChromium Client = "chromium"  // headless Chromium running a web console's JavaScript client
)

// String is the client's name: "emulator" for the default.
func (c Client) String() string {
	if c == ClientEmulator {
		return "emulator"
	}
	return string(c)
}

// ParseClient reads a client's name ("emulator" or "" for the default).
func ParseClient(s string) (Client, error) {
	switch c := Client(s); c {
	case "", "emulator":
		return ClientEmulator, nil
	case ClientGo, ClientKubectl, ClientChromium:
		return c, nil
	}
	return "", fmt.Errorf("unknown client %q (want emulator, client-go, kubectl or chromium)", s)
}

// ClientSpec says what a real client can express: the cells of the
// matrix it runs, the others being not applicable (ClientCases). It is
// data about the client, kept beside the scenarios so that the matrix
// can be listed without starting one.
type ClientSpec struct {
	Client Client
	// WebSocket and SPDY are the versions it negotiates by itself over
	// each transport: a case runs in each (nil: not that transport).
	WebSocket []execproto.Protocol
	SPDY      []execproto.Protocol
	// TTY are the tty modes it runs in.
	TTY []bool
	// Endings are the generic endings it can do.
	Endings []EndKind
	// CloseCodes, for EndClientClose, are the codes it can send (a
	// browser's ws.close: 1000 and 3000-4999); nil: none.
	CloseCodes func(code int) bool `json:"-"`
	// Named are its own endings (End{Kind: EndClientOwn, As: name}).
	Named []string
	// Resize: it can send a terminal size on demand.
	Resize bool
	// CloseStdin are the tty modes in which it can half-close stdin (its
	// stdin reaching EOF).
	CloseStdin []bool
	// Paste: it can send a large input at once.
	Paste bool
	// CloseFrames: it tells the close frame it got (a browser's onclose);
	// for a client that cannot, what the client was told is not judged.
	CloseFrames bool
	// Why says what it cannot express, in a word, for the not-applicable
	// reasons ("kubectl", "a browser").
	Who string
}

// The named endings of real clients (End{Kind: EndClientOwn, As: ...}).
const (
	OwnSIGKILL        = "sigkill"         // the client's process is killed
	OwnSIGTERM        = "sigterm"         // the client's process gets SIGTERM
	OwnSIGINT         = "sigint"          // SIGINT (a Ctrl-C in the user's own terminal, sent as a signal)
	OwnSIGHUP         = "sighup"          // SIGHUP (the user's terminal went away)
	OwnTerminalClosed = "terminal-closed" // kubectl: the terminal it runs on is closed (the pty master)
	OwnContextCancel  = "context-cancel"  // client-go: the executor's context is cancelled
	OwnTabClose       = "tab-close"       // Chromium: the tab is closed
	OwnNavigate       = "navigate"        // Chromium: the page navigates away (no back/forward cache)
	// OwnWSClose: the page calls ws.close() with no code (1005 on the
	// wire). The matrix runs it as disconnect/client-close/no-status (a
	// browser's Close with code 1005), not as an own ending.
	OwnWSClose     = "ws-close"
	OwnBrowserKill = "browser-kill" // Chromium: its main process gets SIGKILL
	OwnBrowserTree = "browser-tree" // Chromium: every process of the browser gets SIGKILL
	OwnOffline     = "offline"      // Chromium: the network goes offline (DevTools)
)

// Specs are the real clients' specs, by client.
var Specs = map[Client]ClientSpec{
	ClientGo: {
		Client:     ClientGo,
		WebSocket:  []execproto.Protocol{execproto.ProtocolV5},
		SPDY:       []execproto.Protocol{execproto.SPDYProtocolV4},
		TTY:        []bool{true, false},
		Endings:    []EndKind{EndClientAbort, EndTypeExit, EndBackendKill, EndTargetStop, EndFault},
		Named:      []string{OwnSIGKILL, OwnSIGTERM, OwnContextCancel},
		Resize:     true,
		CloseStdin: []bool{true, false},
		Paste:      true,
		Who:        "client-go",
	},
	ClientKubectl: {
		Client:     ClientKubectl,
		WebSocket:  []execproto.Protocol{execproto.ProtocolV5},
		SPDY:       []execproto.Protocol{execproto.SPDYProtocolV4},
		TTY:        []bool{true, false},
		Endings:    []EndKind{EndClientAbort, EndTypeExit, EndBackendKill, EndTargetStop, EndFault},
		Named:      []string{OwnSIGKILL, OwnSIGTERM, OwnSIGINT, OwnSIGHUP, OwnTerminalClosed},
		Resize:     true,
		CloseStdin: []bool{false},
		Paste:      true,
		Who:        "kubectl",
	},
	ClientChromium: {
		Client:    ClientChromium,
		WebSocket: []execproto.Protocol{execproto.ProtocolBase64},
		TTY:       []bool{true, false},
		Endings:   []EndKind{EndClientClose, EndClientAbort, EndTypeExit, EndBackendKill, EndTargetStop, EndFault},
		// ws.close(): 1000, 3000-4999, or no code at all (1005 on the wire).
		CloseCodes:  func(code int) bool { return code == 1000 || code == 1005 || code >= 3000 && code <= 4999 },
		Named:       []string{OwnTabClose, OwnNavigate, OwnBrowserKill, OwnBrowserTree, OwnOffline},
		Resize:      true,
		Paste:       true,
		CloseFrames: true,
		Who:         "a browser",
	},
}

// ClientApplies says whether scenario s, in tty mode, can be expressed
// by the client of spec, and if not why.
func ClientApplies(s *Scenario, tty bool, spec ClientSpec) (bool, string) {
	who := spec.Who
	switch {
	case s.Offer != nil || len(s.OfferFirst) > 0 || s.SPDYOffer != nil:
		return false, fmt.Sprintf("a negotiation of a chosen offer: %s makes its own", who)
	case s.Knock != "":
		return false, fmt.Sprintf("a knock (a request the proxy must refuse): made by the emulator, not by %s", who)
	case s.Sessions > 1:
		return false, "several sessions at once: a load case, driven by the emulator"
	case !slices.Contains(spec.TTY, tty):
		return false, fmt.Sprintf("%s runs no %s session", who, ModeName(tty))
	}
	switch e := s.End; e.Kind {
	case EndClientOwn:
		if !slices.Contains(spec.Named, e.As) {
			return false, fmt.Sprintf("an ending of another client (%s)", e.As)
		}
	case EndClientClose:
		if spec.CloseCodes == nil {
			return false, fmt.Sprintf("%s cannot send a close frame", who)
		}
		if !spec.CloseCodes(e.Code) {
			return false, fmt.Sprintf("%s cannot send close code %d", who, e.Code)
		}
	default:
		if !slices.Contains(spec.Endings, e.Kind) {
			return false, fmt.Sprintf("%s cannot end a connection by %s on demand", who, e.Kind)
		}
	}
	for _, a := range s.Script {
		switch {
		case a.Kind == ActCloseStdin && !slices.Contains(spec.CloseStdin, tty):
			return false, fmt.Sprintf("%s cannot half-close stdin on a %s session", who, ModeName(tty))
		case a.Kind == ActResize && !spec.Resize:
			return false, fmt.Sprintf("%s cannot resize on demand", who)
		case a.Kind == ActPaste && !spec.Paste:
			return false, fmt.Sprintf("%s cannot paste", who)
		}
	}
	return true, ""
}

// ClientCases expands the table for a real client: the scenarios it can
// express (ClientApplies), over each transport and version it speaks, in
// table order, and the cells it cannot run (once per scenario and tty
// mode, named as the client's first version would have named them). A
// scenario runs over a transport only if it runs over it for the
// emulator (Protocols, SPDY); the client's own endings (EndClientOwn)
// run in every version the client speaks. ClientEmulator is Cases.
func ClientCases(table []Scenario, client Client) ([]Case, []NotApplicable) {
	if client == ClientEmulator {
		return Cases(table), nil
	}
	spec := Specs[client]
	var out []Case
	var na []NotApplicable
	for i := range table {
		s := &table[i]
		var cells []Case
		for _, tr := range []execproto.Transport{execproto.TransportWebSocket, execproto.TransportSPDY} {
			speaks, runs := spec.WebSocket, s.Protocols
			if runs == nil {
				runs = execproto.AllProtocols
			}
			if tr == execproto.TransportSPDY {
				speaks, runs = spec.SPDY, s.SPDY
			}
			for _, p := range speaks {
				if s.End.Kind != EndClientOwn && !slices.Contains(runs, p) {
					continue
				}
				for _, tty := range s.TTY {
					c := Case{Scenario: s, Transport: tr, Protocol: p, TTY: tty, Level: s.Level, Want: s.Want, Client: client}
					if !tty && s.NoTTY != nil {
						c.Level, c.Want = s.NoTTY.Level, s.NoTTY.Want
					}
					cells = append(cells, c)
				}
			}
		}
		if len(cells) == 0 {
			for _, tty := range s.TTY {
				na = append(na, NotApplicable{Name: fmt.Sprintf("%s/%s/%s", client, ModeName(tty), s.Name),
					Why: fmt.Sprintf("runs in no version %s speaks", spec.Who)})
			}
			continue
		}
		seen := map[bool]bool{}
		for _, c := range cells {
			if ok, why := ClientApplies(s, c.TTY, spec); !ok {
				if !seen[c.TTY] {
					seen[c.TTY] = true
					na = append(na, NotApplicable{Name: c.Name(), Why: why})
				}
				continue
			}
			out = append(out, c)
		}
	}
	return out, na
}
