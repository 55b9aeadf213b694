// Package scenarios holds the conformance cases as data: what the client
// does, how the connection ends, and what must be true afterwards. The
// harness runs them; the CLI lists, filters and prints them.
package scenarios

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/execproto"
)

// Level is an RFC 2119 requirement level.
type Level string

// The levels: a MUST failure fails the run, a SHOULD failure is reported as
// NON-STRICT, an INFO case only reports what happened.
const (
	MUST   Level = "MUST"
	SHOULD Level = "SHOULD"
	INFO   Level = "INFO"
)

// Scenario is one row of the matrix. It runs once per protocol in
// Protocols and per tty mode in TTY.
type Scenario struct {
	Name        string // slash path, e.g. "client-close/1000"
	Level       Level
	Description string
	Protocols   []execproto.Protocol // nil: every protocol (over WebSocket); empty: none
	// SPDY are the stream protocol versions the scenario also runs in over
	// SPDY/3.1 (nil: WebSocket only); see SPDYAxis.
	SPDY []execproto.Protocol `json:",omitempty"`
	// SPDYOffer, if not nil, is a SPDY client's whole version offer, in
	// order; the case's one version is what the kubelet picks for it
	// (execproto.NegotiateSPDY). The scenario then runs over SPDY only.
	SPDYOffer []string `json:",omitempty"`
	TTY       []bool   // the tty modes it runs in
	Command   []string // nil: DefaultCommand
	Script    []Action // client actions before the ending
	End       End
	Want      Outcome
	// NoTTY overrides the level and outcome for tty=false, where a
	// pipe-backed shell behaves differently.
	NoTTY *Override
	// Faults are network faults on the case's legs (see Fault).
	Faults []Fault `json:",omitempty"`
	// Nudge is typed on every session right after the faults that start
	// AfterScript, for faults that act on the next byte (reset_peer); its
	// errors are ignored, since the connection may already be gone.
	Nudge string `json:",omitempty"`
	// OfferFirst are subprotocol names the client offers before the
	// case's own (which the backend must still choose, and the proxy
	// answer): a proxy must forward every offer, in order, and return the
	// backend's choice.
	OfferFirst []string `json:",omitempty"`
	// Offer, if not nil, is the client's whole offer, verbatim and in
	// order, as a real client sends it (unknown names, a bearer token:
	// OfferToken). The case's one protocol is what the API server picks
	// for it (execproto.Negotiate, as the fake API server does), so
	// Protocols must be nil: the proxy must answer exactly that.
	Offer []string `json:",omitempty"`
	// Knock, if set, is a request the proxy must refuse, made before the
	// case's sessions (which are then its control): see FrontDoor.
	Knock Knock `json:",omitempty"`
	// Sessions is how many sessions the case opens at once (default 1);
	// the script and the ending apply to each, and each is judged.
	Sessions int `json:",omitempty"`
	// Timeout bounds the whole case (default 15s); a watchdog fails it
	// instead of letting it hang.
	Timeout time.Duration
}

// Leg names a TCP leg of a case. Every case runs with a Toxiproxy link on
// each leg:
//
//	client ──client leg──> proxy under test ──backend leg──> fake API server
type Leg string

// The legs.
const (
	ClientLeg  Leg = "client"  // where a load balancer sits
	BackendLeg Leg = "backend" // between the proxy and the API server
)

// Trigger says when a fault starts. Faults start on events, never after a sleep.
type Trigger string

// The triggers.
const (
	AtStart     Trigger = "start"        // before the first dial
	AfterScript Trigger = "after-script" // once the script has run (the shell has answered)
	AtEnding    Trigger = "at-ending"    // right before the case's ending
)

// Fault is a network fault on one leg: a Toxiproxy toxic (built-in, or
// the suite's idle_timeout and half_open), or the link going down.
type Fault struct {
	Leg        Leg
	Toxic      string         // toxic type, or ToxicDown for the link going down
	Stream     string         `json:",omitempty"` // "upstream" (toward the API server), "downstream", or "" for both
	Attributes map[string]any `json:",omitempty"`
	At         Trigger
}

// ToxicDown is the pseudo-toxic for a link going down: every connection
// on it is cut and new ones are refused.
const ToxicDown = "down"

