package chromium

import (
	"github.com/execconform/execconform/internal/changes"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/scenarios"
)

// Why a session ended when the page could not say (End.Err).
var (
	// ErrTabGone: the tab was closed or crashed before its socket's
	// onclose reached us.
	ErrTabGone = errors.New("chromium: the tab is gone")
	// ErrPageGone: the tab navigated away from the page before its
	// socket's onclose reached us.
	ErrPageGone = errors.New("chromium: the page is gone (the tab navigated away)")
	// ErrBrowserGone: the browser died (or was killed) under the page.
	ErrBrowserGone = errors.New("chromium: the browser is gone")
	// ErrNoCloseFrame: the page's onclose said 1006, the browser's word
	// for a connection that ended without a close frame.
	ErrNoCloseFrame = errors.New("chromium: the connection ended without a close frame (1006)")
	// ErrReleased: Release ended the session.
	ErrReleased = errors.New("chromium: the session was released")
)

// Session is one exec session in a Chromium tab. It implements
// clients.Session; its methods are safe for concurrent use.
type Session struct {
	d       *Dialer
	b       *browser
	own     bool // b is the session's own browser
	started time.Time
	log     interface {
		Debug(string, ...any)
	}
	pageURL string // the page on the front's origin
	awayURL string // the page of another origin OwnNavigate goes to

	tab       context.Context // the tab's chromedp context
	cancelTab context.CancelFunc
	targetID  target.ID
	sendMu    sync.Mutex // keeps Send, Resize and Close in call order

	mu           sync.Mutex
	changes      changes.Changes // wakes the waiters on every change of the guarded fields
	opened       bool
	protocol     execproto.Protocol
	resp         *http.Response
	refused      *execclient.HandshakeError
	out          []byte
	outTotal     int64
	cursor       int64
	status       []byte
	bad          []string // what the page could not decode
	notes        []string // the browser's own log (Log.entryAdded): why a socket failed
	clientClosed bool     // the page called ws.close (Close, OwnWSClose)
	cause        error    // what we did to end it (AbortTCP), for End.Err
	ended        bool
	end          execclient.End
	done         chan struct{}

	releaseOnce sync.Once
	watchDone   chan struct{}
}

var _ clients.Session = (*Session)(nil)

// bindingName is the DevTools binding the page reports through.
const bindingName = "execconformEvent"

// pagePath is where the page lives on the front's origin.
const pagePath = "/.execconform/"

// awayOrigin is the other origin OwnNavigate goes to (answered through
// Fetch too: nothing resolves it).
const awayOrigin = "http://away.execconform.invalid"

func newSession(d *Dialer, b *browser, own bool, req clients.Request, started time.Time) (*Session, error) {
	if req.Front == nil {
		return nil, errors.New("chromium: Request.Front is required")
	}
	if req.Front.Scheme != "http" && req.Front.Scheme != "https" {
		return nil, fmt.Errorf("chromium: front %s: want http or https", req.Front.Redacted())
	}
	if tr := req.Case.Transport; tr != "" && tr != execproto.TransportWebSocket {
		return nil, clients.Unsupported(scenarios.ClientChromium, "speak "+string(tr))
	}
	if p := req.Case.Protocol; p != "" && p != execproto.ProtocolBase64 {
		return nil, clients.Unsupported(scenarios.ClientChromium, "negotiate "+p.String()+" (it offers base64.channel.k8s.io only)")
	}
	log := d.log
	if req.Logger != nil {
		log = req.Logger.With("component", "chromium")
	}
	origin := req.Front.Scheme + "://" + req.Front.Host
	s := &Session{
		d: d, b: b, own: own, started: started, log: log,
		pageURL:   origin + strings.TrimSuffix(req.Front.Path, "/") + pagePath + "client.html",
		awayURL:   awayOrigin + "/away.html",
		end:       execclient.End{ServerCloseCode: -1},
		done:      make(chan struct{}),
		watchDone: make(chan struct{}),
	}
	return s, nil
}

