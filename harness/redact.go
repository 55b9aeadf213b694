package harness

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"

	"github.com/execconform/execconform/execproto"
)

// A bearer-token subprotocol (execproto.BearerProtocol) is a credential:
// the suite sends one in the offers of some cases, and a proxy may echo it
// anywhere (its answer, its output, an error). Nothing the suite writes
// shows one: every result is redacted (redactResult) and every log record
// (RedactingHandler).

// redactResult redacts every bearer-token subprotocol in res, and every
// one of secrets (the API server's token, the client's auth headers and
// cookies): every exported string reachable from it (failures, evidence,
// the offer, the subprotocol the client got, the target's output, frame
// payloads, close reasons), so that a field added later is redacted as
// well.
func redactResult(res *Result, secrets []string) {
	r := secretsReplacer(secrets)
	redactValue(reflect.ValueOf(res), func(s string) string { return r.Replace(execproto.Redact(s)) })
}

// Redacted is what a secret is replaced with.
const Redacted = "<redacted>"

// minSecret is the shortest value redacted as a secret: shorter ones (an
// empty token, "1") would garble every text they occur in by chance.
const minSecret = 6

// secretsReplacer replaces each of secrets (longest first, so that one
// containing another goes whole) with Redacted.
func secretsReplacer(secrets []string) *strings.Replacer {
	var long []string
	for _, s := range secrets {
		if len(s) >= minSecret && !slices.Contains(long, s) {
			long = append(long, s)
		}
	}
	slices.SortFunc(long, func(a, b string) int { return len(b) - len(a) })
	var args []string
	for _, s := range long {
		args = append(args, s, Redacted)
	}
	return strings.NewReplacer(args...)
}

// HeaderSecrets are the values of h that are credentials: Authorization,
// Proxy-Authorization and Cookie whole, each cookie's value, a bearer
// token alone, and any header whose name says token, auth, key, secret or
// session.
func HeaderSecrets(h map[string][]string) []string {
	var out []string
	for name, vs := range h {
		n := strings.ToLower(name)
		credential := n == "cookie" || strings.Contains(n, "auth") || strings.Contains(n, "token") ||
			strings.Contains(n, "key") || strings.Contains(n, "secret") || strings.Contains(n, "session")
		if !credential {
			continue
		}
		for _, v := range vs {
			out = append(out, v)
			if _, tok, ok := strings.Cut(v, " "); ok && strings.Contains(n, "auth") {
				out = append(out, strings.TrimSpace(tok)) // "Bearer TOKEN": the token alone too
			}
			if n == "cookie" {
				for _, c := range strings.Split(v, ";") {
					if _, val, ok := strings.Cut(strings.TrimSpace(c), "="); ok {
						out = append(out, val)
					}
				}
			}
		}
	}
	return out
}

func redactValue(v reflect.Value, redact func(string) string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			redactValue(v.Elem(), redact)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				redactValue(v.Field(i), redact)
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // bytes, not text
		}
		for i := range v.Len() {
			redactValue(v.Index(i), redact)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			// Map values cannot be set in place: redact a copy, put it back.
			e := reflect.New(iter.Value().Type()).Elem()
			e.Set(iter.Value())
			redactValue(e, redact)
			v.SetMapIndex(iter.Key(), e)
		}
	case reflect.String:
		if v.CanSet() {
			if s := redact(v.String()); s != v.String() {
				v.SetString(s)
			}
		}
	}
}

// RedactingHandler wraps h so that no log record shows a bearer-token
// subprotocol: in the message, in string attributes, or in any other
// attribute's text (an error, a slice of offers), which is then logged as
// that text, redacted. Options.Logger is wrapped in it; a caller that
// gives the same logger to its own components (a proxy) wraps it too.
func RedactingHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(redactingHandler); ok {
		return h
	}
	return redactingHandler{h}
}

type redactingHandler struct{ h slog.Handler }

func (r redactingHandler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r redactingHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, execproto.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r redactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = redactAttr(a)
	}
	return redactingHandler{r.h.WithAttrs(red)}
}

func (r redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{r.h.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(execproto.Redact(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]slog.Attr, len(g))
		for i, ga := range g {
			red[i] = redactAttr(ga)
		}
		a.Value = slog.GroupValue(red...)
	case slog.KindAny:
		if s := fmt.Sprint(v.Any()); execproto.Redact(s) != s {
			a.Value = slog.StringValue(execproto.Redact(s))
		} else {
			a.Value = v
		}
	default:
		a.Value = v
	}
	return a
}
