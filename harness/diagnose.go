package harness

import (
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
)

// A Pattern is a known bug, recognised by the evidence of the findings it
// causes: the checks that failed, what the backend received after the
// ending, the close codes, the target's panic. Never by the words of a
// message, which change.
type Pattern struct {
	// ID is a stable name (results.json's looks_like_ids).
	ID string
	// Bug is what the proxy does wrong, in words.
	Bug string
	// Shows tells whether finding f of result r shows the bug.
	Shows func(r *Result, f Finding) bool
}

// exitLost: the checks that fail when the session's exit went missing.
func exitLost(f Finding) bool {
	return f.Input != nil && (f.Check == CheckLive || f.Check == CheckBackendNoClose || f.Check == CheckBackendOpen)
}

// binary tells whether r's subprotocol frames stdin in binary messages.
func binary(r *Result) bool {
	p, err := execproto.ParseProtocol(r.Protocol)
	return err == nil && !p.Base64()
}

// base64Exit tells whether a frame is an exit framed as base64 text ('0'
// then base64) where the subprotocol is binary.
func base64Exit(fr InputFrame) bool {
	if fr.Opcode != "text" || fr.Channel != '0' {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(fr.Payload)
	return err == nil && strings.Contains(string(b), "exit")
}

// Patterns are the bugs the suite recognises. Each is shown, by the
// variant that has the bug, to match, and to match nothing of any other
// variant nor of the reference proxy (mutants.TestPatternsAreTrue).
var Patterns = []Pattern{
	{"base64-exit-on-binary", "the exit is framed as base64 text on a binary subprotocol", func(r *Result, f Finding) bool {
		return exitLost(f) && binary(r) && slices.ContainsFunc(f.Input.Other, base64Exit)
	}},
	{"exit-on-stdout", "the exit is sent on stdout (channel 1) instead of stdin", func(r *Result, f Finding) bool {
		return exitLost(f) && slices.ContainsFunc(f.Input.Other, func(fr InputFrame) bool {
			return fr.Channel == int(execproto.StreamStdout) && strings.Contains(fr.Payload, "exit")
		})
	}},
	{"exit-no-newline", "the exit has no line ending, so the shell never runs it", func(r *Result, f Finding) bool {
		return exitLost(f) && !f.Input.SentExit() && exitUnended.MatchString(f.Input.Stdin)
	}},
	{"dropped-silently", "the backend connection is dropped with neither an exit nor a close frame", func(r *Result, f Finding) bool {
		// Input in flight before it (a paste) may have arrived: no exit of
		// any kind and no close frame did. Not after a RST, which can drop
		// what was sent before it (backend-reset says that).
		in := f.Input
		return exitLost(f) && !in.Closed() && !in.AnyExit() && in.TCP != fakeapiserver.TCPOpen && in.TCP != fakeapiserver.TCPReset
	}},
	{"close-no-exit", "the close handshake is done but no exit is sent", func(r *Result, f Finding) bool {
		return exitLost(f) && f.Input.Closed() && f.Input.Stdin == "" && len(f.Input.Other) == 0 && !f.Input.StdinClosed
	}},
	{"exit-then-drop", "the exit is sent but the backend connection is dropped without a close frame", func(r *Result, f Finding) bool {
		return f.Check == CheckBackendNoClose && f.Input != nil && f.Input.SentExit() && r.TargetPanic == ""
	}},
	{"no-interrupt", "the exit is sent without a Ctrl-C first, so a half-typed line, a busy foreground program or an output flood swallows it", func(r *Result, f Finding) bool {
		return r.TTY && f.Check == CheckLive && f.Input != nil && f.Input.SentExit() && !f.Input.Interrupted()
	}},
	{"no-keepalive", "a half-open client is never noticed (no keepalive)", func(r *Result, f Finding) bool {
		return r.NeedsKeepalive && exitLost(f) && f.Input.Nothing() && f.Input.TCP == fakeapiserver.TCPOpen
	}},
	{"close-not-relayed", "the backend's close is not relayed to the client", func(r *Result, f Finding) bool {
		// The backend closed first and the proxy answered that close, so it
		// had it (a close the API server wrote into a dead backend leg
		// never reached the proxy: nothing to relay); the client got none.
		relayable := f.Check == CheckClientNoClose || f.Check == CheckStatus || f.Check == CheckClientCloseCode
		o := r.Observed
		return relayable && o.CloseFirstBy == "server" && o.ServerCloseCode != 0 && o.TargetCloseCode != 0 && r.Client.CloseCode < 0
	}},
	{"second-writer", "the exit is lost to a second writer beside the copy loop: gorilla/websocket's \"concurrent write to websocket connection\" panic dropped both connections", func(r *Result, f Finding) bool {
		return strings.Contains(r.TargetPanic, "concurrent write") && (exitLost(f) || f.Check == CheckClientNoClose)
	}},
	{"backend-reset", "the backend connection is reset (closed with unread data: the proxy must read the backend until its TCP close, or the RST can drop the exit and the close frame)", func(r *Result, f Finding) bool {
		return f.Check == CheckBackendReset
	}},
	{"fragmented", "messages to the backend are cut into continuation frames (a write buffer smaller than a message)", func(r *Result, f Finding) bool {
		return f.Check == CheckFragmented
	}},
	{"no-spdy", "SPDY exec upgrades are refused: client-go's SPDY executor (kubectl's fallback, and most Go web terminals) cannot get through", func(r *Result, f Finding) bool {
		return r.SPDY() && f.Check == CheckUpgradeRefused && (f.HTTPStatus == 400 || f.HTTPStatus == 404 || f.HTTPStatus == 405 || f.HTTPStatus == 501)
	}},
	{"tty-stdin-closed", "the client's stdin half-close was passed on to the backend on a tty: the runtime keeps the shell, and the closed stdin cannot carry the exit when the client drops", func(r *Result, f Finding) bool {
		// A dialect has no stdin close: a half-close behind one is the
		// proxy's own (the patterns below).
		return r.Dialect == "" && r.TTY && f.Check == CheckLive && r.Backend != nil && r.Backend.StdinClosed
	}},
	// A translating terminal's own ends (behind a dialect).
	{"eot-only", "only Ctrl-D (EOT) is typed when the front goes away: it ends a shell idle at an empty prompt, not a half-typed line nor a busy foreground program (Kubernetes Dashboard, Argo CD and KubeSphere do this)", func(r *Result, f Finding) bool {
		return r.Dialect != "" && r.TTY && f.Check == CheckLive && f.Input != nil && strings.Contains(f.Input.Stdin, "\x04") && !f.Input.AnyExit()
	}},
	{"stdin-eof-only", "the front's end only closes the executor's stdin (EOF): a tty shell does not end on stdin EOF (Portainer does this)", func(r *Result, f Finding) bool {
		return r.Dialect != "" && r.TTY && exitLost(f) && f.Input.Stdin == "" && len(f.Input.Other) == 0 && f.Input.StdinClosed
	}},
	{"exit-in-front-encoding", "the exit is typed in the front's own encoding (a JSON message) instead of as bytes on the executor's stdin: the shell reads JSON", func(r *Result, f Finding) bool {
		return r.Dialect != "" && exitLost(f) && strings.Contains(f.Input.Stdin, "exit") && strings.Contains(f.Input.Stdin, "{\"")
	}},
	{"negotiation", "subprotocol negotiation: the offers are not all forwarded, or the backend's choice is not returned", func(r *Result, f Finding) bool {
		return f.Check == CheckWrongProtocol || f.Check == CheckUpgradeRefused && f.HTTPStatus == 403 && len(r.Client.Offered) > 1
	}},
}

// Diagnose names the known bugs that r's findings show: their IDs and
// their words, in the order of Patterns.
func Diagnose(r Result) (ids, bugs []string) {
	for _, p := range Patterns {
		if slices.ContainsFunc(r.Findings, func(f Finding) bool { return p.Shows(&r, f) }) {
			ids, bugs = append(ids, p.ID), append(bugs, p.Bug)
		}
	}
	return ids, bugs
}

// LooksLikeIDs are the IDs of the known bugs the failures of rep show,
// sorted.
func LooksLikeIDs(rep *Report) []string {
	var ids []string
	for _, r := range rep.Results {
		if !r.Failed() {
			continue
		}
		got, _ := Diagnose(r)
		for _, id := range got {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// LooksLike names the known bugs that the failures of rep show, each with
// how many failed cases show it, most first.
func LooksLike(rep *Report) []string {
	count := map[string]int{}
	for _, r := range rep.Results {
		if !r.Failed() {
			continue
		}
		_, bugs := Diagnose(r)
		for _, b := range bugs {
			count[b]++
		}
	}
	var bugs []string
	for b := range count {
		bugs = append(bugs, b)
	}
	sort.Slice(bugs, func(i, j int) bool {
		if count[bugs[i]] != count[bugs[j]] {
			return count[bugs[i]] > count[bugs[j]]
		}
		return bugs[i] < bugs[j]
	})
	out := make([]string, len(bugs))
	for i, b := range bugs {
		out[i] = fmt.Sprintf("looks like: %s (%d failed cases)", b, count[b])
	}
	return out
}
