package chromium

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/execconform/execconform/scenarios"
)

// TestRefusedCode reads the browser's words for a refused upgrade, as
// Chromium 156 logs them.
func TestRefusedCode(t *testing.T) {
	for text, want := range map[string]int{
		"WebSocket connection to 'ws://h/x' failed: Error during WebSocket handshake: Unexpected response code: 404": 404,
		"WebSocket connection to 'ws://h/x' failed: Error during WebSocket handshake: Unexpected response code: 403": 403,
		"WebSocket connection to 'ws://h/x' failed: HTTP Authentication failed; no valid credentials available":      401,
		"WebSocket connection to 'ws://h/x' failed: Error in connection establishment: net::ERR_CONNECTION_REFUSED":  0,
		"": 0,
	} {
		assert.Equal(t, want, refusedCode(text), text)
	}
}

// TestLatin1 turns the page's strings of char codes back into bytes: every
// byte value survives JSON's UTF-8.
func TestLatin1(t *testing.T) {
	all := make([]byte, 256)
	runes := make([]rune, 256)
	for i := range all {
		all[i], runes[i] = byte(i), rune(i)
	}
	assert.Equal(t, all, latin1(string(runes)))
}

// TestPageFile serves the page, its script and the other origin's page,
// and nothing else.
func TestPageFile(t *testing.T) {
	page := "http://127.0.0.1:8080/prefix/.execconform/client.html"
	away := awayOrigin + "/away.html"
	for u, want := range map[string]string{
		page: "text/html; charset=utf-8",
		"http://127.0.0.1:8080/prefix/.execconform/client.js":     "text/javascript; charset=utf-8",
		"http://127.0.0.1:8080/prefix/.execconform/client.js?v=1": "text/javascript; charset=utf-8",
		away: "text/html; charset=utf-8",
		"http://127.0.0.1:8080/prefix/.execconform/secret":         "",
		"http://127.0.0.1:8080/prefix/.execconform/../client.html": "",
		"http://127.0.0.1:8080/.execconform/client.html":           "",
		awayOrigin + "/client.js":                                  "",
	} {
		body, ctype, ok := pageFile(u, page, away)
		assert.Equal(t, want != "", ok, u)
		assert.Equal(t, want, ctype, u)
		assert.Equal(t, ok, len(body) > 0, u)
	}
}

// TestOwnBrowser: the endings that kill a browser get one of their own.
func TestOwnBrowser(t *testing.T) {
	for end, want := range map[scenarios.End]bool{
		{Kind: scenarios.EndClientAbort}:                             true,
		{Kind: scenarios.EndClientOwn, As: scenarios.OwnBrowserKill}: true,
		{Kind: scenarios.EndClientOwn, As: scenarios.OwnBrowserTree}: true,
		{Kind: scenarios.EndClientOwn, As: scenarios.OwnTabClose}:    false,
		{Kind: scenarios.EndClientOwn, As: scenarios.OwnOffline}:     false,
		{Kind: scenarios.EndClientClose, Code: 1000}:                 false,
		{Kind: scenarios.EndTypeExit}:                                false,
		{Kind: scenarios.EndTargetStop}:                              false,
	} {
		assert.Equal(t, want, OwnBrowser(scenarios.Case{Scenario: &scenarios.Scenario{End: end}}), "%+v", end)
	}
	assert.False(t, OwnBrowser(scenarios.Case{}), "no scenario")
}