// open makes the tab, serves it the page, sets the cookies and opens the
// socket; it returns once the socket is open or has failed.
func (s *Session) open(ctx context.Context, req clients.Request) error {
	s.tab, s.cancelTab = chromedp.NewContext(s.b.ctx,
		chromedp.WithNewBrowserContext(), chromedp.WithListener(s.onEvent))
	// The first Do attaches the tab and binds the tab's life to the
	// context it is given: the tab's own; ctx bounds it from outside.
	attached := make(chan error, 1)
	go func() { attached <- chromedp.Do(s.tab) }()
	var err error
	select {
	case err = <-attached:
	case <-ctx.Done():
		s.cancelTab()
		if err = <-attached; err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		close(s.watchDone)
		return fmt.Errorf("chromium: open a tab: %w", err)
	}
	s.targetID = chromedp.FromContext(s.tab).Target.TargetID
	detached, err := chromedp.Detached(s.tab)
	if err != nil {
		close(s.watchDone)
		return fmt.Errorf("chromium: %w", err)
	}
	go s.watch(detached)

	pattern := func(u string) *fetch.RequestPattern {
		return &fetch.RequestPattern{URLPattern: u + "*", RequestStage: fetch.RequestStageRequest}
	}
	steps := []struct {
		what string
		do   func(context.Context) error
	}{
		{"add the binding", func(c context.Context) error {
			_, err := chromedp.Call(c, runtime.AddBinding, runtime.AddBindingParams{Name: bindingName})
			return err
		}},
		{"serve the page (Fetch.enable)", func(c context.Context) error {
			_, err := chromedp.Call(c, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
				pattern(strings.TrimSuffix(s.pageURL, "client.html")), pattern(awayOrigin + "/"),
			}})
			return err
		}},
		{"hear the browser's own messages (Log.enable)", func(c context.Context) error {
			_, err := chromedp.Call(c, cdplog.Enable, cdp.Empty{})
			return err
		}},
		{"watch the handshake (Network.enable)", func(c context.Context) error {
			_, err := chromedp.Call(c, network.Enable, network.EnableParams{})
			return err
		}},
		{"set the cookies", func(c context.Context) error { return s.setCookies(c, req) }},
		{"load the page", func(c context.Context) error { return chromedp.Do(c, chromedp.Navigate(s.pageURL)) }},
	}
	if req.Front.Scheme == "https" {
		// The browser cannot take req.TLS: it accepts the front's
		// certificate whatever it is (every tab of the browser).
		steps = append([]struct {
			what string
			do   func(context.Context) error
		}{{"accept the front's certificate", func(c context.Context) error {
			return ignoreCertErrors(c)
		}}}, steps...)
	}
	for _, st := range steps {
		if err := s.step(ctx, st.what, st.do); err != nil {
			return err
		}
	}

	u := *req.Front
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	er := execproto.ExecRequest{Namespace: req.Namespace, Pod: req.Pod, Container: req.Container, Command: req.Command,
		Stdin: true, Stdout: true, Stderr: true, TTY: req.Case.TTY}
	u.Path = strings.TrimSuffix(u.Path, "/") + er.Path()
	u.RawQuery = er.Query().Encode()
	u.User = nil
	offer := []string{string(execproto.ProtocolBase64)}
	if req.APIToken != "" {
		offer = append(offer, execproto.BearerProtocol(req.APIToken))
	}
	// The expression holds the token: it is never logged.
	if err := s.step(ctx, "open the WebSocket", func(c context.Context) error {
		return s.call(c, "execconform.open", u.String(), offer)
	}); err != nil {
		return err
	}
	if err := s.wait(ctx, func() bool { return s.opened || s.ended }); err != nil {
		return fmt.Errorf("chromium: the WebSocket did not open: %w", err)
	}
	s.mu.Lock()
	opened := s.opened
	s.mu.Unlock()
	if !opened {
		// The browser's log says why (a refused upgrade's status); it is
		// another event stream than the page's onclose, which can come
		// first.
		lctx, cancel := context.WithTimeout(ctx, refusalLogWait)
		_ = s.wait(lctx, func() bool { return s.refused != nil || len(s.notes) > 0 })
		cancel()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened {
		s.log.Debug("chromium: open", "protocol", s.protocol, "took", time.Since(s.started))
		return nil
	}
	if s.refused != nil {
		return s.refused
	}
	return fmt.Errorf("chromium: the WebSocket did not open: %s (the browser said: %s)", s.end, strings.Join(s.notes, "; "))
}

