// Package dialect describes how a web terminal's front speaks to the
// browser when it does not hand over the Kubernetes exec subprotocols:
// how stdin, a resize and the start of a session (a bind, a session
// request) are encoded, how output is decoded, and over which transport
// (a WebSocket, or SockJS's WebSocket transport).
//
// Most web terminals translate (Argo CD, Kubernetes Dashboard, KubeSphere,
// Portainer): their own protocol to the browser, client-go's executor to
// the API server.
//
//	browser ──dialect──> terminal backend ──exec (WebSocket v5 or SPDY)──> API server
//
// A Dialect is plain data, built in (Builtin) or loaded from a small YAML
// or JSON file (Load; the schema is docs/dialects.md), so that a
// maintainer describes a terminal the suite has never heard of in a dozen
// lines. The same Dialect encodes and decodes on both sides: ClientCodec
// for the suite's client emulator, ServerCodec for a front that serves it
// (the translating reference proxy).
package dialect

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Kubernetes is the name of the default: the Kubernetes exec subprotocols
// themselves (a pass-through proxy). It has no codec: the suite speaks the
// subprotocols as it always did.
const Kubernetes = "kubernetes"

// Transports of a dialect's front.
const (
	WebSocket = "websocket" // a plain WebSocket at Path
	SockJS    = "sockjs"    // SockJS's WebSocket transport under Path: PATH/SERVER/SESSION/websocket
)

// Encodings of what a dialect carries.
const (
	JSON = "json" // each message is a JSON object (Stdin, Resize, Output)
	Raw  = "raw"  // stdin and output are the messages' bytes themselves
)

// Frame types of what the client sends.
const (
	Text   = "text"
	Binary = "binary"
)

// TTY modes: whether the client chooses.
const (
	TTYParam  = "param"  // the request's {tty} chooses
	TTYAlways = "always" // every session has a tty
)

// Dialect is one front protocol. The zero values of the optional fields
// are the defaults that Validate fills in.
type Dialect struct {
	// Name names the dialect in case names and reports ([a-z0-9-]+).
	Name string `json:"name"`
	// Base, in a file, is a built-in dialect this one starts from: only
	// the fields the file sets replace the base's.
	Base        string `json:"base,omitempty"`
	Description string `json:"description,omitempty"`
	// Transport is WebSocket (default) or SockJS.
	Transport string `json:"transport,omitempty"`
	// Path is the front's URL path and query, with placeholders (see
	// Placeholders): "/terminal?pod={pod}&container={container}&shell={shell}".
	// Over SockJS it is the SockJS prefix ("/api/sockjs").
	Path string `json:"path"`
	// Subprotocols are offered in Sec-WebSocket-Protocol (none by default).
	Subprotocols []string `json:"subprotocols,omitempty"`
	// Frames is the WebSocket message type the client sends: Text
	// (default) or Binary. Over SockJS it is always text.
	Frames string `json:"frames,omitempty"`
	// Encoding is JSON or Raw.
	Encoding string `json:"encoding"`
	// TTY is TTYParam (default when Path or Session.Path holds {tty}) or
	// TTYAlways.
	TTY string `json:"tty,omitempty"`
	// Session, if set, is a request made before the connection whose JSON
	// answer names the session ({session}), as Kubernetes Dashboard's
	// GET /api/v1/pod/NS/POD/shell/CONTAINER does.
	Session *SessionRequest `json:"session,omitempty"`
	// Start are messages sent first, once connected (a bind, an auth
	// message): JSON templates, {session} filled in.
	Start []Template `json:"start,omitempty"`
	// Stdin is the stdin message (JSON): a template with one "{data}".
	Stdin Template `json:"stdin,omitempty"`
	// Resize is the resize message (JSON, even with a raw encoding): a
	// template with "{rows}" and "{cols}". Unset: the dialect cannot resize.
	Resize Template `json:"resize,omitempty"`
	// Output says which server messages carry output (JSON). With a raw
	// encoding every message is output.
	Output *Match `json:"output,omitempty"`
}

// SessionRequest is a GET made before the connection.
type SessionRequest struct {
	// Path is the request's path and query, with placeholders, from the
	// front's base URL.
	Path string `json:"path"`
	// ID is the field of the JSON answer that holds the session's id.
	ID string `json:"id"`
}

// Template is a JSON message with placeholders: a string value that is
// exactly "{data}", "{session}" (strings), "{rows}" or "{cols}" (numbers)
// is filled in; every other value is sent as it is, and a server matches
// it literally.
type Template map[string]any

// Match picks a dialect's output messages: the JSON objects whose fields
// hold When's values; Data names the field with the output, a string.
type Match struct {
	When map[string]any `json:"when,omitempty"`
	Data string         `json:"data"`
}

