package scenarios

import (
	"fmt"
	"slices"
	"strings"

	"github.com/execconform/execconform/execproto"
)

// The SPDY versions rows run in: v4 is what client-go's SPDY executor (and
// every terminal built on it, kubectl's SPDY path included) gets from the
// kubelet; v2 (the rows whose outcome is a status) is the oldest version
// a current client-go offers, whose error stream carries only a
// failure's text.
var (
	spdyClientGo = []execproto.Protocol{execproto.SPDYProtocolV4}
	spdyStatus   = []execproto.Protocol{execproto.SPDYProtocolV4, execproto.SPDYProtocolV2}
)

// spdyRows are the rows that also run over SPDY, with their versions.
// Every way a connection dies is TCP's or the client's doing, so the
// endings, the busy shells, the shutdown and the network faults all
// apply as they stand. What does not:
//   - disconnect/client-close/1001: SPDY has one clean ending (its streams
//     closed, GOAWAY), client-close/1000 is it;
//   - lb/client-leg/half-open: only a keepalive finds it, and over SPDY a
//     proxy's keepalive is a PING whose answer client-go never checks;
//   - negotiation/* and front-door/*: WebSocket offers and upgrades (SPDY
//     negotiation has rows of its own, SPDYNegotiation).
var spdyRows = map[string][]execproto.Protocol{
	"disconnect/client-close/1000":      spdyClientGo,
	"disconnect/client-tcp-fin":         spdyClientGo,
	"disconnect/client-tcp-rst":         spdyClientGo,
	"shell/user-types-exit":             spdyStatus,
	"backend/process-killed":            spdyStatus,
	"busy/foreground-sleep":             spdyClientGo,
	"shell/half-typed-line":             spdyClientGo,
	"shell/bash":                        spdyClientGo,
	"busy/stdout-flood":                 spdyClientGo,
	"busy/paste-in-flight":              spdyClientGo,
	"proxy/shutdown-20-sessions":        spdyClientGo,
	"lb/client-leg/idle-timeout-fin":    spdyClientGo,
	"lb/client-leg/idle-timeout-rst":    spdyClientGo,
	"net/client-leg/reset":              spdyClientGo,
	"net/client-leg/link-down":          spdyClientGo,
	"net/client-leg/latency-then-close": spdyClientGo,
	"net/client-leg/sliced":             spdyClientGo,
	"net/backend-leg/sliced":            spdyClientGo,
	"net/backend-leg/reset":             spdyClientGo,
	"net/backend-leg/down":              spdyClientGo,
	"net/backend-leg/slow-close-reply":  spdyClientGo,
	"load/200-sessions-dropped":         spdyClientGo,
	"lb/client-leg/bandwidth-flood":     spdyClientGo,
	"lb/client-leg/idle-timeout-busy":   spdyClientGo,
	"proxy/killed":                      spdyClientGo,
}

// SPDYAxis gives the rows of spdyRows their SPDY versions, so that each
// also runs over SPDY. It panics on a name that is in no row, so that a
// renamed row cannot drop out of the axis unseen.
func SPDYAxis(table []Scenario) []Scenario {
	seen := map[string]bool{}
	for i := range table {
		if v, ok := spdyRows[table[i].Name]; ok {
			table[i].SPDY = slices.Clone(v)
			seen[table[i].Name] = true
		}
	}
	for name := range spdyRows {
		if !seen[name] {
			panic(fmt.Sprintf("scenarios: SPDY axis: no row %q", name))
		}
	}
	return table
}

// spdyOffers are SPDY version offers as real clients send them.
var spdyOffers = []struct {
	name, who string
	offer     []string
}{
	{"client-go", "client-go's SPDY executor (kubectl's SPDY path, Kubernetes Dashboard, Portainer, KubeSphere, Argo CD's fallback)",
		execproto.ClientGoSPDYOffer},
	{"kubectl-1-29", "kubectl and client-go before v5 (1.29 and older)",
		[]string{"v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"}},
	{"one-header-line", "A client that sends its versions as one comma-separated header line",
		[]string{"v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io"}},
	{"v2-first", "An old client that prefers v2",
		[]string{"v2.channel.k8s.io", "v4.channel.k8s.io"}},
}

// SPDYNegotiation checks that a proxy forwards a SPDY client's whole
// version offer, in order, and answers the kubelet's choice: the version
// decides whether the error stream carries a JSON status (v4) and whether
// there is a resize stream (v3 and later).
func SPDYNegotiation() []Scenario {
	var out []Scenario
	for _, o := range spdyOffers {
		p, err := execproto.NegotiateSPDY(o.offer)
		if err != nil {
			panic(fmt.Sprintf("scenarios: negotiation/spdy-offer/%s: %v", o.name, err))
		}
		out = append(out, Scenario{
			Name:  "negotiation/spdy-offer/" + o.name,
			Level: MUST,
			Description: fmt.Sprintf("%s offers X-Stream-Protocol-Version [%s]: the kubelet picks %s (the first it accepts, in the client's order). "+
				"The proxy must forward the whole offer in order and answer that choice; then the user types exit and the status must be relayed.",
				o.who, strings.Join(o.offer, ", "), p),
			TTY:       []bool{true},
			SPDYOffer: o.offer,
			Script:    slices.Clone(Ready),
			End:       End{Kind: EndTypeExit},
			Want:      Outcome{LiveProcesses: 0, ClientClosed: true, ExitCode: Int(0)},
		})
	}
	return out
}

// HalfClose are the rows about a half-closed stdin, which SPDY has for
// every version and WebSocket only on v5 (its CLOSE signal).
func HalfClose() []Scenario {
	return []Scenario{{
		Name:  "stdin/half-closed-then-drop",
		Level: MUST,
		Description: "The client half-closes its stdin stream (as client-go does when its stdin reader returns EOF: `echo ls | kubectl exec -i`, " +
			"a terminal closed under kubectl), keeps the session open, then drops (TCP FIN). Measured on a real cluster (e2e TestControlStdinClose, " +
			"TestControlNoProxySPDY): a tty shell survives the half-close, input written after it never reaches the shell, and the drop leaves " +
			"it an orphan. So a proxy that passed a tty's half-close on can no longer write the exit: it must hold it back (or turn it into the " +
			"terminal's end of input) so that the drop can still end the shell. On pipes the shell ends by itself with its stdin. " +
			"Over WebSocket v5 the CLOSE signal is the same half-close.",
		TTY:       []bool{true, false},
		Protocols: []execproto.Protocol{execproto.ProtocolV5},
		Script:    append(slices.Clone(Ready), CloseStdin()),
		End:       End{Kind: EndClientAbort},
		Want:      Outcome{LiveProcesses: 0, BackendCloseHandshake: true},
		NoTTY: &Override{
			Level: MUST,
			Want:  Outcome{LiveProcesses: 0},
			Why: "on pipes the shell ends with its stdin, so the API server ends the session before the drop " +
				"(a real one without a close frame, seen through kubectl on make e2e-local): only the shell's end is judged",
		},
		SPDY: spdyClientGo,
	}}
}
