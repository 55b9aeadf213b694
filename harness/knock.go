package harness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/scenarios"
)

// knockIdx is the session index of a knock: beside the control sessions
// (0, 1, ...), so the backend tells them apart.
const knockIdx = 1000

// wrongCredential replaces the run's credentials in the wrong-credentials knock.
const wrongCredential = "execconform-wrong-credential"

// knock makes the case's knock on front, before its sessions: a request
// the proxy must refuse. A knock it lets through is a failure of
// CheckFrontDoor; the case then goes on with its control session.
func (r *caseRun) knock(ctx context.Context, front *url.URL) error {
	k := r.c.Scenario.Knock
	if k == scenarios.KnockAPIRequest {
		return r.knockAPI(ctx, front)
	}
	hdr := knockHeader(k, r.opts.ClientHeader, front)
	copts := execclient.Options{Header: hdr, Logger: r.log, HandshakeTimeout: 15 * time.Second,
		Protocols: []execproto.Protocol{r.c.Protocol}}
	if front.Scheme == "https" || front.Scheme == "wss" {
		copts.TLSConfig = r.opts.FrontTLS
	}
	client, err := execclient.Dial(ctx, r.execURL(front, r.server.Exec(knockIdx, r.c.Command())), copts)
	if err == nil {
		r.knocked = client
		_ = client.Reset()
		r.fail(nil, CheckFrontDoor, "the proxy opened an exec session (HTTP 101) for %s: it must refuse it before it dials the API server", knockWords(k, hdr))
		return nil
	}
	var he *execclient.HandshakeError
	if !errors.As(err, &he) {
		return fmt.Errorf("the knock (%s): dial the proxy: %w", k, err)
	}
	r.knockStatus = he.StatusCode
	r.note(nil, "the knock (%s) was refused: HTTP %d", knockWords(k, hdr), he.StatusCode)
	return nil
}

