package peers

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"time"

	"github.com/brancz/kube-rbac-proxy/pkg/authn"
	"github.com/brancz/kube-rbac-proxy/pkg/authz"
	"github.com/brancz/kube-rbac-proxy/pkg/filters"
	"github.com/execconform/execconform/harness"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apiserver/pkg/authorization/union"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const kubeRBACProxyModule = "github.com/brancz/kube-rbac-proxy"

// The identity the review stub gives the client's token.
const (
	// KubeRBACProxyClientToken is the bearer token the suite's client
	// sends kube-rbac-proxy, and the only one its review stub approves.
	KubeRBACProxyClientToken = "execconform-client-token"
	kubeRBACProxyUser        = "execconform-client"
)

// KubeRBACProxy is kube-rbac-proxy's filter chain (a TokenReview
// authenticator and a SubjectAccessReview authorizer) in front of its
// reverse proxy, with the API server as its upstream.
func KubeRBACProxy() Peer {
	return Peer{
		Name:    "kube-rbac-proxy",
		Title:   "kube-rbac-proxy (TokenReview and SubjectAccessReview in front of a reverse proxy)",
		Module:  kubeRBACProxyModule,
		Package: "github.com/brancz/kube-rbac-proxy/pkg/filters",
		About: "kube-rbac-proxy is the small HTTP proxy that puts Kubernetes authentication and RBAC in front of " +
			"a service (a metrics endpoint, a kubelet API, an internal console): it checks the client's bearer token " +
			"with a TokenReview, asks the API server whether the user may do the request with a " +
			"SubjectAccessReview, and forwards what is allowed to its `--upstream` through Go's " +
			"`httputil.ReverseProxy`. Here its upstream is the API server's exec endpoint: a pass-through peer " +
			"with authentication in front, like the raw tunnels but with the standard library's upgrade " +
			"handling instead of apimachinery's.",
		Config: []string{
			"the chain `app.Run` builds (`Run` itself owns listeners and signals, so it is assembled here from the same exported pieces, in its order): " +
				"`filters.WithAuthentication(authn.NewDelegatingAuthenticator(...), nil, filters.WithAuthorization(union.New(authz.NewStaticAuthorizer(nil), authz.NewSarAuthorizer(...)), &authz.Config{}, filters.WithAuthHeaders(&authn.AuthnHeaderConfig{}, proxy.ServeHTTP)))` " +
				"under a `ServeMux` at `/`: no `--auth-header-fields-enabled`, no static rules, no `--resource-attributes` file (so each request is authorised as a non-resource request, its path and the verb of its method), no `--allow-paths` or `--ignore-paths`",
			"the authenticator's TokenReview client and the authorizer's SubjectAccessReview client are a clientset on a review stub on a 127.0.0.1 listener of its own, one per case: it authenticates only the token `" + KubeRBACProxyClientToken + "` (as user `" + kubeRBACProxyUser + "`) and allows every request of that user; the suite's client sends `Authorization: Bearer " + KubeRBACProxyClientToken + "`",
			"`proxy := httputil.NewSingleHostReverseProxy(upstream)` with the backend URL as `--upstream`. kube-rbac-proxy reaches its upstream with no credentials of its own but a client certificate (`--upstream-client-cert-file`), and the authenticator removes the client's `Authorization` header once it has checked it; the fake API server wants a bearer token, so `proxy.Transport` is `rest.TransportFor` of a `rest.Config` with the backend token and CA in place of `initTransport`'s `http.Transport` (the same `http.Transport` underneath, with a bearer round tripper that passes the 101 response through)",
			"served as its `--insecure-listen-address` is: an `http.Server` with no timeouts whose handler is `h2c.NewHandler(mux, &http2.Server{...})` with its HTTP/2 defaults (`--http2-disable` false, 100 streams, 256 KiB), on a 127.0.0.1 listener, one per case; stopping it closes the listener and every accepted connection, hijacked ones too (what its exit does; on SIGTERM `Run` calls `Shutdown`, which leaves hijacked connections alone)",
		},
		Why:          kubeRBACProxyWhy,
		ClientHeader: http.Header{"Authorization": {"Bearer " + KubeRBACProxyClientToken}},
		Target:       kubeRBACProxyTarget(),
	}
}

