package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bearerAt finds a bearer-token subprotocol's prefix and what follows it.
var bearerAt = regexp.MustCompile(`(?i)base64url\.bearer\.authorization\.k8s\.io\.([^\s,"\]]{0,20})`)

// unredacted lists the bearer-token subprotocols in text that are not
// shown redacted (as is, or escaped by JSON, HTML, XML or a log's quoting).
func unredacted(text string) []string {
	var out []string
	for _, m := range bearerAt.FindAllStringSubmatch(text, -1) {
		rest := strings.TrimLeft(m[1], `\`)
		if !strings.HasPrefix(rest, "<redacted") && !strings.HasPrefix(rest, "u003credacted") && !strings.HasPrefix(rest, "&lt;redacted") {
			out = append(out, m[0])
		}
	}
	return out
}

// TestRunNeverPrintsTheToken: the case whose client offers the API
// server's token as a subprotocol, through variants that echo it as their
// answer and forward it alone, with every component logging (-v): neither
// the terminal output, the logs nor any report file shows the token.
func TestRunNeverPrintsTheToken(t *testing.T) {
	assert.Len(t, unredacted("x base64url.bearer.authorization.k8s.io.dG9r y"), 1, "the check can fail")
	for _, v := range []string{"echo-client-protocol", "first-protocol-only", ""} {
		dir := t.TempDir()
		var out, errb bytes.Buffer
		args := []string{"run", "-v", "--out", dir, "--run", `/negotiation/offer/browser-with-token$`}
		if v != "" {
			args = append(args, "--variant", v)
		}
		err := run(context.Background(), args, &out, &errb)
		if v == "" {
			require.NoError(t, err, out.String())
		}
		assert.Contains(t, out.String(), "browser-with-token", v)
		if v != "" {
			assert.Contains(t, out.String()+errb.String(), "redacted", "%s: the output mentions the offer", v)
		}
		texts := map[string]string{"stdout": out.String(), "stderr": errb.String()}
		files, err := filepath.Glob(filepath.Join(dir, "*"))
		require.NoError(t, err)
		require.Len(t, files, 4)
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			texts[filepath.Base(f)] = string(b)
		}
		for name, text := range texts {
			assert.Empty(t, unredacted(text), "%s: %s", v, name)
		}
	}
}
