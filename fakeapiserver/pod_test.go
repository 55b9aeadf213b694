package fakeapiserver_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/execconform/execconform/fakeapiserver"
)

// TestPodAnswersAsTheAPIServer: a GET of a pod decodes as a v1 Pod that
// is running, whose spec and statuses list every container the suite's
// sessions exec into, each running (what Argo CD's terminal checks before
// it execs).
func TestPodAnswersAsTheAPIServer(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: srv.ClientTLSConfig()}}
	req, err := http.NewRequest(http.MethodGet, srv.URL().String()+"/api/v1/namespaces/ns1/pods/somepod", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+srv.Token())
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	var p corev1.Pod
	dec := json.NewDecoder(resp.Body)
	dec.DisallowUnknownFields() // every field the fake sends is a v1 Pod's
	require.NoError(t, dec.Decode(&p))
	assert.Equal(t, "Pod", p.Kind)
	assert.Equal(t, "v1", p.APIVersion)
	assert.Equal(t, "somepod", p.Name)
	assert.Equal(t, "ns1", p.Namespace)
	assert.NotEmpty(t, p.UID)
	assert.Equal(t, corev1.PodRunning, p.Status.Phase)
	require.Len(t, p.Spec.Containers, fakeapiserver.PodContainers)
	require.Len(t, p.Status.ContainerStatuses, fakeapiserver.PodContainers)
	for i := range fakeapiserver.PodContainers {
		name := fakeapiserver.ContainerName(i)
		assert.Equal(t, name, p.Spec.Containers[i].Name)
		cs := p.Status.ContainerStatuses[i]
		assert.Equal(t, name, cs.Name)
		assert.True(t, cs.Ready)
		require.NotNil(t, cs.State.Running, name)
		assert.False(t, cs.State.Running.StartedAt.IsZero(), name)
	}
	assert.Equal(t, "c0", fakeapiserver.ContainerName(0))
	assert.Equal(t, "c199", fakeapiserver.ContainerName(199))
}
