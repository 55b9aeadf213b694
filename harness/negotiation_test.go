package harness_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/proxyundertest"
)

// rewriting is the reference proxy behind a rewrite of the client's offer
// (what a proxy in front of it, or its own header handling, does to it);
// seen records each offer as the client sent it.
func rewriting(rewrite func([]string) []string, seen *[]string, mu *sync.Mutex) harness.Target {
	return harness.HandlerTarget(func(b harness.Backend) (http.Handler, error) {
		p, err := proxyundertest.New(proxyundertest.Config{InsecureNoFrontAuth: true, Backend: b.URL, TLSConfig: b.TLSConfig, Token: b.Token})
		if err != nil {
			return nil, err
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			offer := execproto.Offered(r.Header.Values("Sec-Websocket-Protocol"))
			if seen != nil {
				mu.Lock()
				*seen = append(*seen, strings.Join(offer, ", "))
				mu.Unlock()
			}
			if rewrite != nil {
				r.Header.Set("Sec-Websocket-Protocol", strings.Join(rewrite(offer), ", "))
			}
			p.ServeHTTP(w, r)
		}), nil
	})
}

func reversed(o []string) []string { o = slices.Clone(o); slices.Reverse(o); return o }

// TestReorderedOfferIsCaught: a proxy that reverses the offer makes the
// kubelet pick another protocol for an offer without v5, and the failure
// names the offer, the API server's pick for it and what the client got;
// with v5 in the offer its position does not matter, so the same proxy
// passes.
func TestReorderedOfferIsCaught(t *testing.T) {
	res := harness.RunCase(context.Background(), rewriting(reversed, nil, nil), oneCase(t, "negotiation/offer/v1-then-base64", execproto.ProtocolV1, true), harness.Options{})
	assert.Equal(t, harness.Fail, res.Verdict)
	require.NotEmpty(t, res.Failures)
	assert.Contains(t, res.Failures[0], `the proxy answered subprotocol "base64.channel.k8s.io" to the offer [channel.k8s.io, base64.channel.k8s.io]; the API server picks "channel.k8s.io" for that whole offer`)
	assert.Contains(t, res.Failures[0], `the backend session got "base64.channel.k8s.io" for the offer [base64.channel.k8s.io, channel.k8s.io] the proxy forwarded`)
	assert.Equal(t, []string{"channel.k8s.io", "base64.channel.k8s.io"}, res.Client.Offered)
	assert.Equal(t, "base64.channel.k8s.io", res.Client.Protocol)
	assert.Equal(t, "base64.channel.k8s.io", res.Observed.Protocol, "what the API server negotiated")
	assert.Contains(t, strings.Join(res.LooksLike, "\n"), "negotiation")

	res = harness.RunCase(context.Background(), rewriting(reversed, nil, nil), oneCase(t, "negotiation/offer/v4-then-v5", execproto.ProtocolV5, true), harness.Options{})
	assert.Equal(t, harness.Pass, res.Verdict, "%v", res.Failures)
	assert.Equal(t, "v5.channel.k8s.io", res.Observed.Protocol)
}

// TestTruncatedOfferIsCaught: a proxy that forwards only the first name of
// Headlamp's offer (a name no server knows) is refused, and the failure
// says what the client offered and what the API server picks for it.
func TestTruncatedOfferIsCaught(t *testing.T) {
	first := func(o []string) []string { return o[:1] }
	res := harness.RunCase(context.Background(), rewriting(first, nil, nil), oneCase(t, "negotiation/offer/headlamp", execproto.ProtocolV4, true), harness.Options{})
	assert.Equal(t, harness.Fail, res.Verdict)
	require.NotEmpty(t, res.Failures)
	assert.Contains(t, res.Failures[0], "the proxy refused the upgrade: HTTP 403")
	assert.Contains(t, res.Failures[0], `the client offered [base64.binary.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io, channel.k8s.io], for which the API server picks "v4.channel.k8s.io"`)
	assert.Empty(t, res.Observed.Protocol, "no backend session")
}

// TestTokenOfferCarriesTheToken: the client of browser-with-token offers
// the API server's token as a subprotocol, and every record of the offer
// shows it redacted.
func TestTokenOfferCarriesTheToken(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	const canary = "CANARY-token-7f3a"
	opts := harness.Options{}
	opts.Backend.Token = canary
	res := harness.RunCase(context.Background(), rewriting(nil, &seen, &mu), oneCase(t, "negotiation/offer/browser-with-token", execproto.ProtocolBase64, true), opts)
	assert.Equal(t, harness.Pass, res.Verdict, "%v", res.Failures)
	assert.Equal(t, []string{execproto.BearerProtocol(canary) + ", base64.channel.k8s.io, channel.k8s.io"}, seen, "the token itself went to the proxy")
	assert.Equal(t, []string{execproto.RedactedBearer, "base64.channel.k8s.io", "channel.k8s.io"}, res.Client.Offered)
	assert.Equal(t, "base64.channel.k8s.io", res.Observed.Protocol)
	b, err := json.Marshal(res)
	require.NoError(t, err)
	assert.NotContains(t, string(b), strings.TrimPrefix(execproto.BearerProtocol(canary), execproto.BearerProtocolPrefix))
}

// TestRedactingHandler: no log record shows a token subprotocol, whatever
// carries it.
func TestRedactingHandler(t *testing.T) {
	token := execproto.BearerProtocol("CANARY")
	enc := strings.TrimPrefix(token, execproto.BearerProtocolPrefix)
	var buf bytes.Buffer
	log := slog.New(harness.RedactingHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	log = log.With("offer", []string{token, "v5.channel.k8s.io"})
	log.WithGroup("g").Info("dial "+token, "s", token, "err", errors.New("bad "+token), "n", 3,
		slog.Group("inner", "s", token))
	assert.NotContains(t, buf.String(), enc)
	assert.Contains(t, buf.String(), execproto.RedactedBearer)
	assert.Contains(t, buf.String(), `"n":3`, "other attributes are kept")
	assert.Equal(t, strings.Count(buf.String(), execproto.RedactedBearer), 5)
	h := harness.RedactingHandler(slog.DiscardHandler)
	assert.Equal(t, h, harness.RedactingHandler(h), "wrapped once")
}
