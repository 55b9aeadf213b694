package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/mutants"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/report"
)

// TestTokenNeverInAnyOutput: with a canary as the API server's token, the
// case whose client offers it as a subprotocol, through the reference
// proxy and through variants that echo it as their answer or forward it
// alone, leaves the canary (raw or base64url) in no format a run writes
// and in no log line; results.json, new fields included, still matches
// its schema.
func TestTokenNeverInAnyOutput(t *testing.T) {
	const canary = "CANARY-2b1f-token"
	encoded := strings.TrimPrefix(execproto.BearerProtocol(canary), execproto.BearerProtocolPrefix)
	var logs bytes.Buffer // one handler: its writes are serialised
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := harness.Options{KeepaliveBound: proxyundertest.SuiteKeepalive, Logger: logger}
	opts.Backend.Token = canary
	cs := cases(t, `^[^/]+/tty/negotiation/offer/browser-with-token$`)
	var all []harness.Result
	for _, v := range []proxyundertest.Variant{proxyundertest.Correct, proxyundertest.EchoClientProtocol, proxyundertest.FirstProtocolOnly} {
		// The proxy logs into the same, unwrapped logger: it must redact by itself.
		rep := harness.Run(context.Background(), mutants.Target(v, logger), cs, mutants.WithFront(opts))
		require.Len(t, rep.Results, 1)
		r := rep.Results[0]
		assert.Equal(t, v == proxyundertest.Correct, !r.Failed(), "%s: %s %v", v, r.Verdict, r.Failures)
		assert.Equal(t, execproto.RedactedBearer, r.Client.Offered[0], v)
		all = append(all, r)
	}
	rep := &harness.Report{Started: time.Now(), Duration: time.Second, Results: all, Options: opts.RunOptions()}
	f := harness.NewResultsFile("the token canary", rep)
	dir := t.TempDir()
	paths, err := report.WriteAll(dir, &f, report.Options{})
	require.NoError(t, err)
	require.Len(t, paths, 4)
	texts := map[string]string{"logs": logs.String()}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		texts[filepath.Base(p)] = string(b)
	}
	for name, text := range texts {
		assert.NotContains(t, text, canary, name)
		assert.NotContains(t, text, encoded, name)
	}
	assert.Contains(t, texts["logs"], "redacted", "the logs did mention the offer")
	assert.Contains(t, texts[report.HTMLFile], "subprotocols offered")
	assert.Contains(t, texts[report.JSONFile], `"offered"`)

	s := resultsSchema(t)
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(texts[report.JSONFile]))
	require.NoError(t, err)
	assert.NoError(t, s.Validate(doc))
	var back harness.ResultsFile
	require.NoError(t, json.Unmarshal([]byte(texts[report.JSONFile]), &back))
	assert.Equal(t, "base64.channel.k8s.io", back.Results[0].Observed.Protocol)
}
