package scenarios

import (
	"slices"

	"github.com/execconform/execconform/execproto"
)

// Knock is a request a proxy must refuse, made before a case's own
// session: who may use the proxy's credentials to the API server. A web
// console's backend holds a token that opens a root shell in any pod it
// may exec into; it lends it to whoever gets through its front door.
type Knock string

// The knocks. "The run's credentials" are the client's --header and
// --cookie values (and, for the in-process reference proxy, its own
// cookie); the Origin is --origin's, or none.
const (
	// KnockNoCredentials: an exec upgrade without the run's credentials.
	KnockNoCredentials Knock = "no-credentials"
	// KnockWrongCredentials: the same headers and cookies with wrong values.
	KnockWrongCredentials Knock = "wrong-credentials"
	// KnockCrossSite: the run's credentials from a page on another site
	// (Origin https://evil.example): cross-site WebSocket hijacking, where
	// the browser sends the user's cookie with a foreign page's upgrade.
	KnockCrossSite Knock = "cross-site-upgrade"
	// KnockNullOrigin: the run's credentials with Origin "null" (a
	// sandboxed iframe, a file: page, a redirect).
	KnockNullOrigin Knock = "null-origin"
	// KnockLookalikeOrigin: the run's credentials from an origin whose
	// host name begins with the allowed one's (scheme://NAME.evil.example:PORT).
	KnockLookalikeOrigin Knock = "lookalike-origin"
	// KnockRebinding: DNS rebinding: a page on evil.example:PORT whose name
	// now resolves to the proxy. The browser sends Host and Origin
	// evil.example:PORT, which agree, and no credentials (they are kept
	// per host).
	KnockRebinding Knock = "rebinding"
	// KnockForeignHost: the run's credentials, no Origin, and a Host the
	// proxy does not serve.
	KnockForeignHost Knock = "foreign-host"
	// KnockAPIRequest: a plain GET of the case's pod, without the run's
	// credentials: a proxy that relays it with its own token hands its
	// API access to anyone.
	KnockAPIRequest Knock = "api-without-credentials"
)

// EvilHost is the host name of the knocks' foreign pages.
const EvilHost = "evil.example"

// knocks are the front-door scenarios, in report order.
var knocks = []struct {
	knock Knock
	level Level
	desc  string
}{
	{KnockNoCredentials, SHOULD, "An exec upgrade without the run's credentials (--header, --cookie): the proxy should refuse it (401 or 403) " +
		"before it dials the API server. A console backend lends its own token to every request it lets through; a proxy that something " +
		"in front of it authenticates fails this case when it is tested directly."},
	{KnockWrongCredentials, SHOULD, "An exec upgrade with the run's headers and cookies, each with a wrong value: the proxy should refuse it, " +
		"as it checks the credential's value, not only that one is there."},
	{KnockCrossSite, MUST, "An exec upgrade with the run's credentials and Origin https://" + EvilHost + ": a page on another site that the " +
		"user visits, whose upgrade the browser sends with the user's cookie (cross-site WebSocket hijacking). The proxy must refuse it (403)."},
	{KnockNullOrigin, MUST, "An exec upgrade with the run's credentials and Origin null (a sandboxed iframe, a file: page): the proxy must refuse it."},
	{KnockLookalikeOrigin, MUST, "An exec upgrade with the run's credentials from an origin whose host name begins with the allowed one's " +
		"(scheme://NAME." + EvilHost + ":PORT): the proxy must compare the whole origin, not a prefix."},
	{KnockRebinding, MUST, "DNS rebinding: a page on " + EvilHost + ":PORT whose name now resolves to the proxy opens an exec upgrade; the " +
		"browser sends Host and Origin " + EvilHost + ":PORT, which agree, and no credentials. The proxy must refuse a Host it does not serve " +
		"(or the missing credentials). kubectl proxy's --accept-hosts refuses it, but --disable-filter, which a shell through " +
		"kubectl proxy needs, turns that check off too."},
	{KnockForeignHost, SHOULD, "An exec upgrade with the run's credentials, no Origin, and Host " + EvilHost + ":PORT: the proxy should " +
		"serve only the hosts it is configured for."},
	{KnockAPIRequest, SHOULD, "A plain GET of the case's pod (/api/v1/namespaces/NS/pods/NAME) without the run's credentials: the proxy " +
		"should not relay it to the API server with its own token (it should serve what a terminal needs, behind its credentials)."},
}

// FrontDoor checks that the proxy is not an open door to the API server:
// each case makes one knock, which must be refused without an exec on the
// backend, then opens a session with the run's credentials as a control
// (a proxy that refuses everything proves nothing), which must be
// accepted and end cleanly. One protocol and mode: the doors do not
// depend on them.
func FrontDoor() []Scenario {
	var out []Scenario
	for _, k := range knocks {
		out = append(out, Scenario{
			Name:        "front-door/" + string(k.knock),
			Level:       k.level,
			Description: k.desc + " The control session after it, with the run's credentials, must be served and end cleanly.",
			Protocols:   []execproto.Protocol{execproto.ProtocolV5},
			TTY:         []bool{true},
			Knock:       k.knock,
			Script:      slices.Clone(Ready),
			End:         End{Kind: EndClientClose, Code: 1000},
			Want:        cleanBackend,
		})
	}
	return out
}