// Override replaces a scenario's level and outcome in one tty mode.
type Override struct {
	Level Level
	Want  Outcome
	Why   string
}

// DefaultCommand is what web consoles commonly run.
var DefaultCommand = []string{"sh", "-i"}

// ActionKind says what an Action does.
type ActionKind string

// The client actions.
const (
	ActType        ActionKind = "type"         // send Text on stdin
	ActExpect      ActionKind = "expect"       // wait until the output contains Text
	ActResize      ActionKind = "resize"       // send a resize
	ActWaitProcess ActionKind = "wait-process" // wait until the process table shows a process named Text in the session
	ActPaste       ActionKind = "paste"        // send Bytes of Text repeated, in messages of Size bytes, without waiting for the shell
	ActCloseStdin  ActionKind = "close-stdin"  // half-close stdin: a FIN on the SPDY stdin stream, the v5 CLOSE signal
)

// Action is one step of a client script.
type Action struct {
	Kind   ActionKind
	Text   string
	Width  uint16 `json:",omitempty"`
	Height uint16 `json:",omitempty"`
	Bytes  int    `json:",omitempty"` // ActPaste: the paste's total size
	Size   int    `json:",omitempty"` // ActPaste: the size of each message
}

// Type sends s on stdin.
func Type(s string) Action { return Action{Kind: ActType, Text: s} }

// Expect waits until the output received since the last Expect contains s.
func Expect(s string) Action { return Action{Kind: ActExpect, Text: s} }

// Resize sends a terminal size.
func Resize(w, h uint16) Action { return Action{Kind: ActResize, Width: w, Height: h} }

// CloseStdin half-closes stdin and keeps the session open.
func CloseStdin() Action { return Action{Kind: ActCloseStdin} }

// WaitProcess waits until the session has a live process whose command name is name.
func WaitProcess(name string) Action { return Action{Kind: ActWaitProcess, Text: name} }

// Paste sends total bytes of line repeated (cut to fit) on stdin, in
// messages of size bytes, as a browser terminal sends a large clipboard
// paste. It returns once every message is written to the proxy's socket,
// without waiting for the shell to read any of it.
func Paste(line string, total, size int) Action {
	return Action{Kind: ActPaste, Text: line, Bytes: total, Size: size}
}

// PasteData is the content of a Paste action: a.Text repeated to a.Bytes
// bytes, cut into messages of a.Size bytes.
func PasteData(a Action) [][]byte {
	if a.Text == "" || a.Bytes <= 0 || a.Size <= 0 {
		return nil
	}
	all := []byte(strings.Repeat(a.Text, a.Bytes/len(a.Text)+1)[:a.Bytes])
	var out [][]byte
	for len(all) > 0 {
		n := min(a.Size, len(all))
		out = append(out, all[:n:n])
		all = all[n:]
	}
	return out
}

// Ready is the prelude of most scripts: it proves the shell runs and both
// directions work. The shell's echo of the typed line shows "$((40+2))",
// never "42", so only the shell's answer matches.
var Ready = []Action{Type("echo $((40+2))\r"), Expect("42")}

// EndKind says how a case's connection ends.
type EndKind string

// The endings.
const (
	EndClientClose EndKind = "client-close"   // the client sends a close frame with Code and waits for the reply
	EndClientAbort EndKind = "client-tcp-fin" // the client closes TCP without a close frame
	EndClientReset EndKind = "client-tcp-rst" // the client resets TCP (SO_LINGER 0)
	EndTypeExit    EndKind = "type-exit"      // the user types exit: the shell ends by itself
	EndBackendKill EndKind = "backend-kill"   // the process is killed on the backend while the client is connected
	EndTargetStop  EndKind = "target-stop"    // the proxy is stopped (SIGTERM, or Shutdown in-process) with sessions open
	EndFault       EndKind = "fault"          // the case's faults end the connection; nothing more is done
	// EndClientOwn is a real client's own ending, named by End.As
	// (OwnSIGTERM, OwnTabClose...): only that client can run it.
	EndClientOwn EndKind = "client-own"
)

// End is how a case's connection ends.
type End struct {
	Kind EndKind
	Code int    `json:",omitempty"` // close code, for EndClientClose
	As   string `json:",omitempty"` // the client's own ending, for EndClientOwn
}

