package harness

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/execconform/execconform/scenarios"
)

// TestKnockHeader: each knock changes the run's header as it says, and
// only so.
func TestKnockHeader(t *testing.T) {
	run := map[string][]string{
		"Authorization": {"Bearer secret-token"},
		"Cookie":        {"session=abc; theme=dark"},
		"X-Api-Key":     {"k"},
		"Origin":        {"https://console.example.com:8443"},
	}
	front := &url.URL{Scheme: "http", Host: "127.0.0.1:4321"}
	for _, tc := range []struct {
		k    scenarios.Knock
		want http.Header
	}{
		{scenarios.KnockNoCredentials, http.Header{"Origin": {"https://console.example.com:8443"}}},
		{scenarios.KnockWrongCredentials, http.Header{
			"Authorization": {"Bearer " + wrongCredential},
			"Cookie":        {"session=" + wrongCredential + "; theme=" + wrongCredential},
			"X-Api-Key":     {wrongCredential},
			"Origin":        {"https://console.example.com:8443"},
		}},
		{scenarios.KnockCrossSite, with(run, "Origin", "https://evil.example")},
		{scenarios.KnockNullOrigin, with(run, "Origin", "null")},
		{scenarios.KnockLookalikeOrigin, with(run, "Origin", "https://console.example.com.evil.example:8443")},
		{scenarios.KnockRebinding, http.Header{"Host": {"evil.example:4321"}, "Origin": {"http://evil.example:4321"}}},
		{scenarios.KnockForeignHost, http.Header{
			"Authorization": {"Bearer secret-token"}, "Cookie": {"session=abc; theme=dark"}, "X-Api-Key": {"k"}, "Host": {"evil.example:4321"},
		}},
	} {
		assert.Equal(t, tc.want, knockHeader(tc.k, run, front), tc.k)
	}
	// Without an Origin of the run's, the lookalike is the proxy's own
	// host's; without credentials, a wrong bearer token.
	assert.Equal(t, "http://127.0.0.1.evil.example:4321", knockHeader(scenarios.KnockLookalikeOrigin, nil, front).Get("Origin"))
	assert.Equal(t, http.Header{"Authorization": {"Bearer " + wrongCredential}}, knockHeader(scenarios.KnockWrongCredentials, nil, front))
}

func with(h map[string][]string, k, v string) http.Header {
	out := http.Header(h).Clone()
	out.Set(k, v)
	return out
}