// Placeholders of Path and Session.Path. Values are escaped for where
// they stand: a path segment, or a query value. {command} is a whole
// query value and repeats the parameter for each word of the command, as
// the exec URL does; {shell} is the command's first word.
var Placeholders = []string{"namespace", "pod", "container", "command", "shell", "tty", "session"}

// Error is a dialect that does not validate: the field and why.
type Error struct {
	Source string // the file, or "builtin"
	Field  string
	Reason string
}

func (e *Error) Error() string {
	if e.Source != "" {
		return fmt.Sprintf("dialect: %s: field %q: %s", e.Source, e.Field, e.Reason)
	}
	return fmt.Sprintf("dialect: field %q: %s", e.Field, e.Reason)
}

var (
	nameRE        = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
	placeholderRE = regexp.MustCompile(`\{[^{}]*\}`)
)

// IsKubernetes reports whether d is the Kubernetes subprotocols (nil too).
func (d *Dialect) IsKubernetes() bool { return d == nil || d.Name == Kubernetes }

// Validate checks d and fills in its defaults. The error is an *Error.
func (d *Dialect) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &Error{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if !nameRE.MatchString(d.Name) {
		return bad("name", "%q is not a name: lower-case letters, digits and '-', at most 40", d.Name)
	}
	if d.Name == Kubernetes {
		return bad("name", "%q is the Kubernetes subprotocols themselves, not a dialect", d.Name)
	}
	switch d.Transport {
	case "":
		d.Transport = WebSocket
	case WebSocket, SockJS:
	default:
		return bad("transport", "%q: want %q or %q", d.Transport, WebSocket, SockJS)
	}
	switch d.Frames {
	case "":
		d.Frames = Text
	case Text, Binary:
	default:
		return bad("frames", "%q: want %q or %q", d.Frames, Text, Binary)
	}
	if d.Transport == SockJS && d.Frames != Text {
		return bad("frames", "SockJS carries text frames only")
	}
	if d.Transport == SockJS && len(d.Subprotocols) > 0 {
		return bad("subprotocols", "SockJS's WebSocket transport offers none")
	}
	if err := checkPath("path", d.Path, d.Transport == SockJS); err != nil {
		return err
	}
	if d.Session != nil {
		if err := checkPath("session.path", d.Session.Path, false); err != nil {
			return err
		}
		if strings.Contains(d.Session.Path, "{session}") {
			return bad("session.path", "{session} is what the request answers; it cannot be in its own path")
		}
		if d.Session.ID == "" {
			return bad("session.id", "name the field of the answer that holds the session's id")
		}
	} else if d.uses("{session}") {
		return bad("session", "{session} is used but no session request gives it")
	}
	if !d.uses("{container}") {
		return bad("path", "{container} is in neither path nor session.path: the suite tells its sessions apart by the container it asks for")
	}
	if d.uses("{command}") && d.uses("{shell}") {
		return bad("path", "use {command} or {shell}, not both")
	}
	switch d.TTY {
	case "":
		d.TTY = TTYAlways
		if d.uses("{tty}") {
			d.TTY = TTYParam
		}
	case TTYAlways:
		if d.uses("{tty}") {
			return bad("tty", "%q, but {tty} is in the path", d.TTY)
		}
	case TTYParam:
		if !d.uses("{tty}") {
			return bad("tty", "%q needs {tty} in path or session.path", d.TTY)
		}
	default:
		return bad("tty", "%q: want %q or %q", d.TTY, TTYParam, TTYAlways)
	}
	for i, t := range d.Start {
		if err := checkTemplate(fmt.Sprintf("start[%d]", i), t, nil, []string{"{session}"}); err != nil {
			return err
		}
	}
	if d.Resize != nil {
		if err := checkTemplate("resize", d.Resize, []string{"{rows}", "{cols}"}, []string{"{session}"}); err != nil {
			return err
		}
	}
	switch d.Encoding {
	case JSON:
		if d.Stdin == nil {
			return bad("stdin", "a JSON dialect needs its stdin message")
		}
		if err := checkTemplate("stdin", d.Stdin, []string{"{data}"}, []string{"{session}"}); err != nil {
			return err
		}
		if d.Output == nil || d.Output.Data == "" {
			return bad("output.data", "a JSON dialect needs the field that carries output")
		}
		if _, clash := d.Output.When[d.Output.Data]; clash {
			return bad("output.when", "%q is also output.data", d.Output.Data)
		}
		if len(d.Output.When) == 0 {
			return bad("output.when", "say which messages are output (e.g. {\"operation\": \"stdout\"})")
		}
	case Raw:
		if d.Stdin != nil {
			return bad("stdin", "a raw dialect sends stdin as the message itself: leave stdin out")
		}
		if d.Output != nil {
			return bad("output", "a raw dialect takes every message as output: leave output out")
		}
		if d.Resize != nil && d.Frames == Text {
			return bad("resize", "a raw dialect over text frames cannot tell a resize from typed text; use binary frames for stdin")
		}
	default:
		return bad("encoding", "%q: want %q or %q", d.Encoding, JSON, Raw)
	}
	if d.Encoding == JSON && d.Resize != nil && literals(d.Resize).equal(literals(d.Stdin)) {
		return bad("resize", "its fixed fields are stdin's: a server cannot tell them apart")
	}
	return nil
}

