// Package peers runs real third-party exec proxies as targets of the
// conformance suite: software users already run in front of pods/exec,
// built from its own Go packages (no code copied), each with the
// configuration its users give it. They are not expected to pass: the
// point is to show what the suite finds in them.
package peers

import (
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/execconform/execconform/harness"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/client-go/rest"
	kubectlproxy "k8s.io/kubectl/pkg/proxy"
)

// Peer is a third-party proxy run as a target.
type Peer struct {
	// Name names the peer's files (docs/peers/<Name>.md and .json).
	Name string
	// Title is a one-line description.
	Title string
	// Module is the Go module the peer's code comes from; its version is
	// read from the build information of the program that runs it.
	Module string
	// Package is the package the target uses.
	Package string
	// About says what the peer is and who runs it.
	About string
	// Config says, item by item, how the target configures the peer.
	Config []string
	// Why explains, from the peer's code, why it fails what it fails.
	Why string
	// ClientHeader is what the suite's client sends the peer besides the
	// exec request (its credentials for the peer); nil: nothing.
	ClientHeader http.Header
	// Target starts the peer in front of a case's backend.
	Target harness.Target
}

// All are the peers, in report order.
func All() []Peer {
	return []Peer{KubectlProxy(), UpgradeAware(), KubeRBACProxy()}
}

// ByName finds a peer of All, or the kubectl proxy with its default filter.
func ByName(name string) (Peer, bool) {
	for _, p := range append(All(), KubectlProxyDefaultFilter()) {
		if p.Name == name {
			return p, true
		}
	}
	return Peer{}, false
}

const (
	kubectlModule      = "k8s.io/kubectl"
	apimachineryModule = "k8s.io/apimachinery"
)

// KubectlProxy is `kubectl proxy --disable-filter`: the way users reach
// exec through kubectl proxy (the default filter refuses exec and attach).
func KubectlProxy() Peer {
	return Peer{
		Name:    "kubectl-proxy",
		Title:   "kubectl proxy --disable-filter",
		Module:  kubectlModule,
		Package: "k8s.io/kubectl/pkg/proxy",
		About: "What `kubectl proxy` runs: `proxy.NewServer` serves the API server's API on a local port, " +
			"authenticating with the kubeconfig's credentials. Web consoles and scripts use it to reach a cluster " +
			"without handling credentials themselves. Its request filter refuses exec and attach by default " +
			"(`--reject-paths` `^/api/.*/pods/.*/exec,^/api/.*/pods/.*/attach`), so a user who wants a shell through it " +
			"runs `kubectl proxy --disable-filter`, the configuration tested here. Upgrade requests " +
			"(WebSocket, SPDY) go through apimachinery's `UpgradeAwareHandler` (see the apimachinery peer): the " +
			"proxy dials the API server, writes the request with the credentials added, and once the API " +
			"server answers 101 copies bytes both ways between the two TCP connections.",
		Config: []string{
			"`proxy.NewServer(\"\", \"/\", \"/static/\", nil, cfg, 0, false)`: kubectl proxy's defaults (`--api-prefix=/`, no `--www`, `--keepalive=0`, no `--append-server-path`) with the filter disabled (`--disable-filter`: filter `nil`)",
			"`cfg` is the `rest.Config` a kubeconfig would give: `Host` the backend URL, `BearerToken` the backend token, `TLSClientConfig.CAFile` the backend's CA file",
			"served with `(*proxy.Server).ServeOnListener` on a 127.0.0.1 listener, one server per case",
			"stopping it (the SIGTERM case) does what the process's exit does, since kubectl proxy does not catch SIGTERM: the listener and every accepted connection, hijacked tunnels included, are closed",
		},
		Why:    kubectlWhy,
		Target: kubectlTarget(false),
	}
}

// KubectlProxyDefaultFilter is `kubectl proxy` as it starts without flags:
// its request filter refuses exec (HTTP 403).
func KubectlProxyDefaultFilter() Peer {
	p := KubectlProxy()
	p.Name = "kubectl-proxy-default-filter"
	p.Title = "kubectl proxy (default request filter)"
	p.Config = []string{
		"as kubectl proxy starts without flags: `proxy.NewServer` with a `FilterServer` built from its defaults " +
			"(`--accept-paths` `" + kubectlproxy.DefaultPathAcceptRE + "`, `--reject-paths` `" + kubectlproxy.DefaultPathRejectRE +
			"`, `--accept-hosts` `" + kubectlproxy.DefaultHostAcceptRE + "`, `--reject-methods` `" + kubectlproxy.DefaultMethodRejectRE + "`)",
	}
	p.Target = kubectlTarget(true)
	return p
}