// refusalLogWait bounds the wait for the browser's word on a socket that
// did not open, once the page said so.
const refusalLogWait = time.Second

// step runs one DevTools step in the tab, bounded by ctx, naming it in
// the error.
func (s *Session) step(ctx context.Context, what string, f func(context.Context) error) error {
	c, cancel := s.bound(ctx)
	defer cancel()
	if err := f(c); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err() // the caller's bound, not the tab's cancel
		}
		return fmt.Errorf("chromium: %s: %w", what, err)
	}
	return nil
}

// bound is the tab's context, also ended by ctx: a chromedp call needs
// the tab's context, the caller's ctx bounds it.
func (s *Session) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(s.tab)
	stop := context.AfterFunc(ctx, cancel)
	return c, func() { stop(); cancel() }
}

// setCookies sets the cookies of req's Cookie header for the front's URL,
// in the tab's own browser context.
func (s *Session) setCookies(ctx context.Context, req clients.Request) error {
	u := req.Front.Scheme + "://" + req.Front.Host + "/"
	secure := req.Front.Scheme == "https"
	for _, c := range (&http.Request{Header: req.Header}).Cookies() {
		if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
			Name: c.Name, Value: c.Value, URL: u, Path: "/", Secure: &secure,
		}); err != nil {
			return fmt.Errorf("cookie %q: %w", c.Name, err) // the name only
		}
	}
	return nil
}