// knockAPI is the API-request knock: a plain GET of the case's pod
// without the run's credentials. The answer of the API server (a Pod)
// means the proxy relayed it with credentials of its own.
func (r *caseRun) knockAPI(ctx context.Context, front *url.URL) error {
	exec := r.server.Exec(knockIdx, r.c.Command())
	u := *front
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + fmt.Sprintf("/api/v1/namespaces/%s/pods/%s", exec.Namespace, exec.Pod)
	u.RawQuery = ""
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if o := http.Header(r.opts.ClientHeader).Get("Origin"); o != "" {
		req.Header.Set("Origin", o)
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: r.opts.FrontTLS, DialContext: (&net.Dialer{}).DialContext}
	if tr.TLSClientConfig != nil {
		tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	} else {
		tr.TLSClientConfig = &tls.Config{}
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("the knock (%s): %w", scenarios.KnockAPIRequest, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	r.knockStatus = resp.StatusCode
	if resp.StatusCode/100 == 2 && isPod(body, exec.Pod) {
		r.fail(nil, CheckFrontDoor, "the proxy answered GET %s without the run's credentials with the API server's answer (HTTP %d, the pod %s): it relayed the request with credentials of its own",
			u.Path, resp.StatusCode, exec.Pod)
		return nil
	}
	r.note(nil, "the knock (GET %s without the run's credentials) got HTTP %d, not the API server's pod", u.Path, resp.StatusCode)
	return nil
}

// isPod reports whether body is the API server's Pod named pod.
func isPod(body []byte, pod string) bool {
	b := string(body)
	return strings.Contains(b, `"kind":"Pod"`) && strings.Contains(b, `"name":"`+pod+`"`)
}

// checkKnockBackend fails a refused knock for which the proxy opened an
// exec on the API server anyway (a dial before the checks, a refusal
// after it). It runs after the control session, which the proxy served
// after the knock: a dial for the knock came before it.
func (r *caseRun) checkKnockBackend() {
	if r.c.Scenario.Knock == "" || r.c.Scenario.Knock == scenarios.KnockAPIRequest || r.knocked != nil || r.knockStatus == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // what is there now, without waiting
	if _, err := r.server.Session(ctx, knockIdx); err == nil {
		r.fail(nil, CheckFrontDoor, "the proxy refused the knock (%s, HTTP %d) but opened an exec on the API server for it: a process was started for a request it did not serve",
			r.c.Scenario.Knock, r.knockStatus)
	}
}

// knockHeader is the request header of knock k: the run's header
// (credentials and Origin), changed as the knock says.
func knockHeader(k scenarios.Knock, run map[string][]string, front *url.URL) http.Header {
	h := http.Header(run).Clone()
	if h == nil {
		h = http.Header{}
	}
	scheme := "http"
	if front.Scheme == "https" || front.Scheme == "wss" {
		scheme = "https"
	}
	_, port, _ := net.SplitHostPort(front.Host)
	evil := net.JoinHostPort(scenarios.EvilHost, port)
	switch k {
	case scenarios.KnockNoCredentials:
		h = onlyOrigin(h)
	case scenarios.KnockWrongCredentials:
		h = wrongValues(h)
	case scenarios.KnockCrossSite:
		h.Set("Origin", "https://"+scenarios.EvilHost)
	case scenarios.KnockNullOrigin:
		h.Set("Origin", "null")
	case scenarios.KnockLookalikeOrigin:
		h.Set("Origin", lookalike(h.Get("Origin"), scheme+"://"+front.Host))
	case scenarios.KnockRebinding:
		h = http.Header{"Host": {evil}, "Origin": {scheme + "://" + evil}}
	case scenarios.KnockForeignHost:
		h.Del("Origin")
		h.Set("Host", evil)
	}
	return h
}

// onlyOrigin is h without anything but its Origin.
func onlyOrigin(h http.Header) http.Header {
	out := http.Header{}
	if o := h.Get("Origin"); o != "" {
		out.Set("Origin", o)
	}
	return out
}

// wrongValues is h with every value but the Origin's replaced by a wrong
// one of the same shape: a bearer token, each cookie's value. Without any
// credential, it carries a wrong bearer token.
func wrongValues(h http.Header) http.Header {
	out := http.Header{}
	for name, vs := range h {
		for _, v := range vs {
			switch {
			case name == "Origin":
			case name == "Cookie":
				var cs []string
				for _, c := range strings.Split(v, ";") {
					n, _, _ := strings.Cut(strings.TrimSpace(c), "=")
					cs = append(cs, n+"="+wrongCredential)
				}
				v = strings.Join(cs, "; ")
			case strings.Contains(v, " "):
				scheme, _, _ := strings.Cut(v, " ")
				v = scheme + " " + wrongCredential
			default:
				v = wrongCredential
			}
			out.Add(name, v)
		}
	}
	if len(onlyOrigin(out)) == len(out) {
		out.Set("Authorization", "Bearer "+wrongCredential)
	}
	return out
}

// lookalike is an origin whose host name begins with the allowed
// origin's (the run's Origin, or the proxy's own): scheme://NAME.evil.example:PORT.
func lookalike(origin, own string) string {
	if origin == "" {
		origin = own
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		u, _ = url.Parse(own)
	}
	host := u.Hostname() + "." + scenarios.EvilHost
	if p := u.Port(); p != "" {
		host = net.JoinHostPort(host, p)
	}
	return u.Scheme + "://" + host
}

// knockWords describes knock k and its header, credentials redacted.
func knockWords(k scenarios.Knock, h http.Header) string {
	var parts []string
	if host := h.Get("Host"); host != "" {
		parts = append(parts, "Host "+host)
	}
	if o := h.Get("Origin"); o != "" {
		parts = append(parts, "Origin "+o)
	}
	var creds []string
	for name := range h {
		if name != "Host" && name != "Origin" {
			creds = append(creds, name)
		}
	}
	switch {
	case len(creds) == 0:
		parts = append(parts, "no credentials")
	case k == scenarios.KnockWrongCredentials:
		parts = append(parts, "wrong values of "+strings.Join(creds, ", "))
	default:
		parts = append(parts, "the run's "+strings.Join(creds, ", "))
	}
	return fmt.Sprintf("an upgrade (%s) with %s", k, strings.Join(parts, ", "))
}
