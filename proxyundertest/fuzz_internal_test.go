package proxyundertest

// Fuzz tests of the reference proxy's two checks of what a client sends
// before anything reaches the backend: the path (backendURL, which maps a
// frontend URL under Config.PathPrefix to the backend) and the Origin
// (checkOrigin). They are in the internal test package because both are
// unexported; they only call them, on a Proxy made by New.
//
//	go test -run '^$' -fuzz FuzzBackendURL -fuzztime 60s -parallel 1 ./proxyundertest/
//
// Without -fuzz, go test runs each target on its seeds only.

import (
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"
)

const fuzzBackendHost = "api.example:6443"

// knownBugs are bugs these fuzzers found in proxy.go and that are not
// fixed yet: an input that shows one skips instead of failing. Empty: the
// four found (dot segments passed on, '#' in the query lost by the
// dialer, the * target, Unicode case folding in checkOrigin) are fixed,
// and the seeds that found them check the fixes.
var knownBugs = map[string]string{}

// failOrKnown fails the test, or skips it if bug is in knownBugs.
func failOrKnown(t *testing.T, bug string, format string, args ...any) {
	t.Helper()
	if why, ok := knownBugs[bug]; ok {
		t.Skipf("known bug %s (%s): "+format, append([]any{bug, why}, args...)...)
	}
	t.Fatalf(format, args...)
}

// dotted reports whether a decoded path has a "." or ".." segment.
func dotted(p string) bool {
	return slices.Contains(strings.Split(p, "/"), ".") || slices.Contains(strings.Split(p, "/"), "..")
}

// fuzzProxy is a Proxy for a backend at https://fuzzBackendHost+basePath,
// and that backend URL as New keeps it (no query, no fragment); nil if
// New refuses the configuration (or basePath is no path).
func fuzzProxy(basePath, prefix string, allowed []string) (*Proxy, *url.URL) {
	backend, err := url.Parse("https://" + fuzzBackendHost + basePath)
	if err != nil || backend.Host != fuzzBackendHost || backend.User != nil ||
		backend.Path != "" && !strings.HasPrefix(backend.Path, "/") {
		return nil, nil
	}
	p, err := New(Config{Backend: backend, PathPrefix: prefix, AllowedOrigins: allowed})
	if err != nil {
		return nil, nil
	}
	backend.RawQuery, backend.Fragment = "", ""
	return p, backend
}