// call calls a function of the page with JSON arguments and waits for it
// to return; an exception is the error.
func (s *Session) call(ctx context.Context, fn string, args ...any) error {
	if args == nil {
		args = []any{}
	}
	js, err := json.Marshal(args)
	if err != nil {
		return err
	}
	expr := fn + "(..." + string(js) + ")"
	res, err := chromedp.Call(ctx, runtime.Evaluate, runtime.EvaluateParams{Expression: expr})
	if err != nil {
		return err
	}
	if ex := res.ExceptionDetails; ex != nil {
		text := ex.Text
		if ex.Exception != nil && ex.Exception.Description != "" {
			text = ex.Exception.Description
		}
		return fmt.Errorf("%s: %s", fn, firstLine(text))
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// onEvent is the tab's listener: it runs in the tab's read loop, in the
// order the browser sent the events, and must return fast.
func (s *Session) onEvent(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventBindingCalled:
		if ev.Name == bindingName {
			s.pageEvent(ev.Payload)
		}
	case *network.EventWebSocketHandshakeResponseReceived:
		s.handshake(ev.Response)
	case *fetch.EventRequestPaused:
		go s.serve(ev)
	case *page.EventFrameNavigated:
		if f := ev.Frame; f != nil && f.ParentID == "" && f.URL != s.pageURL {
			// The page is gone (unloaded, or in the back/forward
			// cache): its onclose will never reach us.
			s.mu.Lock()
			why := ErrPageGone
			if s.cause != nil {
				why = s.cause
			}
			s.finishLocked(execclient.End{ServerCloseCode: -1, Err: why, At: time.Since(s.started)})
			s.mu.Unlock()
		}
	case *cdplog.EventEntryAdded:
		if e := ev.Entry; e != nil {
			s.mu.Lock()
			s.notes = append(s.notes, execproto.Redact(string(e.Source)+": "+firstLine(e.Text)))
			if code := refusedCode(e.Text); code != 0 && s.refused == nil && !s.opened {
				s.refused = &execclient.HandshakeError{StatusCode: code, Body: "(the browser shows no body; it said: " + execproto.Redact(firstLine(e.Text)) + ")"}
			}
			s.notify()
			s.mu.Unlock()
			s.log.Debug("chromium: browser log", "source", e.Source, "text", execproto.Redact(firstLine(e.Text)))
		}
	}
}

// event is what the page reports (client.js, emit).
type event struct {
	T        string `json:"t"`
	Protocol string `json:"protocol"`
	Ch       int    `json:"ch"`
	Data     string `json:"data"` // bytes as char codes 0-255
	Code     int    `json:"code"`
	Reason   string `json:"reason"`
	Clean    bool   `json:"clean"`
	Why      string `json:"why"`
}

// pageEvent records one event of the page.
func (s *Session) pageEvent(payload string) {
	var ev event
	if err := json.Unmarshal([]byte(payload), &ev); err != nil {
		s.mu.Lock()
		s.bad = append(s.bad, "an event that does not parse: "+err.Error())
		s.mu.Unlock()
		return
	}
	at := time.Since(s.started)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	switch ev.T {
	case "open":
		s.opened, s.protocol = true, execproto.Protocol(ev.Protocol)
		if s.resp == nil {
			s.resp = &http.Response{StatusCode: http.StatusSwitchingProtocols, Header: http.Header{}}
		}
	case "msg":
		b := latin1(ev.Data)
		switch byte(ev.Ch) {
		case execproto.StreamStdout, execproto.StreamStderr:
			s.out = append(s.out, b...)
			s.outTotal += int64(len(b))
			if len(s.out) > 2*execclient.MaxOutput {
				s.out = append([]byte(nil), s.out[len(s.out)-execclient.MaxOutput:]...)
			}
		case execproto.StreamError:
			if len(b) > 0 && s.status == nil {
				s.status = b
			}
		default:
			s.bad = append(s.bad, fmt.Sprintf("a message on channel %d", ev.Ch))
		}
	case "bad":
		s.bad = append(s.bad, ev.Why)
	case "error":
		// onclose follows, with the code.
	case "close":
		end := execclient.End{ServerCloseCode: ev.Code, ServerCloseReason: ev.Reason, At: at}
		if ev.Code == 1006 {
			end.ServerCloseCode = -1
			end.Err = ErrNoCloseFrame
		} else {
			end.ServerClosedFirst = !s.clientClosed
		}
		if s.cause != nil {
			end.Err = s.cause
		}
		s.finishLocked(end)
		return
	}
	s.notify()
}

// refusedCode is the status of a refused upgrade as the browser's log
// says it: DevTools reports no handshake response for one (measured:
// neither for a 401 nor for a 404), only this message.
func refusedCode(text string) int {
	if strings.Contains(text, "HTTP Authentication failed") {
		return http.StatusUnauthorized // a 401 with WWW-Authenticate: the browser found no credentials
	}
	if m := unexpectedCode.FindStringSubmatch(text); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

var unexpectedCode = regexp.MustCompile(`Unexpected response code: (\d{3})`)

// latin1 turns a string of char codes 0-255 back into its bytes.
func latin1(s string) []byte {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		b = append(b, byte(r))
	}
	return b
}

// handshake records the upgrade's answer as the browser saw it. Its
// request headers (cookies, the bearer subprotocol) are never kept.
func (s *Session) handshake(r *network.WebSocketResponse) {
	if r == nil {
		return
	}
	h := http.Header{}
	for k, v := range r.Headers {
		if strings.EqualFold(k, "Set-Cookie") {
			continue
		}
		for _, line := range strings.Split(fmt.Sprint(v), "\n") {
			h.Add(k, line)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Status == http.StatusSwitchingProtocols {
		s.resp = &http.Response{StatusCode: int(r.Status), Status: fmt.Sprintf("%d %s", r.Status, r.StatusText), Header: h}
	} else {
		s.refused = &execclient.HandshakeError{StatusCode: int(r.Status), Header: h}
	}
	s.notify()
}

// serve answers a request of the page from here: the page itself, its
// script, and the page of the other origin. Anything else under those
// prefixes fails as blocked.
func (s *Session) serve(ev *fetch.EventRequestPaused) {
	ctx, cancel := context.WithTimeout(s.tab, stepTimeout)
	defer cancel()
	body, ctype, ok := pageFile(ev.Request.URL, s.pageURL, s.awayURL)
	var err error
	if !ok {
		_, err = chromedp.Call(ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonBlockedByClient})
	} else {
		_, err = chromedp.Call(ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{
			RequestID: ev.RequestID, ResponseCode: 200, Body: body,
			ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: ctype}},
		})
	}
	if err != nil && s.tab.Err() == nil {
		s.log.Debug("chromium: serve the page", "err", err)
	}
}

