package peers

// tunnelWhy explains the failures of a raw upgrade tunnel, from
// UpgradeAwareHandler.tryUpgrade (k8s.io/apimachinery/pkg/util/proxy,
// upgradeaware.go): after the 101 it runs io.Copy in each direction and,
// when either ends, returns, and its defers close both connections.
const tunnelWhy = `After the backend answers 101, ` + "`UpgradeAwareHandler.tryUpgrade`" + ` copies raw bytes between
the client's TCP connection and the backend's, one ` + "`io.Copy`" + ` per direction, and as soon as either copy
ends it returns and closes both connections. It never parses a WebSocket frame: it does not know the
subprotocol, so it cannot write an ` + "`exit`" + ` on stdin, and it has no close frame of its own to send. What the
API server gets when a client goes is therefore only what that client itself sent:

- **The client goes without a close frame** (TCP FIN or RST, a load balancer's idle timeout, a reset or downed
  client leg, the 200-session drop, the proxy itself stopped): the API server gets nothing more and sees its TCP
  connection end (FIN, or RST when the tunnel still had unread output from a flood). No exit, no close frame.
  A shell on pipes reads EOF on stdin and exits, so on ` + "`notty`" + ` only the close-handshake check fails;
  a shell on a tty is not ended by the end of its stdin stream (the runtime keeps the pty open) and is left
  orphaned, with its foreground program (` + "`sleep 600`" + `, ` + "`yes`" + `, ` + "`cat`" + `) when it had one.
- **The client sends a close frame**: it reaches the API server verbatim, so the backend close handshake
  happens (with the client's code: a 1001 goes on as 1001 where the suite wants 1000), but no exit comes
  before it and a tty shell survives. That is why the cases that end with a client close 1000
  (` + "`disconnect/client-close/1000`" + `, ` + "`net/client-leg/latency-then-close`" + `,
  ` + "`net/client-leg/sliced`" + `, ` + "`net/backend-leg/slow-close-reply`" + `,
  ` + "`negotiation/unknown-offered-first`" + `, which runs on a tty only) pass on pipes and fail on a tty.
  Subprotocol negotiation itself works: the offers and the backend's answer are headers the tunnel forwards
  untouched.
- **The backend leg dies** (` + "`net/backend-leg/reset`" + `, ` + "`net/backend-leg/down`" + `): the client's
  connection is closed with no close frame (the client sees 1006); a byte tunnel has none to relay.

What passes is what the API server ends itself: the user typing ` + "`exit`" + ` and the process being
killed, where the status and the close frame come from the backend and pass through the tunnel.

One of the suite's diagnoses reads more into a byte tunnel than there is: "the exit is lost behind input in flight"
on ` + "`busy/paste-in-flight`" + ` names the bugs of a proxy that does send an exit; the tunnel sends none at all, and
the input in flight is the client's own paste. The case fails anyway on the shell and ` + "`cat`" + ` left alive.

The half-open case (` + "`lb/client-leg/half-open`" + `) is INFO because no keepalive bound is declared for a
peer; the tunnel sends no WebSocket pings (it does not speak WebSocket), and in the run it kept the backend
connection open past the grace period.`

const kubectlWhy = `kubectl proxy hands every upgrade request (` + "`httpstream.IsUpgradeRequest`" + `) to apimachinery's
` + "`UpgradeAwareHandler`" + ` (` + "`NewProxyHandler`" + ` in ` + "`k8s.io/kubectl/pkg/proxy`" + `), with an
` + "`UpgradeTransport`" + ` that adds the kubeconfig's credentials to the request. So it fails exactly like the
raw handler ([apimachinery-upgradeaware](apimachinery-upgradeaware.md)), case for case.

` + tunnelWhy

const upgradeAwareWhy = `Here the handler stands where a web console's backend stands, in front of the API server. Between
the API server and the kubelet it does the same thing: it forwards whatever the client and the runtime say,
and nothing of its own.

` + tunnelWhy

// kubeRBACProxyWhy is from kube-rbac-proxy's app.Run and pkg/filters
// (v0.19.0) and httputil.ReverseProxy.handleUpgradeResponse (Go 1.26).
const kubeRBACProxyWhy = `kube-rbac-proxy's own code ends before the upgrade: ` + "`filters.WithAuthentication`" + ` checks the bearer
token with a TokenReview (and removes the ` + "`Authorization`" + ` header), ` + "`filters.WithAuthorization`" + ` asks a
SubjectAccessReview, and the request goes to ` + "`httputil.ReverseProxy`" + `. That is why, unlike the raw tunnels, it
refuses an upgrade without credentials or with wrong ones (401) before it dials the API server: the front-door
` + "`no-credentials`" + ` and ` + "`wrong-credentials`" + ` knocks pass. It does not look at ` + "`Origin`" + ` or ` + "`Host`" + `
(the cross-site, null-origin, lookalike and rebinding knocks, sent with the run's valid token, are let through);
a browser cannot put an ` + "`Authorization`" + ` header on a cross-site WebSocket, but the delegating authenticator
also reads the token from the ` + "`base64url.bearer.authorization.k8s.io.`" + ` WebSocket subprotocol, which a
page can set.

After the 101 the standard library's ` + "`handleUpgradeResponse`" + ` hijacks the client connection and runs one
` + "`io.Copy`" + ` per direction (` + "`switchProtocolCopier`" + `); when the first ends it half-closes the other side if it
can and otherwise returns, and its defers close both connections (the backend one also when the request's
context ends). Like ` + "`UpgradeAwareHandler`" + `, it never parses a WebSocket frame, so it fails the same cases
for the same reasons:

` + tunnelWhy + `

What a maintainer should change: for pods/exec, attach and port-forward (the only upgrades that start processes)
the proxy must end the session itself when the client goes, which a byte copier cannot do. Either parse the
WebSocket (and SPDY) stream after the 101 and, when the client side ends without the shell's exit, write an
` + "`exit`" + ` (or ^C ^D) on stdin and a close frame 1000 to the API server before closing, or refuse exec upgrades
(` + "`--allow-paths`" + ` without them) and document that kube-rbac-proxy must not front an exec endpoint. In the
meantime a WebSocket ping with a read deadline on both legs would at least end half-open sessions, and an
` + "`Origin`" + ` check on upgrades would stop a foreign page from opening a shell with a token it got hold of.`
