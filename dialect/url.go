package dialect

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Params are what a case asks of the front: the session's pod and
// container, its command and tty, and the session id a session request
// gave.
type Params struct {
	Namespace, Pod, Container string
	Command                   []string
	TTY                       bool
	Session                   string
}

// value is a placeholder's value for p.
func (p Params) value(name string) string {
	switch name {
	case "namespace":
		return p.Namespace
	case "pod":
		return p.Pod
	case "container":
		return p.Container
	case "shell":
		if len(p.Command) > 0 {
			return p.Command[0]
		}
		return ""
	case "tty":
		return strconv.FormatBool(p.TTY)
	case "session":
		return p.Session
	}
	return ""
}

// expand fills tmpl's placeholders with p, each escaped for where it
// stands, and returns the path and the raw query.
func expand(tmpl string, p Params) (path, rawQuery string) {
	pt, qt, _ := strings.Cut(tmpl, "?")
	path = placeholderRE.ReplaceAllStringFunc(pt, func(ph string) string {
		return url.PathEscape(p.value(strings.Trim(ph, "{}")))
	})
	var parts []string
	for _, kv := range strings.Split(qt, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if v == "{command}" {
			for _, w := range p.Command {
				parts = append(parts, k+"="+url.QueryEscape(w))
			}
			continue
		}
		v = placeholderRE.ReplaceAllStringFunc(v, func(ph string) string {
			return url.QueryEscape(p.value(strings.Trim(ph, "{}")))
		})
		parts = append(parts, k+"="+v)
	}
	return path, strings.Join(parts, "&")
}

// join puts path and query under base (its path is a prefix).
func join(base *url.URL, path, rawQuery string, ws bool) string {
	u := *base
	escaped := strings.TrimSuffix(base.EscapedPath(), "/") + path
	u.Path, _ = url.PathUnescape(escaped)
	u.RawPath = escaped
	u.RawQuery = rawQuery
	if ws {
		switch u.Scheme {
		case "http":
			u.Scheme = "ws"
		case "https":
			u.Scheme = "wss"
		}
	}
	return u.String()
}

// SessionURL is the session request's URL (http or https) under base.
func (d *Dialect) SessionURL(base *url.URL, p Params) string {
	path, q := expand(d.Session.Path, p)
	u := *base
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	return join(&u, path, q, false)
}

// ConnectURL is the WebSocket URL (ws or wss) to dial under base. Over
// SockJS it is the WebSocket transport's: the prefix, a server id and a
// new random session id, then "/websocket".
func (d *Dialect) ConnectURL(base *url.URL, p Params) string {
	path, q := expand(d.Path, p)
	if d.Transport == SockJS {
		n, _ := rand.Int(rand.Reader, big.NewInt(1000))
		var id [8]byte
		_, _ = rand.Read(id[:])
		path = strings.TrimSuffix(path, "/") + fmt.Sprintf("/%03d/%s/websocket", n.Int64(), hex.EncodeToString(id[:]))
	}
	return join(base, path, q, true)
}

// ParseRequest is the other side of ConnectURL (tmpl = d.Path) and
// SessionURL (tmpl = d.Session.Path): the Params a front's request asks
// for, read against the template under prefix. Literal parts must match.
func ParseRequest(tmpl, prefix string, r *http.Request) (Params, error) {
	var p Params
	pt, qt, _ := strings.Cut(tmpl, "?")
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), strings.TrimSuffix(prefix, "/"))
	if !ok {
		return p, fmt.Errorf("dialect: path %q is not under %q", r.URL.Path, prefix)
	}
	want := strings.Split(pt, "/")
	got := strings.Split(rest, "/")
	if len(want) != len(got) {
		return p, fmt.Errorf("dialect: path %q does not have the form %q", rest, pt)
	}
	for i, w := range want {
		g, err := url.PathUnescape(got[i])
		if err != nil {
			return p, fmt.Errorf("dialect: path segment %q: %w", got[i], err)
		}
		if !strings.Contains(w, "{") {
			if w != g {
				return p, fmt.Errorf("dialect: path %q does not have the form %q", rest, pt)
			}
			continue
		}
		if placeholderRE.FindString(w) != w {
			return p, fmt.Errorf("dialect: path segment %q: only whole-segment placeholders can be read back", w)
		}
		if err := p.set(strings.Trim(w, "{}"), []string{g}); err != nil {
			return p, err
		}
	}
	q := r.URL.Query()
	for _, kv := range strings.Split(qt, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if placeholderRE.FindString(v) != v || v == "" {
			if q.Get(k) != v {
				return p, fmt.Errorf("dialect: query %s=%q, want %q", k, q.Get(k), v)
			}
			continue
		}
		if err := p.set(strings.Trim(v, "{}"), q[k]); err != nil {
			return p, err
		}
	}
	return p, nil
}

func (p *Params) set(name string, vs []string) error {
	one := ""
	if len(vs) > 0 {
		one = vs[0]
	}
	switch name {
	case "namespace":
		p.Namespace = one
	case "pod":
		p.Pod = one
	case "container":
		p.Container = one
	case "command":
		p.Command = vs
	case "shell":
		if one != "" {
			p.Command = []string{one}
		}
	case "tty":
		b, err := strconv.ParseBool(one)
		if err != nil {
			return fmt.Errorf("dialect: tty=%q: %w", one, err)
		}
		p.TTY = b
	case "session":
		p.Session = one
	}
	return nil
}