// under reports whether the slash path p is dir or below it ("" and "/"
// contain everything).
func under(p, dir string) bool {
	dir = strings.TrimSuffix(dir, "/")
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

// FuzzBackendURL: for any configured prefix and backend base path and any
// request target a client can send (as net/http parses it), backendURL
// accepts exactly the paths that are the prefix or below it (prefix+"/"),
// and maps such a path to the backend's scheme, host and base path with
// the prefix replaced by the base path and the query kept. What it maps
// stays under the prefix and under the base path once its dot segments
// are resolved, as the backend resolves them, and means the same path on
// the wire (RequestURI, String) as in the URL.
func FuzzBackendURL(f *testing.F) {
	for _, s := range []struct{ base, prefix, target string }{
		{"", "/k8s", "/k8s/api/v1/namespaces/ns/pods/web/exec?command=sh&stdin=true&stdout=true&tty=true"},
		{"/", "/k8s/", "/k8s"},
		{"/clusters/c1", "/k8s", "/k8s/api/v1/namespaces/ns/pods/web/exec?command=sh"},
		{"/clusters/c1/", "", "/api/v1/namespaces/ns/pods/web%2Fx/exec?command=echo&command=a%20b"},
		{"", "/k8s", "/k8sx/api"},
		{"", "/k8s", "/k8s/../api/v1/secrets"},
		{"/clusters/c1", "/k8s", "/k8s/%2e%2e/%2e%2e/c2/api"},
		{"/a%2Fb", "/p q", "/p%20q/x%2Fy?z"},
		{"", "/k8s", "http://front.example/k8s/api?x=1"},
		{"", "/k8s", "/k8s//evil.example/api"},
		{"", "/k8s", "/k8s/a?b#c"},
		{"", "/k8s", "/k8s/api/v1/namespaces/ns/pods/web/exec?command=sh&x=#&tty=true"},
		{"", "/", "*"},
		{"/clusters/c1", "", "*"},
	} {
		f.Add(s.base, s.prefix, s.target)
	}
	f.Fuzz(func(t *testing.T, base, prefix, target string) {
		p, bk := fuzzProxy(base, prefix, nil)
		if p == nil {
			return
		}
		in, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		out, ok := p.backendURL(in)
		pre := strings.TrimSuffix(prefix, "/")
		// Refused besides what is outside the prefix: dot segments (the
		// backend would resolve them outside it) and a path without its
		// leading / (the * target).
		want := (pre == "" || in.Path == pre || strings.HasPrefix(in.Path, pre+"/")) &&
			!dotted(in.Path) && (in.Path == "" || strings.HasPrefix(in.Path, "/"))
		if ok != want {
			t.Fatalf("prefix %q, path %q: accepted %v, want %v", prefix, in.Path, ok, want)
		}
		if !ok {
			if out != nil {
				t.Fatalf("prefix %q, path %q: refused, yet mapped to %v", prefix, in.Path, out)
			}
			return
		}
		if in.Path != "" && !strings.HasPrefix(in.Path, "/") {
			failOrKnown(t, "asterisk-target", "path %q maps to %q", in.Path, out.Path)
		}
		ctx := func() string {
			return "backend " + bk.String() + ", prefix " + prefix + ", target " + target + ": " + out.String()
		}
		if out.Scheme != bk.Scheme || out.Host != bk.Host || out.User != nil || out.Opaque != "" || out.Fragment != "" {
			t.Fatalf("%s: not the backend's", ctx())
		}
		// The query as sent, '#' escaped: the backend must read what the
		// proxy read.
		if want := strings.ReplaceAll(in.RawQuery, "#", "%23"); out.RawQuery != want {
			t.Fatalf("%s: query %q, want %q", ctx(), out.RawQuery, want)
		}
		if got, want := out.Query(), in.Query(); !maps.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("%s: the backend reads the query as %v, the proxy as %v", ctx(), got, want)
		}
		wantPath := strings.TrimSuffix(bk.Path, "/") + strings.TrimPrefix(in.Path, pre)
		if wantPath == "" {
			wantPath = "/"
		}
		if out.Path != wantPath {
			t.Fatalf("%s: path %q, want %q", ctx(), out.Path, wantPath)
		}
		// Dot segments: the frontend path, resolved, must still be under
		// the prefix, and the backend path under the base path.
		if !under(path.Clean("/"+in.Path), pre) {
			failOrKnown(t, "dot-segments", "%s: frontend path %q resolves to %q, outside prefix %q", ctx(), in.Path, path.Clean("/"+in.Path), pre)
		}
		if !under(path.Clean(out.Path), bk.Path) {
			failOrKnown(t, "dot-segments", "%s: backend path %q resolves to %q, outside base path %q", ctx(), out.Path, path.Clean(out.Path), bk.Path)
		}
		// What the dialer and the reverse proxy send means the same.
		wire, err := url.ParseRequestURI(out.RequestURI())
		if err != nil || wire.Path != out.Path || wire.RawQuery != out.RawQuery {
			t.Fatalf("%s: sent as %q, read back as %+v, %v", ctx(), out.RequestURI(), wire, err)
		}
		again, err := url.Parse(out.String())
		if err != nil || again.Host != bk.Host || again.Path != out.Path || again.RawQuery != out.RawQuery {
			if strings.Contains(out.RawQuery, "#") {
				failOrKnown(t, "hash-in-query", "%s: reads back as %+v, %v", ctx(), again, err)
			}
			t.Fatalf("%s: reads back as %+v, %v", ctx(), again, err)
		}
	})
}

// asciiEqualFold is strings.EqualFold for ASCII letters only, as host
// names and schemes compare (RFC 3986 section 6.2.2.1).
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// asciiUpper is s with its ASCII letters in upper case.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

