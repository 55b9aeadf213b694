package scenarios

import (
	"slices"
	"strings"
	"time"

	"github.com/execconform/execconform/execproto"
)

// clientEnds are the ways a client leaves a live shell; every one must
// leave no shell behind.
var clientEnds = []struct {
	name string
	end  End
	desc string
}{
	{"client-close/1000", End{Kind: EndClientClose, Code: 1000}, "the client closes cleanly (close frame 1000)"},
	{"client-close/1001", End{Kind: EndClientClose, Code: 1001}, "a browser tab closes (close frame 1001, going away)"},
	{"client-close/no-status", End{Kind: EndClientClose, Code: 1005}, "a page calls ws.close() with no code (a close frame without a status: the server sees 1005)"},
	{"client-tcp-fin", End{Kind: EndClientAbort}, "the client's TCP connection closes without a close frame"},
	{"client-tcp-rst", End{Kind: EndClientReset}, "the client's TCP connection is reset"},
}

// cleanBackend is what a correct proxy leaves on the backend leg after a
// client-side end: a close handshake started with 1000.
var cleanBackend = Outcome{LiveProcesses: 0, BackendCloseHandshake: true, BackendCloseCode: 1000}

// Disconnects is the first table: every way a client or the backend ends
// a session, on a live interactive shell.
func Disconnects() []Scenario {
	var out []Scenario
	for _, ce := range clientEnds {
		out = append(out, Scenario{
			Name:        "disconnect/" + ce.name,
			Level:       MUST,
			Description: ce.desc + " while the shell is idle at its prompt: the proxy must end the shell (exit on stdin) and close the backend with a close handshake.",
			TTY:         []bool{true, false},
			Script:      slices.Clone(Ready),
			End:         ce.end,
			Want:        cleanBackend,
		})
	}
	out = append(out,
		Scenario{
			Name:        "shell/user-types-exit",
			Level:       MUST,
			Description: "The user types exit: the shell ends, its status is relayed, the client gets a clean close and nothing is left.",
			TTY:         []bool{true, false},
			Script:      slices.Clone(Ready),
			End:         End{Kind: EndTypeExit},
			Want:        Outcome{LiveProcesses: 0, ClientCloseCode: 1000, ExitCode: Int(0)},
		},
		Scenario{
			Name:        "backend/process-killed",
			Level:       MUST,
			Description: "The process is killed in the container while the client is connected: the backend's status and close (1000) must reach the client.",
			TTY:         []bool{true, false},
			Script:      slices.Clone(Ready),
			End:         End{Kind: EndBackendKill},
			Want:        Outcome{LiveProcesses: 0, ClientCloseCode: 1000, ExitCode: Int(137)},
		},
		Scenario{
			Name:        "busy/foreground-sleep",
			Level:       SHOULD,
			Description: "A foreground program that ignores stdin (sleep 600) runs when the client drops: exit alone is swallowed; the proxy should interrupt it (Ctrl-C) first.",
			TTY:         []bool{true, false},
			Script:      append(slices.Clone(Ready), Type("sleep 600\r"), WaitProcess("sleep")),
			End:         End{Kind: EndClientAbort},
			Want:        cleanBackend,
			NoTTY: &Override{
				Level: INFO,
				Want:  Outcome{LiveProcesses: 2, BackendCloseHandshake: true, BackendCloseCode: 1000},
				Why:   "without a tty there is no Ctrl-C: the shell waits for sleep, which does not read stdin, so no proxy can end it",
			},
		},
		Scenario{
			Name:  "busy/ignores-interrupt",
			Level: SHOULD,
			Description: "A foreground program that ignores Ctrl-C and never reads stdin (trap '' INT; sleep 600) holds the shell when the client drops: " +
				"nothing typed can end it, so the shell lives on (reported, not judged), but the proxy must let go of the backend connection within 15 s " +
				"(a translating terminal must cancel its executor's context; one that never does holds a connection and goroutines per drop, for ever).",
			TTY:       []bool{true},
			Protocols: []execproto.Protocol{execproto.ProtocolV5},
			SPDY:      []execproto.Protocol{execproto.SPDYProtocolV4},
			Script:    append(slices.Clone(Ready), Type("trap '' INT; sleep 600\r"), WaitProcess("sleep")),
			End:       End{Kind: EndClientAbort},
			Want:      Outcome{AnyLive: true, ReleaseWithin: 15 * time.Second},
			Timeout:   40 * time.Second,
		},
		Scenario{
			Name:        "shell/half-typed-line",
			Level:       SHOULD,
			Description: "The user has typed part of a command (no Enter) when the client drops: an exit appended to it (\"echexit\") is not a command; the proxy should clear the line (Ctrl-C or Ctrl-U) first.",
			TTY:         []bool{true},
			Script:      append(slices.Clone(Ready), Type("ech"), Expect("ech")), // its echo: the shell has the half line
			End:         End{Kind: EndClientAbort},
			Want:        cleanBackend,
		},
		Scenario{
			Name:        "shell/bash",
			Level:       MUST,
			Description: "The same idle-prompt disconnect with bash, whose readline reads key by key in its own terminal mode: the exit sequence must work there too.",
			TTY:         []bool{true, false},
			Command:     []string{"bash", "-i"},
			Script:      slices.Clone(Ready),
			End:         End{Kind: EndClientAbort},
			Want:        cleanBackend,
		},
		Scenario{
			Name:        "busy/stdout-flood",
			Level:       SHOULD,
			Description: "The shell floods stdout (yes) when the client drops: the exit must not be lost behind buffered output.",
			TTY:         []bool{true},
			Script:      append(slices.Clone(Ready), Type("yes\r"), Expect("y\r\ny\r\ny")),
			End:         End{Kind: EndClientAbort},
			Want:        cleanBackend,
		},
		Scenario{
			Name:  "busy/paste-in-flight",
			Level: MUST,
			Description: "The client drops while a large paste (1 MiB in 64 KiB messages, into cat after a half-second stall) is still " +
				"being written to the backend: the exit must follow what is in flight on the one stdin stream, and without " +
				"the input still queued (nobody is there to want it). A second writer (the exit written from the cleanup " +
				"path while the copy loop is in the middle of a message) corrupts the stream, or crashes a " +
				"gorilla/websocket proxy with \"concurrent write to websocket connection\".",
			TTY:    []bool{true},
			Script: append(slices.Clone(Ready), Type("stty -echo && sleep 0.5 && cat >/dev/null\r"), WaitProcess("sleep"), Paste(PasteLine, 1<<20, 64<<10)),
			End:    End{Kind: EndClientAbort},
			Want:   cleanBackend,
		},
	)
	return out
}