// Outcome is what must hold after the ending.
type Outcome struct {
	// LiveProcesses is how many of the session's processes may be alive
	// once the grace period has passed (from the process table).
	LiveProcesses int
	// BackendCloseHandshake: the proxy sent a close frame to the backend
	// with BackendCloseCode (0: any code) before the TCP connection ended.
	BackendCloseHandshake bool
	BackendCloseCode      int `json:",omitempty"`
	// ClientCloseCode is the close code the client must receive (0: not checked).
	ClientCloseCode int `json:",omitempty"`
	// ClientClosed: the client must receive a close frame (any code).
	ClientClosed bool `json:",omitempty"`
	// ExitCode, when set, is the exit code the client must receive on the
	// error channel (protocols with a JSON status only).
	ExitCode *int `json:",omitempty"`
	// KeepaliveBound: the case needs the target's declared keepalive bound
	// (a half-open link is only found by pings): the harness waits that
	// bound plus the grace period, and reports INFO for a target that
	// declares none.
	KeepaliveBound bool `json:",omitempty"`
	// AnyLive: live processes are reported, not judged (no proxy can end
	// them: the backend connection itself was cut, or nothing typed can).
	AnyLive bool `json:",omitempty"`
	// ReleaseWithin, if set, is how long after the ending the proxy may
	// keep its backend connection, however it ends it, even when the exit
	// could not end the shell: a proxy must not hold a session (a
	// translating terminal, its executor) for ever.
	ReleaseWithin time.Duration `json:",omitempty"`
}

// Int is a helper for Outcome.ExitCode.
func Int(n int) *int { return &n }

// Case is one cell of the matrix: a scenario in one transport, protocol
// and tty mode.
type Case struct {
	Scenario *Scenario
	// Transport is how the client reaches the proxy ("": WebSocket).
	Transport execproto.Transport
	Protocol  execproto.Protocol
	TTY       bool
	Level     Level
	Want      Outcome
	// Dialect, if set, is the front dialect the client speaks instead of
	// the exec subprotocols (DialectCases); Protocol is then empty.
	Dialect *dialect.Dialect `json:"-"`
	// Client is who drives the case (ClientCases): the emulator, or a
	// real client.
	Client Client `json:",omitempty"`
}

// DialectName is the case's dialect, or "" for the exec subprotocols.
func (c Case) DialectName() string {
	if c.Dialect.IsKubernetes() {
		return ""
	}
	return c.Dialect.Name
}

// ModeName is "tty" or "notty".
func ModeName(tty bool) string {
	if tty {
		return "tty"
	}
	return "notty"
}

// Name is the case's test path: protocol/mode/scenario, filterable like
// go test -run; a SPDY case's path starts with "spdy/", a real client's
// with its name ("kubectl/spdy/...").
func (c Case) Name() string {
	if c.Client != ClientEmulator {
		e := c
		e.Client = ClientEmulator
		return string(c.Client) + "/" + e.Name()
	}
	if d := c.DialectName(); d != "" {
		return fmt.Sprintf("%s/%s/%s", d, ModeName(c.TTY), c.Scenario.Name)
	}
	if c.SPDY() {
		return fmt.Sprintf("spdy/%s/%s/%s", c.Protocol, ModeName(c.TTY), c.Scenario.Name)
	}
	return fmt.Sprintf("%s/%s/%s", c.Protocol, ModeName(c.TTY), c.Scenario.Name)
}

// SPDY reports whether the case runs over SPDY.
func (c Case) SPDY() bool { return c.Transport == execproto.TransportSPDY }

// Offer is what the client offers, in order: the scenario's Offer, or
// its OfferFirst then the case's protocol, or the case's protocol alone
// (nothing for ProtocolNone). It may hold OfferToken.
func (c Case) Offer() []string {
	switch {
	case c.SPDY() && c.Scenario.SPDYOffer != nil:
		return slices.Clone(c.Scenario.SPDYOffer)
	case c.SPDY() && c.Protocol == execproto.SPDYProtocolV4:
		// What client-go's SPDY executor offers, which gets v4.
		return slices.Clone(execproto.ClientGoSPDYOffer)
	case c.SPDY():
		return []string{string(c.Protocol)}
	case c.Scenario.Offer != nil:
		return slices.Clone(c.Scenario.Offer)
	case len(c.Scenario.OfferFirst) > 0:
		return append(slices.Clone(c.Scenario.OfferFirst), string(c.Protocol))
	case c.Protocol == execproto.ProtocolNone:
		return nil
	}
	return []string{string(c.Protocol)}
}