// stepTimeout bounds a DevTools step that no caller's context bounds.
const stepTimeout = 10 * time.Second

// watch ends the session when the tab or the browser goes away first.
func (s *Session) watch(detached <-chan struct{}) {
	defer close(s.watchDone)
	var why error
	select {
	case <-detached:
		why = ErrTabGone
	case <-s.tab.Done():
		why = ErrBrowserGone
	case <-s.done:
		return
	}
	if s.b.ctx.Err() != nil {
		why = ErrBrowserGone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cause != nil {
		why = s.cause
	}
	s.finishLocked(execclient.End{ServerCloseCode: -1, Err: why, At: time.Since(s.started)})
}

// finishLocked fixes the end. s.mu must be held.
func (s *Session) finishLocked(end execclient.End) {
	if s.ended {
		return
	}
	s.ended, s.end = true, end
	s.notify()
	close(s.done)
	s.log.Debug("chromium: ended", "end", end.String())
}

// notify wakes every waiter. s.mu must be held.
func (s *Session) notify() {
	s.changes.Notify()
}

// wait blocks until cond (called with s.mu held) is true or ctx ends; it
// wakes on every change, never polls.
func (s *Session) wait(ctx context.Context, cond func() bool) error {
	return s.changes.Wait(ctx, &s.mu, cond)
}

// Transport is TransportWebSocket.
func (s *Session) Transport() execproto.Transport { return execproto.TransportWebSocket }

// Protocol is ws.protocol as the page saw it.
func (s *Session) Protocol() execproto.Protocol {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.protocol
}

// Response is the upgrade's answer as DevTools reported it (status and
// response headers; no body), or a bare 101 if it reported none.
func (s *Session) Response() *http.Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resp
}

// Started is when Dial was called (a browser of the session's own
// started after it).
func (s *Session) Started() time.Time { return s.started }

// Done is closed when the session has ended: the page's onclose, or the
// tab or the browser gone.
func (s *Session) Done() <-chan struct{} { return s.done }

// End tells how the session ended (valid once Done is closed). From the
// page's onclose: ServerCloseCode is its code (-1 for 1006, no close
// frame), ServerClosedFirst unless the page had called ws.close, Err
// ErrNoCloseFrame for 1006; without one: Err ErrTabGone,
// ErrBrowserGone, execclient.ErrAborted after AbortTCP.
func (s *Session) End() execclient.End {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

// BadInput is what the page could not decode (binary messages, bad
// base64, unknown channels).
func (s *Session) BadInput() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bad...)
}

// live returns ErrEnded once the session has ended.
func (s *Session) live() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return fmt.Errorf("%w (%s)", execclient.ErrEnded, s.end)
	}
	return nil
}

// Send writes data on an exec stream: the page encodes it
// ('0'+stream, then base64) and sends it. It returns once the page has
// handed it to its WebSocket.
func (s *Session) Send(stream byte, data []byte) error {
	if err := s.live(); err != nil {
		return err
	}
	runes := make([]rune, len(data))
	for i, c := range data {
		runes[i] = rune(c)
	}
	return s.pageCall("execconform.send", int(stream), string(runes))
}

// pageCall is call under sendMu, bounded by stepTimeout.
func (s *Session) pageCall(fn string, args ...any) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	ctx, cancel := context.WithTimeout(s.tab, stepTimeout)
	defer cancel()
	if err := s.call(ctx, fn, args...); err != nil {
		if s.live() != nil {
			return s.live()
		}
		return fmt.Errorf("chromium: %w", err)
	}
	return nil
}

// Type sends s on stdin.
func (s *Session) Type(text string) error { return s.Send(execproto.StreamStdin, []byte(text)) }

// Resize sends the terminal size on channel 4, as JSON, as consoles do.
func (s *Session) Resize(width, height uint16) error {
	if err := s.live(); err != nil {
		return err
	}
	return s.pageCall("execconform.resize", width, height)
}

// CloseStdin is unsupported: a browser's WebSocket has no half-close,
// and base64.channel.k8s.io no CLOSE signal.
func (s *Session) CloseStdin() error {
	return clients.Unsupported(scenarios.ClientChromium, "half-close stdin")
}

