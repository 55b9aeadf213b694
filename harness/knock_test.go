package harness_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/proxyundertest"
)

// TestRefusedKnockWithABackendExecFails: a proxy that dials the API
// server before it checks the credential, then refuses the client, has
// started a process for a request it did not serve: the knock fails
// although the client got 401.
func TestRefusedKnockWithABackendExecFails(t *testing.T) {
	var mu sync.Mutex
	var leaked []*websocket.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range leaked {
			_ = c.Close()
		}
	})
	dialFirst := harness.HandlerTarget(func(b harness.Backend) (http.Handler, error) {
		p, err := proxyundertest.New(proxyundertest.Config{InsecureNoFrontAuth: true, Backend: b.URL, TLSConfig: b.TLSConfig, Token: b.Token})
		if err != nil {
			return nil, err
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "Bearer good" {
				p.ServeHTTP(w, r)
				return
			}
			// The bug: the backend first, the check after.
			u := *b.URL
			u.Scheme, u.Path, u.RawQuery = "wss", r.URL.Path, r.URL.RawQuery
			d := websocket.Dialer{TLSClientConfig: b.TLSConfig, Subprotocols: websocket.Subprotocols(r)}
			if c, _, err := d.Dial(u.String(), http.Header{"Authorization": {"Bearer " + b.Token}}); err == nil {
				mu.Lock()
				leaked = append(leaked, c)
				mu.Unlock()
			}
			http.Error(w, "no credential", http.StatusUnauthorized)
		}), nil
	})
	opts := harness.Options{ClientHeader: map[string][]string{"Authorization": {"Bearer good"}}}
	res := harness.RunCase(context.Background(), dialFirst, oneCase(t, "front-door/no-credentials", execproto.ProtocolV5, true), opts)
	assert.Equal(t, harness.NonStrict, res.Verdict, "%v", res.Failures)
	require.Len(t, res.Findings, 1, "%v", res.Failures)
	assert.Equal(t, harness.CheckFrontDoor, res.Findings[0].Check)
	assert.Contains(t, res.Failures[0], "refused the knock (no-credentials, HTTP 401) but opened an exec on the API server")

	// The reference proxy refuses it before the backend: the same case passes.
	ref := harness.HandlerTarget(func(b harness.Backend) (http.Handler, error) {
		return proxyundertest.New(proxyundertest.Config{FrontToken: "good", Backend: b.URL, TLSConfig: b.TLSConfig, Token: b.Token})
	})
	res = harness.RunCase(context.Background(), ref, oneCase(t, "front-door/no-credentials", execproto.ProtocolV5, true), opts)
	assert.Equal(t, harness.Pass, res.Verdict, "%v", res.Failures)
	assert.True(t, strings.Contains(strings.Join(res.Notes, "\n"), "was refused: HTTP 401"), "%v", res.Notes)
	for _, s := range append(res.Failures, res.Notes...) {
		assert.NotContains(t, s, "good", "the credential is redacted")
	}
}