func kubeRBACProxyTarget() harness.Target {
	return listenerTarget(func(b harness.Backend) (server, error) {
		stub, err := startReviewStub()
		if err != nil {
			return server{}, err
		}
		h, err := KubeRBACProxyHandler(b, &rest.Config{Host: stub.url})
		if err != nil {
			stub.close()
			return server{}, err
		}
		mux := http.NewServeMux()
		mux.Handle("/", h)
		srv := &http.Server{Handler: h2c.NewHandler(mux, &http2.Server{
			IdleTimeout:                  90 * time.Second,
			MaxConcurrentStreams:         100,
			MaxReadFrameSize:             256 * 1024,
			MaxUploadBufferPerStream:     256 * 1024,
			MaxUploadBufferPerConnection: 256 * 1024 * 100,
		})}
		return server{serve: srv.Serve, close: func() { _ = srv.Close(); stub.close() }}, nil
	})
}

// KubeRBACProxyHandler is kube-rbac-proxy's filter chain, its reviews
// sent to the API server of reviews, in front of a reverse proxy to the
// backend with the backend's token and CA.
func KubeRBACProxyHandler(b harness.Backend, reviews *rest.Config) (http.Handler, error) {
	kc, err := kubernetes.NewForConfig(reviews)
	if err != nil {
		return nil, fmt.Errorf("kube-rbac-proxy: review client: %w", err)
	}
	authnCfg := &authn.AuthnConfig{X509: &authn.X509Config{}, Header: &authn.AuthnHeaderConfig{},
		OIDC: &authn.OIDCConfig{}, Token: &authn.TokenConfig{}}
	authenticator, err := authn.NewDelegatingAuthenticator(kc.AuthenticationV1(), authnCfg)
	if err != nil {
		return nil, fmt.Errorf("kube-rbac-proxy: authenticator: %w", err)
	}
	sar, err := authz.NewSarAuthorizer(kc.AuthorizationV1())
	if err != nil {
		return nil, fmt.Errorf("kube-rbac-proxy: authorizer: %w", err)
	}
	static, err := authz.NewStaticAuthorizer(nil)
	if err != nil {
		return nil, fmt.Errorf("kube-rbac-proxy: static authorizer: %w", err)
	}
	authzCfg := &authz.Config{}
	upstream := &rest.Config{
		Host:            b.URL.String(),
		BearerToken:     b.Token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: b.CAFile},
	}
	proxy := httputil.NewSingleHostReverseProxy(b.URL)
	if proxy.Transport, err = rest.TransportFor(upstream); err != nil {
		return nil, fmt.Errorf("kube-rbac-proxy: upstream transport: %w", err)
	}
	h := proxy.ServeHTTP
	h = filters.WithAuthHeaders(authnCfg.Header, h)
	h = filters.WithAuthorization(union.New(static, sar), authzCfg, h)
	h = filters.WithAuthentication(authenticator, authnCfg.Token.Audiences, h)
	return http.HandlerFunc(h), nil
}

// reviewStub answers kube-rbac-proxy's TokenReviews and
// SubjectAccessReviews, as the API server would for a client whose
// token is KubeRBACProxyClientToken and whom RBAC allows everything.
type reviewStub struct {
	url   string
	close func()
}

func startReviewStub() (*reviewStub, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("kube-rbac-proxy: review stub: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /apis/authentication.k8s.io/v1/tokenreviews", func(w http.ResponseWriter, r *http.Request) {
		var tr authenticationv1.TokenReview
		if err := json.NewDecoder(r.Body).Decode(&tr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tr.Status = authenticationv1.TokenReviewStatus{}
		if tr.Spec.Token == KubeRBACProxyClientToken {
			tr.Status.Authenticated = true
			tr.Status.User = authenticationv1.UserInfo{Username: kubeRBACProxyUser, Groups: []string{"system:authenticated"}}
		}
		writeJSON(w, &tr)
	})
	mux.HandleFunc("POST /apis/authorization.k8s.io/v1/subjectaccessreviews", func(w http.ResponseWriter, r *http.Request) {
		var sar authorizationv1.SubjectAccessReview
		if err := json.NewDecoder(r.Body).Decode(&sar); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sar.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: sar.Spec.User == kubeRBACProxyUser}
		writeJSON(w, &sar)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &reviewStub{url: "http://" + ln.Addr().String(), close: func() { _ = srv.Close() }}, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
