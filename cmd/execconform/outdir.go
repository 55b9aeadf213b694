package main

import (
	"net/url"
	"path"
	"path/filepath"
	"strings"
)

// defaultOut is where the reports of the reference proxy go by default;
// every other target's go to a directory of their own inside it (outDir),
// so that running a broken variant or your own proxy does not write over
// the reference proxy's reports (make conformance).
const defaultOut = "conformance-report"

// outDir is the directory for the reports: --out when given (even empty,
// which writes none), else defaultOut for the reference proxy, and
// defaultOut/NAME for any other target, NAME derived from the flags that
// choose it: variant-no-exit, proxy-cmd-myproxy, target-url-127.0.0.1_8080,
// cluster, cluster-proxy-cmd-myproxy, translator-json-operation (the
// in-process translating proxy, --dialect), proxy-cmd-myproxy-dialect-D,
// client-kubectl (--client kubectl).
func (o runOptions) outDir() string {
	if o.outSet {
		return o.out
	}
	var parts []string
	if o.cluster {
		parts = append(parts, "cluster")
	}
	switch {
	case o.proxyCmd != "":
		parts = append(parts, "proxy-cmd-"+commandName(o.proxyCmd))
	case o.targetURL != "":
		host := o.targetURL
		if u, err := url.Parse(o.targetURL); err == nil && u.Host != "" {
			host = u.Host
		}
		parts = append(parts, "target-url-"+host)
	case o.dialect != "":
		// The in-process translating proxy: translator-DIALECT[-spdy][-VARIANT].
		name := "translator-" + path.Base(strings.TrimSuffix(o.dialect, filepath.Ext(o.dialect)))
		if o.executor == "spdy" {
			name += "-spdy"
		}
		if o.variant != "" {
			name += "-" + o.variant
		}
		parts = append(parts, name)
	case o.variant != "":
		parts = append(parts, "variant-"+o.variant)
	}
	if o.dialect != "" && (o.proxyCmd != "" || o.targetURL != "") {
		parts = append(parts, "dialect-"+path.Base(strings.TrimSuffix(o.dialect, filepath.Ext(o.dialect))))
	}
	if o.client != "" && o.client != "emulator" {
		parts = append(parts, "client-"+strings.TrimPrefix(o.client, "client-")) // client-go, client-kubectl, client-chromium
	}
	if len(parts) == 0 {
		return defaultOut
	}
	return filepath.Join(defaultOut, safeName(strings.Join(parts, "-")))
}

// commandName is the program a --proxy-cmd command line runs: its first
// word that is not a variable assignment or a wrapper (exec, env, nice,
// sudo), without its directory; "command" if there is none.
func commandName(cmd string) string {
	for _, w := range strings.Fields(cmd) {
		switch {
		case strings.Contains(w, "=") || strings.HasPrefix(w, "-"):
			continue
		case w == "exec" || w == "env" || w == "nice" || w == "sudo" || w == "command":
			continue
		}
		if name := path.Base(strings.Trim(w, `'"`)); name != "." && name != "/" && name != "" {
			return name
		}
	}
	return "command"
}

// safeName makes s a directory name that every file system takes: letters,
// digits, '.', '-' and '_' kept, every other run of bytes one '_', at most
// 80 bytes, never empty, "." or "..".
func safeName(s string) string {
	var b strings.Builder
	under := false
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
		switch {
		case ok:
			b.WriteByte(c)
			under = false
		case !under:
			b.WriteByte('_')
			under = true
		}
	}
	out := strings.NewReplacer("-_", "-", "_-", "-").Replace(strings.Trim(b.String(), "._"))
	if len(out) > 80 {
		out = out[:80]
	}
	if out == "" {
		out = "target"
	}
	return out
}