// originAuthority is the host[:port] of an Origin read as an RFC 3986 URI
// reference, without decoding anything: an optional scheme, then "//" and
// the authority up to the first "/", "?" or "#", without its userinfo (up
// to the last "@"). False if the origin has no authority.
func originAuthority(o string) (string, bool) {
	if i := strings.Index(o, ":"); i > 0 && strings.Trim(o[:i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.") == "" &&
		strings.Contains("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", o[:1]) {
		o = o[i+1:]
	}
	rest, ok := strings.CutPrefix(o, "//")
	if !ok {
		return "", false
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	return rest, true
}

// originAllowed is the oracle of checkOrigin: no Origin; or the first
// Origin (a browser sends one) equal, ASCII case aside, to an allowed
// origin (its final "/" aside); or an Origin whose authority is the
// request's Host, ASCII case aside.
func originAllowed(origins []string, host string, allowed []string) bool {
	if len(origins) == 0 {
		return true
	}
	o := origins[0]
	for _, a := range allowed {
		if asciiEqualFold(strings.TrimSuffix(a, "/"), o) {
			return true
		}
	}
	h, ok := originAuthority(o)
	return ok && h != "" && asciiEqualFold(h, host)
}

// unicodeFoldAllowed is originAllowed with the known bug unicode-fold:
// strings.EqualFold instead of ASCII folding, on the Origin's host
// percent-decoded.
func unicodeFoldAllowed(origins []string, host string, allowed []string) bool {
	o := origins[0]
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimSuffix(a, "/"), o) {
			return true
		}
	}
	h, ok := originAuthority(o)
	if dec, err := url.PathUnescape(h); err == nil {
		h = dec
	}
	return ok && h != "" && strings.EqualFold(h, host)
}

// FuzzCheckOrigin: checkOrigin accepts only what originAllowed accepts,
// for any Origin header values, Host and allowed origins (that New
// accepts); and it accepts every origin a browser would send for a page on
// the request's host or on an allowed origin (scheme://host[:port], in any
// ASCII case).
func FuzzCheckOrigin(f *testing.F) {
	for _, s := range []struct {
		origin  string
		n       uint8 // Origin header lines: 0, 1 or 2 (origin, then second)
		second  string
		host    string
		allowed string // space-separated
	}{
		{"", 0, "", "proxy.example:8443", ""},
		{"https://proxy.example:8443", 1, "", "proxy.example:8443", ""},
		{"https://PROXY.example:8443", 1, "", "proxy.EXAMPLE:8443", ""},
		{"http://proxy.example:1", 1, "", "proxy.example:8443", ""},
		{"https://console.example.com", 1, "", "proxy.example", "https://console.example.com/ https://other.example:444"},
		{"https://Console.Example.com", 1, "", "proxy.example", "https://console.example.com"},
		{"https://console.example.com.evil.example", 1, "", "proxy.example", "https://console.example.com"},
		{"https://evil.example", 2, "https://proxy.example", "proxy.example", ""},
		{"null", 1, "", "proxy.example", ""},
		{"", 1, "", "proxy.example", ""},
		{"https://evil.example@proxy.example", 1, "", "proxy.example", ""},
		{"https://evil.example\\@proxy.example", 1, "", "proxy.example", ""},
		{"https://proxy.example#@evil.example", 1, "", "proxy.example", ""},
		{"//proxy.example", 1, "", "proxy.example", ""},
		{"https://[::1]:8443", 1, "", "[::1]:8443", "http://[::1]:1"},
		{"https://proxy.example", 1, "", "", ""},
		{"https://bücher.example", 1, "", "bücher.example", "https://xn--bcher-kva.example"},
		{"https://xn--bcher-kva.example", 1, "", "BÜCHER.example", "https://bücher.example"},
		// Found by review (the fuzzer had not in a minute): Unicode
		// case folding (known bug unicode-fold).
		{"https://con\u017fole.example", 1, "", "proxy.example", "https://console.example"},
		{"https://%E2%84%AAube.example", 1, "", "kube.example", ""},
		{"https://BÜCHER.example", 1, "", "bücher.example", ""},
	} {
		f.Add(s.origin, s.n, s.second, s.host, s.allowed)
	}
	f.Fuzz(func(t *testing.T, origin string, n uint8, second, host, allowed string) {
		allowedList := strings.Fields(allowed)
		p, _ := fuzzProxy("", "", allowedList)
		if p == nil {
			return
		}
		var origins []string
		switch n % 3 {
		case 1:
			origins = []string{origin}
		case 2:
			origins = []string{origin, second}
		}
		r := &http.Request{Method: http.MethodGet, Host: host, Header: http.Header{}, URL: &url.URL{Path: "/"}}
		if origins != nil {
			r.Header["Origin"] = origins
		}
		err := p.checkOrigin(r)
		if want := originAllowed(origins, host, allowedList); err == nil && !want {
			if unicodeFoldAllowed(origins, host, allowedList) {
				failOrKnown(t, "unicode-fold", "Origin %q, Host %q, allowed %q: accepted", origins, host, allowedList)
			}
			t.Fatalf("Origin %q, Host %q, allowed %q: accepted", origins, host, allowedList)
		}

		// A browser's origin for a page on the request's host, and for an
		// allowed origin: both accepted.
		if h, ok := originAuthority("https://" + host); ok && h == host && host != "" && !strings.ContainsAny(host, "@ \t\r\n%\\") {
			for _, scheme := range []string{"https", "http", "HTTPS"} {
				o := scheme + "://" + asciiUpper(host)
				if _, err := url.Parse(o); err != nil {
					continue
				}
				r.Header["Origin"] = []string{o}
				if err := p.checkOrigin(r); err != nil {
					t.Fatalf("Origin %q on Host %q: %v", o, host, err)
				}
			}
		}
		for _, a := range allowedList {
			r.Header["Origin"] = []string{strings.TrimSuffix(a, "/")}
			if err := p.checkOrigin(r); err != nil {
				t.Fatalf("allowed origin %q: %v", a, err)
			}
		}
	})
}