// PasteLine is what Paste actions send: a 2000-byte line of text ended by
// Enter (long lines, so that cat in canonical mode reads it quickly: one
// read per line).
var PasteLine = strings.Repeat("pasted text that cat reads and throws away. ", 46)[:1999] + "\r"

// Shutdown is what a proxy does with open sessions when it is stopped.
func Shutdown() []Scenario {
	return []Scenario{{
		Name:        "proxy/shutdown-20-sessions",
		Level:       SHOULD,
		Description: "The proxy is stopped (SIGTERM) with 20 sessions open: it should end every shell (exit, close handshake) before it goes.",
		TTY:         []bool{true},
		Sessions:    20,
		Script:      slices.Clone(Ready),
		End:         End{Kind: EndTargetStop},
		Want:        cleanBackend,
		Timeout:     30 * time.Second,
	}}
}

// ownEndings are the real clients' own endings, as measured (clients/):
// what each puts on the wire, and so what the proxy must handle.
var ownEndings = []struct {
	as, desc string
	want     Outcome
	level    Level
	tty      []bool   // nil: both
	then     []Action // after Ready, before the ending
}{
	{OwnSIGKILL, "The client's process is killed (SIGKILL): its kernel closes the socket with a FIN, no close frame.", cleanBackend, MUST, nil, nil},
	{OwnSIGTERM, "The client's process gets SIGTERM (a user's kill, a container stopping): kubectl and client-go programs end at once, with a FIN and no close frame.", cleanBackend, MUST, nil, nil},
	{OwnSIGINT, "kubectl gets SIGINT as a signal (not the Ctrl-C byte, which a tty session sends to the shell): it ends with a FIN.", cleanBackend, MUST, nil, nil},
	{OwnSIGHUP, "kubectl gets SIGHUP (the user's terminal emulator or ssh session went away): it ends with a FIN.", cleanBackend, MUST, nil, nil},
	{OwnTerminalClosed, "The terminal kubectl runs on is closed (the pty's master side): kubectl's stdin ends and it gets SIGHUP.", cleanBackend, MUST, []bool{true}, nil},
	{OwnContextCancel, "A client-go program cancels the executor's context (a user's request ended): the executor drops TCP, no close frame.", cleanBackend, MUST, nil, nil},
	{OwnTabClose, "The browser tab running the web console is closed: Chromium sends close 1001.", cleanBackend, MUST, nil, nil},
	{OwnNavigate, "The page navigates away (no back/forward cache): Chromium sends close 1001.", cleanBackend, MUST, nil, nil},
	{OwnBrowserKill, "The browser's main process is killed (SIGKILL): its network process still sends close 1001.", cleanBackend, MUST, nil, nil},
	{OwnBrowserTree, "Every process of the browser is killed at once: the kernel's FIN, no close frame.", cleanBackend, MUST, nil, nil},
	{OwnOffline, "The browser goes offline (DevTools network emulation) while the shell has output coming (sleep 0.3; echo tick): the socket stays open, no close frame, no FIN. " +
		"Measured: an idle offline tab still answers pings (its network service does), so no proxy can tell it from a live one; once a data frame from the server is held behind the emulation, " +
		"pongs stop and only the proxy's keepalive can find it.", Outcome{BackendCloseHandshake: true, BackendCloseCode: 1000, KeepaliveBound: true}, SHOULD, nil, []Action{Type("sleep 0.3; echo tick\r")}},
}

// ClientEndings are the rows of the real clients' own endings
// (EndClientOwn): each runs only on the client that has it
// (ClientCases), in every version that client speaks.
func ClientEndings() []Scenario {
	var out []Scenario
	for _, e := range ownEndings {
		tty := e.tty
		if tty == nil {
			tty = []bool{true, false}
		}
		out = append(out, Scenario{
			Name:        "client-own/" + e.as,
			Level:       e.level,
			Description: e.desc + " The proxy must end the shell and close the backend cleanly.",
			TTY:         tty,
			Script:      append(slices.Clone(Ready), e.then...),
			End:         End{Kind: EndClientOwn, As: e.as},
			Want:        e.want,
		})
	}
	return out
}

// ForClient is the table a client runs: All, and for a real client its
// own endings too (ClientCases keeps what it can express).
func ForClient(c Client) []Scenario {
	out := All()
	for _, s := range ClientEndings() {
		if slices.Contains(Specs[c].Named, s.End.As) {
			out = append(out, s)
		}
	}
	return out
}

// All is every scenario of the suite, in report order.
func All() []Scenario {
	return SPDYAxis(slices.Concat(Disconnects(), Shutdown(), Faults(), HalfClose(), Negotiation(), SPDYNegotiation(), FrontDoor()))
}
