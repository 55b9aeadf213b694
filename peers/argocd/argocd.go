// Package argocd runs Argo CD's web terminal (the handler argocd-server
// serves at /terminal) as a peer: a translating terminal, with its own
// JSON dialect to the browser and client-go's executors to the API
// server.
//
//	browser ──JSON operations──> /terminal (Argo CD) ──exec (WebSocket v5, or SPDY)──> API server
//
// It is a module of its own because Argo CD v3.2.12 pins every k8s.io
// library to v0.34.0 with replace directives, which its build needs and
// which the peers module (v0.34.4) would inherit.
package argocd

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"os"

	appv1 "github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	applisters "github.com/argoproj/argo-cd/v3/pkg/client/listers/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/server/application"
	"github.com/argoproj/argo-cd/v3/util/db"
	"github.com/argoproj/argo-cd/v3/util/rbac"
	util_session "github.com/argoproj/argo-cd/v3/util/session"
	"github.com/argoproj/argo-cd/v3/util/settings"
	"github.com/execconform/execconform/dialect"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/peers"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// Module is Argo CD's Go module.
const Module = "github.com/argoproj/argo-cd/v3"

// The Application the terminal opens shells for, and the pod the suite's
// cases exec into (the harness's Options.Namespace and Options.Pod).
const (
	ArgoNamespace = "argocd"
	AppName       = "app"
	Project       = "default"
	PodNamespace  = "default"
	PodName       = "fakepod"
	// Token is the argocd.token cookie the client sends: JWT-shaped, as
	// the browser's is (with auth disabled Argo CD only requires it to be
	// there).
	Token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJleGVjY29uZm9ybSJ9.c2ln"
)

// AllowedShells are the terminal's exec.shells (argocd-cm's default is
// "bash,sh,powershell,cmd"; these are the two a Linux pod of the fake has).
var AllowedShells = []string{"sh", "bash"}

//go:embed terminal.yaml
var dialectFile []byte

// Dialect is the front dialect of Argo CD's terminal (terminal.yaml).
func Dialect() (*dialect.Dialect, error) { return dialect.Parse(dialectFile) }

// Peer is Argo CD's terminal handler in front of the case's backend.
func Peer() peers.Peer {
	return peers.Peer{
		Name:    "argocd",
		Title:   "Argo CD web terminal (server/application terminal handler)",
		Module:  Module,
		Package: "github.com/argoproj/argo-cd/v3/server/application",
		About: "Argo CD's web UI opens a shell in an application's pod through `argocd-server`'s `/terminal` endpoint " +
			"(enabled with `exec.enabled: \"true\"` in argocd-cm and the `exec, create` RBAC permission). The handler " +
			"(`application.NewHandler`) checks the request against the Application, its resource tree and the pod, upgrades " +
			"the browser's connection with gorilla/websocket, and runs `startProcess`: client-go's fallback executor " +
			"(WebSocket v5 first, SPDY if the upgrade fails) into the pod, with the WebSocket session as the executor's " +
			"stdin, stdout, stderr and terminal size queue. The browser speaks JSON `{\"operation\",\"data\",\"rows\",\"cols\"}` " +
			"text frames, not the exec subprotocols: a translating terminal, run through the dialect matrix.",
		Config: []string{
			"what `argocd-server` mounts (`server.go`): `mux.Handle(\"/terminal\", util_session.WithAuthMiddleware(true, false, nil, nil, application.NewHandler(...).WithFeatureFlagMiddleware(getSettings)))` with `getSettings` answering `ExecEnabled: true` and auth disabled (`--disable-auth`: `TerminalOptions{DisableAuth: true}`; the `argocd.token` cookie must still be there, and the client sends a JWT-shaped one)",
			"`NewHandler(lister, \"argocd\", nil, db, tree, []string{\"sh\", \"bash\"}, nil, &TerminalOptions{DisableAuth: true, Enf: enf})`: an Application lister with one Application `argocd/app` (project `default`, destination the backend URL, namespace `default`); a `db.ArgoDB` whose `GetCluster` answers the case's backend (URL, bearer token, CA data; no other method is called); a resource tree with the case's pod `default/fakepod`; an `rbac.Enforcer` whose default role may `get` applications and `create` exec",
			"the fake API server answers the handler's `GET` of the pod as the API server does for a running pod whose containers all run (`fakeapiserver.PodContainers`: the suite's session containers c0, c1, ...)",
			"served by an `http.Server` with no timeouts on a 127.0.0.1 listener, one per case; stopping it closes the listener and every accepted connection, hijacked ones too (what the exit of `argocd-server` does)",
		},
		Why:          why,
		ClientHeader: http.Header{"Cookie": {"argocd.token=" + Token}},
		Target:       peers.ServeHandler(Handler),
	}
}

// Handler is Argo CD's /terminal for one case's backend.
func Handler(b harness.Backend) (http.Handler, error) {
	var caData []byte
	if b.CAFile != "" {
		var err error
		if caData, err = os.ReadFile(b.CAFile); err != nil {
			return nil, fmt.Errorf("argocd: backend CA: %w", err)
		}
	}
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := idx.Add(&appv1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: AppName, Namespace: ArgoNamespace},
		Spec: appv1.ApplicationSpec{Project: Project,
			Destination: appv1.ApplicationDestination{Server: b.URL.String(), Namespace: PodNamespace}},
	}); err != nil {
		return nil, fmt.Errorf("argocd: application: %w", err)
	}
	cluster := &appv1.Cluster{Server: b.URL.String(), Name: "backend", Config: appv1.ClusterConfig{
		BearerToken: b.Token, TLSClientConfig: appv1.TLSClientConfig{CAData: caData}}}
	tree := func(context.Context, *appv1.Application) (*appv1.ApplicationTree, error) {
		// podExists wants Kind Pod, group "", a UID, the name and namespace.
		return &appv1.ApplicationTree{Nodes: []appv1.ResourceNode{{ResourceRef: appv1.ResourceRef{
			Kind: "Pod", Version: "v1", Name: PodName, Namespace: PodNamespace, UID: "fake-" + PodNamespace + "-" + PodName}}}}, nil
	}
	enf := rbac.NewEnforcer(nil, ArgoNamespace, "argocd-rbac-cm", nil)
	if err := enf.SetUserPolicy("p, role:execconform, applications, get, */*, allow\np, role:execconform, exec, create, */*, allow\n"); err != nil {
		return nil, fmt.Errorf("argocd: rbac: %w", err)
	}
	enf.SetDefaultRole("role:execconform")
	terminal := application.NewHandler(applisters.NewApplicationLister(idx), ArgoNamespace, nil, clusterDB{cluster: cluster},
		tree, AllowedShells, nil, &application.TerminalOptions{DisableAuth: true, Enf: enf}).
		WithFeatureFlagMiddleware(func() (*settings.ArgoCDSettings, error) { return &settings.ArgoCDSettings{ExecEnabled: true}, nil })
	mux := http.NewServeMux()
	mux.Handle("/terminal", util_session.WithAuthMiddleware(true, false, nil, nil, terminal))
	return mux, nil
}

// clusterDB is the one method of db.ArgoDB the terminal calls (through
// argo.GetDestinationCluster, the destination given by server URL); any
// other would panic on the nil interface.
type clusterDB struct {
	db.ArgoDB
	cluster *appv1.Cluster
}

func (c clusterDB) GetCluster(_ context.Context, server string) (*appv1.Cluster, error) {
	if server != c.cluster.Server {
		return nil, fmt.Errorf("argocd: no cluster %q", server)
	}
	return c.cluster, nil
}
