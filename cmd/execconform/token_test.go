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

// outputsOf reads every report file of dir (and what run printed).
func outputsOf(t *testing.T, dir string, out, errb *bytes.Buffer) map[string]string {
	t.Helper()
	texts := map[string]string{"stdout": out.String(), "stderr": errb.String()}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.IsDir() {
			continue
		}
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		texts[filepath.Base(f)] = string(b)
	}
	return texts
}

// TestRunNeverPrintsSecrets: a --proxy-cmd proxy that fails to start
// after printing the API server's token and its token file's contents,
// with the client's own credentials (--header, --cookie) sent to it: no
// output of the run (stdout, stderr, results.json, junit.xml, report.html,
// summary.md, the step summary) shows any of them. Before, the rendered
// command line, token included, went into every one.
func TestRunNeverPrintsSecrets(t *testing.T) {
	dir, work := t.TempDir(), t.TempDir()
	seen := filepath.Join(work, "seen")
	const header, cookie = "Bearer canary-front-token-7f3a9c", "canary-cookie-value-51d2e8"
	summary := filepath.Join(work, "step-summary.md")
	t.Setenv("GITHUB_STEP_SUMMARY", summary)
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"run", "-v", "--out", dir,
		"--header", "Authorization: " + header, "--cookie", "sid=" + cookie,
		"--proxy-cmd", "echo {{.Token}} >" + seen + "; echo token {{.Token}} file $(cat {{.TokenFile}}) >&2; exit 3",
		"--run", `^v5.channel.k8s.io/tty/disconnect/client-tcp-fin$`}, &out, &errb)
	require.Error(t, err)
	b, rerr := os.ReadFile(seen)
	require.NoError(t, rerr, "the proxy ran")
	token := strings.TrimSpace(string(b))
	require.NotEmpty(t, token)
	texts := outputsOf(t, dir, &out, &errb)
	sb, rerr := os.ReadFile(summary)
	require.NoError(t, rerr)
	texts["GITHUB_STEP_SUMMARY"] = string(sb)
	assert.Contains(t, texts["results.json"], "the proxy did not start", "the failure is reported")
	assert.Contains(t, texts["results.json"], `\u003credacted\u003e`, "where the token was")
	for name, text := range texts {
		for _, secret := range []string{token, header, "canary-front-token-7f3a9c", cookie} {
			assert.NotContains(t, text, secret, "%s shows a secret", name)
		}
	}
}

// TestProxyCmdHostilePaths: every placeholder expands as one shell word,
// so a TMPDIR holding a space, a ';' and a '$(...)' neither breaks the
// command nor runs what it holds.
func TestProxyCmdHostilePaths(t *testing.T) {
	base := t.TempDir()
	tmp := filepath.Join(base, "a b;touch PWNED;$(touch PWNED2)'q")
	require.NoError(t, os.MkdirAll(tmp, 0o755))
	t.Setenv("TMPDIR", tmp)
	_, err, results := runExternal(t, "--keepalive", "3s", "--proxy-cmd",
		"test -d {{.Dir}} && test -s {{.TokenFile}} && cd {{.Dir}} && "+selfProxy(t, ""),
		"--run", `^v5.channel.k8s.io/tty/disconnect/client-tcp-fin$`)
	require.NoError(t, err)
	require.Len(t, results, 1)
	assert.Equal(t, "PASS", string(results[0].Verdict), "%v", results[0].Failures)
	for _, p := range []string{"PWNED", "PWNED2"} {
		for _, d := range []string{base, tmp, "."} {
			_, err := os.Stat(filepath.Join(d, p))
			assert.True(t, os.IsNotExist(err), "%s ran in %s", p, d)
		}
	}
}