// uses reports whether a placeholder appears in Path or Session.Path.
func (d *Dialect) uses(ph string) bool {
	return strings.Contains(d.Path, ph) || (d.Session != nil && strings.Contains(d.Session.Path, ph))
}

// CommandMode says what of a case's command the dialect can carry:
// "command" (all of it), "shell" (its first word) or "fixed" (none: the
// terminal picks its shell).
func (d *Dialect) CommandMode() string {
	switch {
	case d.uses("{command}"):
		return "command"
	case d.uses("{shell}"):
		return "shell"
	}
	return "fixed"
}

func checkPath(field, p string, sockjs bool) error {
	bad := func(format string, args ...any) error {
		return &Error{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if !strings.HasPrefix(p, "/") {
		return bad("%q must start with '/'", p)
	}
	path, query, _ := strings.Cut(p, "?")
	if sockjs && query != "" {
		return bad("SockJS adds its own path after the prefix: no query")
	}
	for _, ph := range placeholderRE.FindAllString(p, -1) {
		if !slices.Contains(Placeholders, strings.Trim(ph, "{}")) {
			return bad("unknown placeholder %s (known: {%s})", ph, strings.Join(Placeholders, "}, {"))
		}
	}
	if strings.Contains(path, "{command}") {
		return bad("{command} repeats a query parameter, one per word: it cannot stand in the path (use {shell})")
	}
	for _, kv := range strings.Split(query, "&") {
		_, v, _ := strings.Cut(kv, "=")
		if strings.Contains(v, "{command}") && v != "{command}" {
			return bad("{command} must be a whole query value")
		}
	}
	if strings.Count(p, "{") != len(placeholderRE.FindAllString(p, -1)) || strings.Count(p, "}") != strings.Count(p, "{") {
		return bad("unbalanced braces")
	}
	return nil
}

// checkTemplate checks that t holds each of need exactly once, and
// nothing but need and may as placeholders.
func checkTemplate(field string, t Template, need, may []string) error {
	count := map[string]int{}
	var walk func(v any) error
	walk = func(v any) error {
		switch v := v.(type) {
		case string:
			if placeholderRE.MatchString(v) {
				if placeholderRE.FindString(v) != v {
					return &Error{Field: field, Reason: fmt.Sprintf("%q: a placeholder must be the whole value", v)}
				}
				if !slices.Contains(need, v) && !slices.Contains(may, v) {
					return &Error{Field: field, Reason: fmt.Sprintf("%s cannot stand here (allowed: %s)", v, strings.Join(append(slices.Clone(need), may...), ", "))}
				}
				count[v]++
			}
		case map[string]any:
			for _, k := range sortedKeys(v) {
				if err := walk(v[k]); err != nil {
					return err
				}
			}
		case Template:
			return walk(map[string]any(v))
		case []any:
			return &Error{Field: field, Reason: "arrays are not supported in a message template"}
		}
		return nil
	}
	if len(t) == 0 {
		return &Error{Field: field, Reason: "an empty message"}
	}
	if err := walk(map[string]any(t)); err != nil {
		return err
	}
	for _, n := range need {
		if count[n] != 1 {
			return &Error{Field: field, Reason: fmt.Sprintf("needs %s exactly once (has %d)", n, count[n])}
		}
	}
	return nil
}

// literals is t without its placeholders: what a server matches.
func literals(t Template) Template {
	out := Template{}
	for k, v := range t {
		switch v := v.(type) {
		case string:
			if placeholderRE.FindString(v) == v && v != "" {
				continue
			}
		case map[string]any:
			out[k] = map[string]any(literals(v))
			continue
		}
		out[k] = v
	}
	return out
}

// equal compares two literal templates.
func (t Template) equal(u Template) bool {
	if len(t) != len(u) {
		return false
	}
	for k, v := range t {
		w, ok := u[k]
		if !ok || !valueEqual(v, w) {
			return false
		}
	}
	return true
}

func valueEqual(a, b any) bool {
	am, aok := asMap(a)
	bm, bok := asMap(b)
	if aok || bok {
		return aok && bok && Template(am).equal(Template(bm))
	}
	return fmt.Sprint(a) == fmt.Sprint(b) && sameKind(a, b)
}

func asMap(v any) (map[string]any, bool) {
	switch v := v.(type) {
	case map[string]any:
		return v, true
	case Template:
		return v, true
	}
	return nil, false
}

func sameKind(a, b any) bool {
	_, as := a.(string)
	_, bs := b.(string)
	return as == bs
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