// OfferToken, in an Offer, stands for the bearer-token subprotocol of the
// API server's token (execproto.BearerProtocol), as a browser console
// that authenticates with the user's token sends it: the harness puts the
// token in its place when it dials. It is spelt as every output shows a
// token subprotocol (execproto.RedactedBearer).
const OfferToken = execproto.RedactedBearer

// Command is the command the case runs.
func (c Case) Command() []string {
	if c.Scenario.Command != nil {
		return c.Scenario.Command
	}
	return DefaultCommand
}

// Timeout is the case's deadline.
func (c Case) Timeout() time.Duration {
	if c.Scenario.Timeout > 0 {
		return c.Scenario.Timeout
	}
	return 15 * time.Second
}

// Cases expands scenarios into cases, in table order: scenario, then
// transport (WebSocket first), then protocol, then tty mode.
func Cases(table []Scenario) []Case {
	var out []Case
	for i := range table {
		s := &table[i]
		protos := s.Protocols
		if protos == nil {
			protos = execproto.AllProtocols
		}
		if s.Offer != nil {
			p, err := execproto.Negotiate(s.Offer)
			if err != nil {
				panic(fmt.Sprintf("scenarios: %s: the API server accepts nothing of its offer: %v", s.Name, err))
			}
			protos = []execproto.Protocol{p}
		}
		spdy := s.SPDY
		if s.SPDYOffer != nil {
			p, err := execproto.NegotiateSPDY(s.SPDYOffer)
			if err != nil {
				panic(fmt.Sprintf("scenarios: %s: the kubelet accepts nothing of its SPDY offer: %v", s.Name, err))
			}
			protos, spdy = nil, []execproto.Protocol{p}
		}
		add := func(t execproto.Transport, p execproto.Protocol) {
			for _, tty := range s.TTY {
				c := Case{Scenario: s, Transport: t, Protocol: p, TTY: tty, Level: s.Level, Want: s.Want}
				if !tty && s.NoTTY != nil {
					c.Level, c.Want = s.NoTTY.Level, s.NoTTY.Want
				}
				out = append(out, c)
			}
		}
		for _, p := range protos {
			add(execproto.TransportWebSocket, p)
		}
		for _, p := range spdy {
			add(execproto.TransportSPDY, p)
		}
	}
	return out
}

// Filter selects cases.
type Filter struct {
	Run  *regexp.Regexp // matched against Case.Name (nil: all)
	Skip *regexp.Regexp // cases whose name matches are dropped (nil: none)
	// Protocols keeps the WebSocket cases of these subprotocols and
	// SPDYProtocols the SPDY cases of these versions; both nil: all.
	Protocols     []execproto.Protocol
	SPDYProtocols []execproto.Protocol
	Levels        []Level // nil: all
	// Transports keeps the cases of these transports (nil: all).
	Transports []execproto.Transport
}

// Apply keeps the cases that pass the filter.
func (f Filter) Apply(cases []Case) []Case {
	var out []Case
	for _, c := range cases {
		if f.Run != nil && !f.Run.MatchString(c.Name()) {
			continue
		}
		if f.Skip != nil && f.Skip.MatchString(c.Name()) {
			continue
		}
		if (f.Protocols != nil || f.SPDYProtocols != nil) && c.DialectName() == "" && !f.protocol(c) {
			continue
		}
		if f.Levels != nil && !containsL(f.Levels, c.Level) {
			continue
		}
		if f.Transports != nil && !slices.Contains(f.Transports, c.Transport.Normal()) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// protocol reports whether c's protocol is one the filter keeps for its
// transport.
func (f Filter) protocol(c Case) bool {
	if c.SPDY() {
		return containsP(f.SPDYProtocols, c.Protocol)
	}
	return containsP(f.Protocols, c.Protocol)
}

func containsP(ps []execproto.Protocol, p execproto.Protocol) bool {
	for _, q := range ps {
		if p == q {
			return true
		}
	}
	return false
}

func containsL(ls []Level, l Level) bool {
	for _, q := range ls {
		if l == q {
			return true
		}
	}
	return false
}
