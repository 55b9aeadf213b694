package fakeapiserver

import (
	"encoding/json"
	"net"
	"net/http"
	"runtime"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
)

// Discovery: what kubectl reads before an exec, to map "pods" to a
// resource (its RESTMapper) and to check the server's version. A real
// API server answers these for any authenticated user; the fake
// answers them behind the same token check as every other path
// (ServeHTTP: 401 without it).
//
//	GET /api      APIVersions: the core group's versions (v1)
//	GET /apis     APIGroupList: no named groups (the fake serves the core group only)
//	GET /api/v1   APIResourceList: pods and its exec, attach and log subresources, namespaces
//	GET /version  version.Info
//
// Every answer is plain JSON (Content-Type application/json), also when
// the client asks for aggregated discovery first (Accept:
// application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,
// then plain application/json): client-go's discovery client reads the
// response's Content-Type and, for plain JSON, takes the unaggregated
// answer and asks /api/v1 for the resources, as it does with an API
// server older than aggregated discovery.

// FakeVersion is the Kubernetes version the fake claims (GET /version):
// the version of the k8s.io modules the suite is built with.
const FakeVersion = "v1.37.2"

// serverAddress is what APIVersions says the server is reached at: the
// request's own Host, as the API server does when it has no advertised
// address for the client's network.
func serverAddress(r *http.Request) string {
	if _, _, err := net.SplitHostPort(r.Host); err == nil {
		return r.Host
	}
	return net.JoinHostPort(r.Host, "443")
}

func (s *Server) serveAPIVersions(w http.ResponseWriter, r *http.Request) {
	writeAPIJSON(w, &metav1.APIVersions{
		TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
		Versions: []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{
			{ClientCIDR: "0.0.0.0/0", ServerAddress: serverAddress(r)},
		},
	})
}

func (s *Server) serveAPIGroups(w http.ResponseWriter, _ *http.Request) {
	writeAPIJSON(w, &metav1.APIGroupList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"},
		Groups:   []metav1.APIGroup{},
	})
}

// coreResources are the core group's resources the fake serves (or, for
// namespaces, lets clients name): what kubectl needs to resolve "pods",
// "po", "pod/NAME" and the subresources it execs, attaches and reads logs through.
var coreResources = []metav1.APIResource{
	{
		Name: "namespaces", SingularName: "namespace", Namespaced: false, Kind: "Namespace",
		Verbs:      metav1.Verbs{"create", "delete", "get", "list", "patch", "update", "watch"},
		ShortNames: []string{"ns"},
	},
	{
		Name: "pods", SingularName: "pod", Namespaced: true, Kind: "Pod",
		Verbs:      metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"},
		ShortNames: []string{"po"},
		Categories: []string{"all"},
	},
	{Name: "pods/attach", SingularName: "", Namespaced: true, Kind: "PodAttachOptions", Verbs: metav1.Verbs{"create", "get"}},
	{Name: "pods/exec", SingularName: "", Namespaced: true, Kind: "PodExecOptions", Verbs: metav1.Verbs{"create", "get"}},
	{Name: "pods/log", SingularName: "", Namespaced: true, Kind: "Pod", Verbs: metav1.Verbs{"get"}},
}

func (s *Server) serveCoreResources(w http.ResponseWriter, _ *http.Request) {
	writeAPIJSON(w, &metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: "v1",
		APIResources: coreResources,
	})
}

func (s *Server) serveVersion(w http.ResponseWriter, _ *http.Request) {
	writeAPIJSON(w, &version.Info{
		Major: "1", Minor: "37", GitVersion: FakeVersion,
		GitCommit: "0000000000000000000000000000000000000000", GitTreeState: "clean",
		BuildDate: "1970-01-01T00:00:00Z", GoVersion: runtime.Version(), Compiler: runtime.Compiler,
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
	})
}

// writeAPIJSON writes v as the API server writes a JSON answer: compact,
// with its content type.
func writeAPIJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_ = json.NewEncoder(w).Encode(v)
}