// Expect waits until substr appears in stdout+stderr after the previous
// match, as execclient's Expect does (the cursor moves to the end of the
// match; it wakes on each arrival).
func (s *Session) Expect(ctx context.Context, substr string) error {
	want := []byte(substr)
	var from int64
	found := false
	err := s.wait(ctx, func() bool {
		base := s.outTotal - int64(len(s.out))
		from = max(from, s.cursor, base)
		if i := indexOf(s.out[from-base:], want); i >= 0 {
			s.cursor = from + int64(i) + int64(len(want))
			found = true
			return true
		}
		from = max(from, s.outTotal-int64(len(want))+1)
		return s.ended
	})
	if found {
		return nil
	}
	s.mu.Lock()
	t, end := string(s.out[max(0, len(s.out)-tailLen):]), s.end
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("chromium: Expect %q: %w; output tail: %q", substr, err, t)
	}
	return fmt.Errorf("chromium: Expect %q: %w (%s); output tail: %q", substr, execclient.ErrEnded, end, t)
}

// tailLen is how much output an Expect error quotes.
const tailLen = 512

func indexOf(b, sub []byte) int { return strings.Index(string(b), string(sub)) }

// Status waits for the text on the error channel and parses it: ok is
// false if the session ended without one (base64.channel.k8s.io sends
// one only on failure).
func (s *Session) Status(ctx context.Context) (execproto.Status, bool, error) {
	if err := s.wait(ctx, func() bool { return s.status != nil || s.ended }); err != nil {
		return execproto.Status{}, false, fmt.Errorf("chromium: Status: %w", err)
	}
	s.mu.Lock()
	raw, p := s.status, s.protocol
	s.mu.Unlock()
	if raw == nil {
		return execproto.Status{}, false, nil
	}
	st, err := execproto.ParseStatus(p, raw)
	return st, true, err
}

// Output is the tail of stdout+stderr received so far.
func (s *Session) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.out[max(0, len(s.out)-execclient.MaxOutput):])
}

// Close calls ws.close(code, reason) in the page (code 1005: ws.close()
// with neither, a close frame without status) and waits for onclose,
// bounded by ctx. ReplyCode is onclose's code (the server's close frame;
// -1 for 1006); Replied that there was one; TCPClosedByPeer is onclose's
// wasClean (the browser does not tell more).
func (s *Session) Close(ctx context.Context, code int, reason string) (*execclient.CloseResult, error) {
	start := time.Now()
	s.mu.Lock()
	if s.ended || s.clientClosed {
		s.mu.Unlock()
		return nil, fmt.Errorf("chromium: Close: %w", execclient.ErrEnded)
	}
	s.clientClosed = true
	s.mu.Unlock()
	var err error
	if code == 1005 {
		err = s.pageCall("execconform.close")
	} else {
		err = s.pageCall("execconform.close", code, reason)
	}
	if err != nil {
		return nil, fmt.Errorf("chromium: Close: %w", err)
	}
	werr := s.wait(ctx, func() bool { return s.ended })
	s.mu.Lock()
	defer s.mu.Unlock()
	res := &execclient.CloseResult{ReplyCode: -1, Elapsed: time.Since(start)}
	if s.ended && s.end.ServerCloseCode >= 0 {
		res.Replied, res.ReplyCode, res.ReplyReason = true, s.end.ServerCloseCode, s.end.ServerCloseReason
		res.TCPClosedByPeer = s.end.Err == nil
	}
	if werr != nil {
		return res, fmt.Errorf("chromium: Close: %w", werr)
	}
	return res, nil
}

// AbortTCP drops the connection without a close frame the only way a
// browser can: it dies. Every process of the session's own browser gets
// SIGKILL (the kernel then closes the socket: a FIN, as measured, unless
// unread data makes it a RST). End.Err is execclient.ErrAborted. A
// session in the shared browser cannot (OwnBrowser).
func (s *Session) AbortTCP() error {
	return s.kill(execclient.ErrAborted, "drop TCP (client-tcp-fin) in the shared browser")
}

