package harness

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// A Pattern is a known bug, recognised by the failures it causes.
type Pattern struct {
	Bug string // what the proxy does wrong, in words
	// Match tells whether one failure message shows the bug.
	Match func(failure string) bool
}

func contains(subs ...string) func(string) bool {
	return func(f string) bool {
		for _, s := range subs {
			if !strings.Contains(f, s) {
				return false
			}
		}
		return true
	}
}

var (
	stdinExitNoNewline = regexp.MustCompile(`stdin "(\\x03\\r)?exit"`)
	anyStdin           = regexp.MustCompile(`received: [^;]*stdin "`)
	// exitStdin: an exit on stdin among what the backend received (not
	// just any input a transparent tunnel passed on).
	exitStdin = regexp.MustCompile(`received: [^;]*stdin "(\\x03)?(\\r)?exit(\\r|\\n)"`)
)

// Patterns are the bugs the suite recognises, from the evidence its
// failures carry (what the backend received after the ending, what the
// client was told).
var Patterns = []Pattern{
	{"the exit is framed as base64 text on a binary subprotocol", contains("text frame on channel 48")},
	{"the exit is sent on stdout (channel 1) instead of stdin", contains("frame on channel 1 ")},
	{"the exit has no line ending, so the shell never runs it", func(f string) bool {
		return strings.Contains(f, "after the ending the backend received") && stdinExitNoNewline.MatchString(f)
	}},
	{"the backend connection is dropped with neither an exit nor a close frame", contains("after the ending the backend received: nothing; TCP: closed by the proxy without a close handshake")},
	{"the close handshake is done but no exit is sent", func(f string) bool {
		return strings.Contains(f, "after the ending the backend received: close ") && !anyStdin.MatchString(f)
	}},
	{"the exit is sent but the backend connection is dropped without a close frame", func(f string) bool {
		return strings.Contains(f, "the backend received no close frame from the proxy") && exitStdin.MatchString(f)
	}},
	{"a half-open client is never noticed (no keepalive)", func(f string) bool {
		return strings.Contains(f, "half-open") && (strings.Contains(f, "kept the backend connection open") || strings.Contains(f, "received: nothing; TCP: still open"))
	}},
	{"the backend's close is not relayed to the client", func(f string) bool {
		return strings.Contains(f, "ended the client connection without a close frame") ||
			strings.Contains(f, "the client got close code -1 from the proxy") ||
			strings.Contains(f, "the client got no status on the error channel")
	}},
	{"the exit is lost behind input in flight: written by a second writer beside the copy loop (concurrent writes), or queued behind input nobody wants", func(f string) bool {
		return strings.Contains(f, "busy/paste-in-flight: ") && strings.Contains(f, "after the ending the backend received") && !strings.Contains(f, `exit\r"`) && !strings.Contains(f, `exit\n"`)
	}},
	{"messages to the backend are cut into continuation frames (a write buffer smaller than a message)", contains("fragmented a message to the backend")},
	{"subprotocol negotiation: the offers are not all forwarded, or the backend's choice is not returned", func(f string) bool {
		return strings.Contains(f, "the proxy answered subprotocol") || strings.Contains(f, "the proxy refused the upgrade: HTTP 403")
	}},
}

// Diagnose names the known bugs that r's failures show.
func Diagnose(r Result) []string {
	var bugs []string
	for _, f := range r.Failures {
		text := r.Name + ": " + f
		for _, p := range Patterns {
			if !slices.Contains(bugs, p.Bug) && p.Match(text) {
				bugs = append(bugs, p.Bug)
			}
		}
	}
	return bugs
}

// LooksLike names the known bugs that the failures of rep show, each with
// how many failed cases show it, most first.
func LooksLike(rep *Report) []string {
	count := map[string]int{}
	for _, r := range rep.Results {
		if !r.Failed() {
			continue
		}
		for _, b := range Diagnose(r) {
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
