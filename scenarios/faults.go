package scenarios

import (
	"slices"
	"time"

	"github.com/execconform/execconform/execproto"
)

// lbIdle is a load balancer's idle timeout, shorter than the keepalive
// interval of the suite's reference target, so it fires before a ping.
// Real ones are 30 s to 5 min; only the order of events matters here.
const lbIdleMillis = 200

func idleTimeout(leg Leg, reset bool) Fault {
	return Fault{Leg: leg, Toxic: "idle_timeout", Attributes: map[string]any{"timeout": lbIdleMillis, "reset": reset}, At: AfterScript}
}

// Faults is the network catalogue: what load balancers, cut links and
// resets do to a session on either leg.
func Faults() []Scenario {
	both := []bool{true, false}
	ready := func() []Action { return slices.Clone(Ready) }
	return []Scenario{
		{
			Name: "lb/client-leg/idle-timeout-fin", Level: MUST, TTY: both,
			Description: "A load balancer on the client leg closes the idle connection (FIN to both sides, as AWS ALB, nginx proxy_read_timeout and HAProxy timeout tunnel do).",
			Script:      ready(), Faults: []Fault{idleTimeout(ClientLeg, false)},
			End: End{Kind: EndFault}, Want: cleanBackend,
		},
		{
			Name: "lb/client-leg/idle-timeout-rst", Level: MUST, TTY: both,
			Description: "A load balancer on the client leg resets the idle connection (RST to both sides).",
			Script:      ready(), Faults: []Fault{idleTimeout(ClientLeg, true)},
			End: End{Kind: EndFault}, Want: cleanBackend,
		},
		{
			Name: "net/client-leg/reset", Level: MUST, TTY: both,
			Description: "The client leg is reset in the middle of the session (reset_peer).",
			Script:      ready(), Faults: []Fault{{Leg: ClientLeg, Toxic: "reset_peer", Attributes: map[string]any{"timeout": 0}, At: AfterScript}},
			Nudge: "\r", End: End{Kind: EndFault}, Want: cleanBackend,
		},
		{
			Name: "net/client-leg/link-down", Level: MUST, TTY: both,
			Description: "The client leg goes down: every connection on it is cut.",
			Script:      ready(), Faults: []Fault{{Leg: ClientLeg, Toxic: ToxicDown, At: AfterScript}},
			End: End{Kind: EndFault}, Want: cleanBackend,
		},
		{
			Name: "net/client-leg/latency-then-close", Level: MUST, TTY: both,
			Description: "200 ms of latency each way on the client leg, then a clean close (1000).",
			Faults:      []Fault{{Leg: ClientLeg, Toxic: "latency", Attributes: map[string]any{"latency": 200}, At: AtStart}},
			Script:      ready(), End: End{Kind: EndClientClose, Code: 1000}, Want: cleanBackend,
			Timeout: 30 * time.Second,
		},
		{
			Name: "net/client-leg/sliced", Level: MUST, TTY: both,
			Description: "Frames cut into 1 to 7 byte TCP segments on the client leg while typing and while closing (1000).",
			Faults:      []Fault{{Leg: ClientLeg, Toxic: "slicer", Attributes: map[string]any{"average_size": 4, "size_variation": 3, "delay": 0}, At: AtStart}},
			Script:      ready(), End: End{Kind: EndClientClose, Code: 1000}, Want: cleanBackend,
		},
		{
			Name: "net/backend-leg/sliced", Level: MUST, TTY: both,
			Description: "Frames cut into 1 to 7 byte TCP segments on the backend leg, both ways; the client drops (FIN).",
			Faults:      []Fault{{Leg: BackendLeg, Toxic: "slicer", Attributes: map[string]any{"average_size": 4, "size_variation": 3, "delay": 0}, At: AtStart}},
			Script:      ready(), End: End{Kind: EndClientAbort}, Want: cleanBackend,
		},
		{
			Name: "net/backend-leg/reset", Level: MUST, TTY: both,
			Description: "The backend leg is reset: the client must be told (a close frame), nothing may hang. The shell's fate is the runtime's: without its connection no proxy can reach it.",
			Script:      ready(), Faults: []Fault{{Leg: BackendLeg, Toxic: "reset_peer", Attributes: map[string]any{"timeout": 0}, At: AfterScript}},
			Nudge: "\r", End: End{Kind: EndFault}, Want: Outcome{ClientClosed: true, AnyLive: true},
		},
		{
			Name: "net/backend-leg/down", Level: MUST, TTY: both,
			Description: "The API server becomes unreachable (backend leg down): the client must be told, nothing may hang.",
			Script:      ready(), Faults: []Fault{{Leg: BackendLeg, Toxic: ToxicDown, At: AfterScript}},
			End: End{Kind: EndFault}, Want: Outcome{ClientClosed: true, AnyLive: true},
		},
		{
			Name: "net/backend-leg/slow-close-reply", Level: MUST, TTY: both,
			Description: "The backend's replies are delayed 3 s (longer than a close bound of 2 s) when the client closes: the proxy must still deliver the exit, answer the client, and not hang past its own close bound.",
			Script:      ready(),
			Faults:      []Fault{{Leg: BackendLeg, Toxic: "latency", Stream: "downstream", Attributes: map[string]any{"latency": 3000}, At: AtEnding}},
			End:         End{Kind: EndClientClose, Code: 1000}, Want: cleanBackend,
			Timeout: 30 * time.Second,
		},
		{
			Name: "load/200-sessions-dropped", Level: MUST, TTY: []bool{true},
			Description: "200 sessions at once through one proxy, all cut at the same moment (the client leg goes down): not one shell may be left.",
			Sessions:    200, Script: ready(),
			Faults: []Fault{{Leg: ClientLeg, Toxic: ToxicDown, At: AfterScript}},
			End:    End{Kind: EndFault}, Want: cleanBackend, Timeout: 60 * time.Second,
		},
		{
			Name: "lb/client-leg/half-open", Level: SHOULD, TTY: both,
			Description: "The client leg goes silent both ways with no FIN or RST (Azure LB's silent drop, a pulled cable): only the proxy's keepalive can find it, within the bound the target declares.",
			Script:      ready(), Faults: []Fault{{Leg: ClientLeg, Toxic: "half_open", At: AfterScript}},
			End: End{Kind: EndFault}, Want: Outcome{BackendCloseHandshake: true, BackendCloseCode: 1000, KeepaliveBound: true},
		},
		{
			Name: "lb/client-leg/bandwidth-flood", Level: SHOULD, TTY: []bool{true},
			Description: "Stdout floods through a 64 KB/s client leg when the client drops: the exit must not wait behind the backlog.",
			Faults:      []Fault{{Leg: ClientLeg, Toxic: "bandwidth", Stream: "downstream", Attributes: map[string]any{"rate": 64}, At: AtStart}},
			Script:      append(ready(), Type("yes\r"), Expect("y\r\ny\r\ny")),
			End:         End{Kind: EndClientAbort}, Want: cleanBackend,
		},
		{
			Name: "lb/client-leg/idle-timeout-busy", Level: SHOULD, TTY: []bool{true},
			Description: "The load balancer times out while a foreground program (sleep 600) runs.",
			Script:      append(ready(), Type("sleep 600\r"), WaitProcess("sleep")),
			Faults:      []Fault{idleTimeout(ClientLeg, false)},
			End:         End{Kind: EndFault}, Want: cleanBackend,
		},
		{
			Name: "proxy/killed", Level: INFO, TTY: []bool{true},
			Protocols:   []execproto.Protocol{execproto.ProtocolBase64, execproto.ProtocolV5},
			Description: "The proxy vanishes with sessions open (SIGKILL, a crashed node: both legs cut at once). No proxy can fix this alone: the shells' survival is the runtime's doing. Reported, not judged.",
			Sessions:    5, Script: ready(),
			Faults: []Fault{{Leg: ClientLeg, Toxic: ToxicDown, At: AfterScript}, {Leg: BackendLeg, Toxic: ToxicDown, At: AfterScript}},
			End:    End{Kind: EndFault}, Want: Outcome{AnyLive: true},
		},
	}
}