// Reset is AbortTCP: a browser cannot send a RST on demand; what its
// death sends is what the kernel decides.
func (s *Session) Reset() error {
	return s.kill(execclient.ErrAborted, "reset TCP in the shared browser")
}

func (s *Session) kill(cause error, what string) error {
	if !s.own {
		return clients.Unsupported(scenarios.ClientChromium, what+": only a session with a browser of its own can (OwnBrowser)")
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return execclient.ErrEnded
	}
	s.cause = cause
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), browserExitWait)
	defer cancel()
	return s.b.killTree(ctx)
}

// Freeze cannot be done by a browser: a page cannot stop its socket's
// reading. It does nothing (the contract gives it no error to return);
// no chromium case asks for it.
func (s *Session) Freeze() {
	s.log.Debug("chromium: Freeze is unsupported: nothing done")
}

// EndAs ends the session as a user or the browser does (the chromium
// spec's Named endings):
//
//   - OwnTabClose: Target.closeTarget of the tab;
//   - OwnNavigate: the tab navigates to a page of another origin (with
//     the back/forward cache off unless Options.BackForwardCache);
//   - OwnWSClose: ws.close() with neither code nor reason (a close frame
//     without status: 1005);
//   - OwnBrowserKill: SIGKILL of the browser's main process;
//   - OwnBrowserTree: SIGKILL of every process of the browser;
//   - OwnOffline: the tab's network goes offline
//     (Network.emulateNetworkConditions).
//
// The two kills need a browser of the session's own (OwnBrowser). EndAs
// returns once the ending is done, not once the session has ended.
func (s *Session) EndAs(ctx context.Context, ending string) error {
	if err := s.live(); err != nil {
		return err
	}
	switch ending {
	case scenarios.OwnTabClose:
		return s.step(ctx, "close the tab", func(c context.Context) error {
			_, err := chromedp.CallBrowser(c, target.CloseTarget, target.CloseTargetParams{TargetID: s.targetID})
			return err
		})
	case scenarios.OwnNavigate:
		return s.step(ctx, "navigate away", func(c context.Context) error {
			return chromedp.Do(c, chromedp.Navigate(s.awayURL))
		})
	case scenarios.OwnWSClose:
		s.mu.Lock()
		s.clientClosed = true
		s.mu.Unlock()
		return s.pageCall("execconform.close")
	case scenarios.OwnBrowserKill, scenarios.OwnBrowserTree:
		if !s.own {
			return clients.Unsupported(scenarios.ClientChromium, ending+" in the shared browser (OwnBrowser)")
		}
		if ending == scenarios.OwnBrowserKill {
			return s.b.killMain()
		}
		return s.b.killTree(ctx)
	case scenarios.OwnOffline:
		return s.step(ctx, "go offline", goOffline)
	}
	return clients.Unsupported(scenarios.ClientChromium, "end as "+ending)
}

// Release closes the tab (or ends the session's own browser) and waits
// for it; the session ends with ErrReleased if it had not ended. Safe to
// call twice.
func (s *Session) Release() {
	s.releaseOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), browserExitWait)
		defer cancel()
		s.mu.Lock()
		if s.cause == nil {
			s.cause = ErrReleased
		}
		s.mu.Unlock()
		if s.own {
			if err := s.b.close(ctx); err != nil {
				s.log.Debug("chromium: release the browser", "err", err)
			}
		}
		if s.cancelTab != nil {
			// Closes the tab and disposes of its browser context, and
			// waits for the tab to be gone.
			if err := chromedp.Cancel(s.tab); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Debug("chromium: close the tab", "err", err)
			}
			s.cancelTab()
		}
		<-s.watchDone
		s.mu.Lock()
		s.finishLocked(execclient.End{ServerCloseCode: -1, Err: s.cause, At: time.Since(s.started)})
		s.mu.Unlock()
		s.d.forget(s)
	})
}

// BrowserPID is the PID of the main process of the session's browser
// (the shared one, or its own).
func (s *Session) BrowserPID() int { return s.b.pid }

// OwnsBrowser says whether the session has a browser of its own.
func (s *Session) OwnsBrowser() bool { return s.own }
