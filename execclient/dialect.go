package execclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/execconform/execconform/dialect"
)

// DialDialect opens a session on a translating terminal's front at base
// (its URL with any path prefix) in dialect d, for the session p asks
// for: the dialect's session request first, if it has one (with
// opts.Header and opts.TLSConfig; its refusal is a *HandshakeError), then
// the WebSocket at d.ConnectURL, offering d.Subprotocols unless opts says
// otherwise, then d's start messages. A nil or Kubernetes d is a plain Dial
// of the exec subprotocols, which needs the exec URL: an error here.
func DialDialect(ctx context.Context, base *url.URL, d *dialect.Dialect, p dialect.Params, opts Options) (*Conn, error) {
	if d.IsKubernetes() {
		return nil, fmt.Errorf("execclient: DialDialect needs a dialect; the exec subprotocols take Dial")
	}
	opts.Dialect = d
	if d.Session != nil {
		id, err := sessionRequest(ctx, d.SessionURL(base, p), d.Session.ID, opts.withDefaults())
		if err != nil {
			return nil, err
		}
		opts.DialectSession, p.Session = id, id
	}
	if opts.RawProtocols == nil && opts.Protocols == nil && len(d.Subprotocols) > 0 {
		opts.RawProtocols = d.Subprotocols
	}
	return Dial(ctx, d.ConnectURL(base, p), opts)
}

// sessionRequest GETs u and returns the field idField of its JSON answer.
func sessionRequest(ctx context.Context, u, idField string, opts Options) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.HandshakeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("execclient: session request: %w", err)
	}
	for k, vs := range opts.Header {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	if opts.TLSConfig != nil {
		tr.TLSClientConfig = opts.TLSConfig.Clone()
	} else {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", fmt.Errorf("execclient: session request %s: %w", redactURL(u), err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxHandshakeBody))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("execclient: session request %s: %w", redactURL(u), &HandshakeError{StatusCode: resp.StatusCode, Header: resp.Header, Body: string(body)})
	}
	var answer map[string]any
	if err := json.Unmarshal(body, &answer); err != nil {
		return "", fmt.Errorf("execclient: session request %s: the answer is not a JSON object: %w", redactURL(u), err)
	}
	id, ok := answer[idField].(string)
	if !ok || id == "" {
		return "", fmt.Errorf("execclient: session request %s: the answer has no string %q: %.200s", redactURL(u), idField, body)
	}
	return id, nil
}

// redactURL is u without its query (which may hold anything).
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.RawQuery, p.User = "", nil
	return p.String()
}
