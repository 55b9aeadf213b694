package fakeapiserver_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/execconform/execconform/fakeapiserver"
)

// discoveryClient is client-go's discovery client for srv, with token.
func discoveryClient(t *testing.T, srv *fakeapiserver.Server, token string) *discovery.DiscoveryClient {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(&rest.Config{
		Host:            srv.URL().String(),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: srv.CAFile()},
	})
	require.NoError(t, err)
	return dc
}

// TestDiscoveryAnswersClientGo: client-go's discovery client, asking for
// aggregated discovery first as kubectl does, gets the fake's plain
// answers and falls back to them: the core group's v1 with pods and its
// exec subresource; a RESTMapper built from them (kubectl's) maps "pods"
// and "po" to the core v1 Pod; /version is the fake's version.
func TestDiscoveryAnswersClientGo(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	dc := discoveryClient(t, srv, srv.Token())

	groups, lists, err := dc.ServerGroupsAndResources()
	require.NoError(t, err)
	require.Len(t, groups, 1)
	assert.Equal(t, "", groups[0].Name)
	assert.Equal(t, "v1", groups[0].PreferredVersion.GroupVersion)
	require.Len(t, lists, 1)
	assert.Equal(t, "v1", lists[0].GroupVersion)
	names := map[string]metav1.APIResource{}
	for _, r := range lists[0].APIResources {
		names[r.Name] = r
	}
	for _, n := range []string{"pods", "pods/exec", "pods/attach", "pods/log", "namespaces"} {
		assert.Contains(t, names, n)
	}
	assert.True(t, names["pods"].Namespaced)
	assert.False(t, names["namespaces"].Namespaced)
	assert.Equal(t, "PodExecOptions", names["pods/exec"].Kind)

	gr, err := restmapper.GetAPIGroupResources(dc)
	require.NoError(t, err)
	// kubectl's mapper: discovery's, with short names expanded.
	mapper := restmapper.NewShortcutExpander(restmapper.NewDiscoveryRESTMapper(gr), dc, nil)
	for _, res := range []string{"pods", "po", "pod"} {
		gvk, err := mapper.KindFor(schema.GroupVersionResource{Resource: res})
		require.NoError(t, err, res)
		assert.Equal(t, schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, gvk, res)
	}

	v, err := dc.ServerVersion()
	require.NoError(t, err)
	assert.Equal(t, fakeapiserver.FakeVersion, v.GitVersion)
	assert.Equal(t, "1", v.Major)
	assert.Equal(t, "37", v.Minor)
}

// TestDiscoveryNeedsTheToken: discovery is behind the token check, as
// every path of the fake: 401 without it or with a wrong one.
func TestDiscoveryNeedsTheToken(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	for _, token := range []string{"", "wrong"} {
		_, err := discoveryClient(t, srv, token).ServerVersion()
		require.Error(t, err, "token %q", token)
		assert.True(t, errors.IsUnauthorized(err), "token %q: %v", token, err)
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: srv.ClientTLSConfig()}}
		for _, path := range []string{"/api", "/apis", "/api/v1", "/version"} {
			req, _ := http.NewRequest(http.MethodGet, srv.URL().String()+path, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s with token %q", path, token)
		}
	}
}
