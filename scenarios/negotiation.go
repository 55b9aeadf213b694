package scenarios

import (
	"fmt"
	"slices"
	"strings"

	"github.com/execconform/execconform/execproto"
)

// realOffers are subprotocol offers as real clients send them. A proxy
// that rewrites, reorders or truncates one makes the API server pick a
// protocol the client did not prefer, and then its exit is framed for a
// protocol the client does not speak.
var realOffers = []struct {
	name, who string
	offer     []string
}{
	{"kubectl-websocket", "kubectl and client-go's WebSocket executor (Kubernetes 1.30 and later)",
		[]string{"v5.channel.k8s.io"}},
	{"v5-then-v4", "client-go's WebSocket executor with its v4 fallback",
		[]string{"v5.channel.k8s.io", "v4.channel.k8s.io"}},
	{"v4-then-v5", "A client that prefers v4 but knows v5",
		[]string{"v4.channel.k8s.io", "v5.channel.k8s.io"}},
	{"spdy-version-list", "A client that offers the SPDY executor's version list as WebSocket subprotocols",
		[]string{"v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"}},
	{"headlamp", "Headlamp (no v5; base64.binary.k8s.io is a name no server knows)",
		[]string{"base64.binary.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"}},
	{"browser-base64", "A browser console",
		[]string{"base64.channel.k8s.io", "channel.k8s.io"}},
	{"v1-then-base64", "A client that prefers binary framing (the browser's two names the other way round)",
		[]string{"channel.k8s.io", "base64.channel.k8s.io"}},
	{"browser-with-token", "A browser console that authenticates with the user's token as a subprotocol (it cannot set headers)",
		[]string{OfferToken, "base64.channel.k8s.io", "channel.k8s.io"}},
	{"console-extras", "A web console with entries of its own (a session marker, an impersonation-style name) before the protocols",
		[]string{"x-console-session.v1", "base64url.impersonate.example.com.YWRtaW4", "v4.base64.channel.k8s.io", "base64.channel.k8s.io"}},
}

// Negotiation checks that the proxy forwards the client's whole offer, in
// order, and answers with the API server's choice: an unknown name offered
// first, for every protocol; and the offers of real clients, each in the
// one protocol the API server picks for it. The offers run with a tty
// only: the choice does not depend on the mode, and only a tty shell
// outlives an exit framed for the wrong protocol (a shell on pipes gets
// EOF when the backend connection ends).
func Negotiation() []Scenario {
	out := []Scenario{{
		Name:  "negotiation/unknown-offered-first",
		Level: MUST,
		Description: "The client offers a subprotocol no server knows before the real one (as clients do that " +
			"offer a newer version first): the proxy must forward every offer in order and answer with the backend's choice.",
		Protocols:  slices.DeleteFunc(slices.Clone(execproto.AllProtocols), func(p execproto.Protocol) bool { return p == execproto.ProtocolNone }),
		TTY:        []bool{true},
		OfferFirst: []string{"v99.channel.k8s.io"},
		Script:     slices.Clone(Ready),
		End:        End{Kind: EndClientClose, Code: 1000},
		Want:       cleanBackend,
	}}
	for _, o := range realOffers {
		p, err := execproto.Negotiate(o.offer)
		if err != nil {
			panic(fmt.Sprintf("scenarios: negotiation/offer/%s: %v", o.name, err))
		}
		out = append(out, Scenario{
			Name:  "negotiation/offer/" + o.name,
			Level: MUST,
			Description: fmt.Sprintf("%s offers [%s]: the API server picks %s (%s). The proxy must forward the whole "+
				"offer in order and answer that choice; then the client drops (TCP FIN) and the exit must be framed for %s.",
				o.who, strings.Join(o.offer, ", "), p, whyPicked(o.offer, p), p),
			TTY:    []bool{true},
			Offer:  o.offer,
			Script: slices.Clone(Ready),
			End:    End{Kind: EndClientAbort},
			Want:   cleanBackend,
		})
	}
	return out
}

// whyPicked says why the API server picks p for offer.
func whyPicked(offer []string, p execproto.Protocol) string {
	if p == execproto.ProtocolV5 {
		if offer[0] == string(p) {
			return "v5 first, and v5 anywhere makes the API server's stream translator answer"
		}
		return "v5 is in the offer, so the API server's stream translator answers, whatever v5's position"
	}
	return "no v5, so the kubelet answers, with the first name it supports in the client's order"
}