// kubectlTarget serves kubectl proxy in front of the backend.
func kubectlTarget(defaultFilter bool) harness.Target {
	return listenerTarget(func(b harness.Backend) (server, error) {
		cfg := &rest.Config{
			Host:            b.URL.String(),
			BearerToken:     b.Token,
			TLSClientConfig: rest.TLSClientConfig{CAFile: b.CAFile},
		}
		var filter *kubectlproxy.FilterServer
		if defaultFilter {
			filter = &kubectlproxy.FilterServer{
				AcceptPaths:   kubectlproxy.MakeRegexpArrayOrDie(kubectlproxy.DefaultPathAcceptRE),
				RejectPaths:   kubectlproxy.MakeRegexpArrayOrDie(kubectlproxy.DefaultPathRejectRE),
				AcceptHosts:   kubectlproxy.MakeRegexpArrayOrDie(kubectlproxy.DefaultHostAcceptRE),
				RejectMethods: kubectlproxy.MakeRegexpArrayOrDie(kubectlproxy.DefaultMethodRejectRE),
			}
		}
		s, err := kubectlproxy.NewServer("", "/", "/static/", filter, cfg, 0, false)
		if err != nil {
			return server{}, err
		}
		return server{serve: s.ServeOnListener}, nil
	})
}

// UpgradeAware is apimachinery's UpgradeAwareHandler configured as the
// API server configures it to reach a kubelet for exec.
func UpgradeAware() Peer {
	return Peer{
		Name:    "apimachinery-upgradeaware",
		Title:   "apimachinery UpgradeAwareHandler (the API server's tunnel to the kubelet)",
		Module:  apimachineryModule,
		Package: "k8s.io/apimachinery/pkg/util/proxy",
		About: "`UpgradeAwareHandler` is the raw upgrade tunnel the API server itself uses to forward pods/exec, " +
			"attach and port-forward to the kubelet (`newThrottledUpgradeAwareProxyHandler` in " +
			"kubernetes' `pkg/registry/core/pod/rest`), and the one under `kubectl proxy` and other Go proxies " +
			"built on apimachinery. For an upgrade request it dials the backend, writes the request, reads the " +
			"response, hijacks the client connection, forwards the 101 and then copies raw bytes both ways: it " +
			"never parses a WebSocket frame.",
		Config: []string{
			"per request, `proxy.NewUpgradeAwareHandler(location, transport, false, true, responder)` as the API server builds it for exec (`wrapTransport` false, `upgradeRequired` true, `MaxBytesPerSec` 0: no bandwidth limit); `location` is the backend URL with the request's path and query",
			"`transport` is an `*http.Transport` with the backend's TLS configuration (trusting its CA) and a `net.Dialer` (30 s timeout). For an upgrade the handler does not call the transport's `RoundTrip`: `DialURL` takes the dialer (`utilnet.DialerFor`) and the TLS configuration (`utilnet.TLSClientConfig`) out of it, unwrapping `RoundTripperWrapper`s, and forces ALPN `http/1.1`. So a token added by a wrapping RoundTripper would never reach an upgrade",
			"the bearer token goes in through `UpgradeTransport`, the handler's hook for upgrade requests: `proxy.NewUpgradeRequestRoundTripper(transport, rt)`, whose `WrapRequest` passes the request through `rt` (which sets `Authorization: Bearer <token>` on a clone) and `proxy.MirrorRequest`, and writes what comes out on the dialed connection (the same construction client-go's `HTTPWrappersForConfig` gives kubectl proxy)",
			"served by an `http.Server` on a 127.0.0.1 listener, one per case; stopping it closes the listener and every accepted connection, hijacked tunnels included (what the exit of the process that runs it does)",
		},
		Why:    upgradeAwareWhy,
		Target: upgradeAwareTarget(),
	}
}

func upgradeAwareTarget() harness.Target {
	return listenerTarget(func(b harness.Backend) (server, error) {
		h := UpgradeAwareHandler(b)
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		return server{serve: srv.Serve, close: func() { _ = srv.Close() }}, nil
	})
}

// UpgradeAwareHandler is an http.Handler that forwards each request to
// the backend URL plus the request's path and query through an
// UpgradeAwareHandler, with the backend's token and CA.
func UpgradeAwareHandler(b harness.Backend) http.Handler {
	var tlsConfig *tls.Config
	if b.TLSConfig != nil {
		tlsConfig = b.TLSConfig.Clone()
	}
	transport := &http.Transport{
		TLSClientConfig: tlsConfig,
		DialContext:     (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
	}
	upgrade := proxy.NewUpgradeRequestRoundTripper(transport, bearer{token: b.Token, next: proxy.MirrorRequest})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		loc := *b.URL
		loc.Path = strings.TrimSuffix(b.URL.Path, "/") + r.URL.Path
		loc.RawPath = ""
		loc.RawQuery = r.URL.RawQuery
		h := proxy.NewUpgradeAwareHandler(&loc, transport, false, true, responder{})
		h.UpgradeTransport = upgrade
		h.ServeHTTP(w, r)
	})
}

// bearer adds the backend token to a request, for UpgradeTransport.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// responder answers an error before the upgrade (the backend could not be
// dialed, or did not answer) with a 500 and the error, as kubectl proxy's
// responder does.
type responder struct{}

func (responder) Error(w http.ResponseWriter, _ *http.Request, err error) {
	http.Error(w, err.Error(), http.StatusInternalServerError)
}
