package chromium

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/scenarios"
)

// pinger is a WebSocket server that speaks just enough
// base64.channel.k8s.io for the page, pings every pingEvery and records
// the pongs and the data it gets: what the fake API server cannot tell
// (it never pings).
type pinger struct {
	srv *httptest.Server
	up  websocket.Upgrader

	mu      sync.Mutex
	changed chan struct{}
	pongs   []time.Time
	got     []string // stdin the page sent
	readErr error    // how reading ended
	ended   time.Time
	conn    *websocket.Conn
}

const pingEvery = 500 * time.Millisecond

func newPinger(t *testing.T) *pinger {
	p := &pinger{changed: make(chan struct{}), up: websocket.Upgrader{
		Subprotocols: []string{string(execproto.ProtocolBase64)},
		CheckOrigin:  func(*http.Request) bool { return true },
	}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *pinger) serve(w http.ResponseWriter, r *http.Request) {
	c, err := p.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetPongHandler(func(string) error {
		p.update(func() { p.pongs = append(p.pongs, time.Now()) })
		return nil
	})
	var wmu sync.Mutex
	p.update(func() { p.conn = c })
	write := func(typ int, b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		if typ == websocket.PingMessage {
			return c.WriteControl(typ, b, time.Now().Add(time.Second))
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		return c.WriteMessage(typ, b)
	}
	_ = write(websocket.TextMessage, []byte("1"))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(pingEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = write(websocket.PingMessage, nil)
			}
		}
	}()
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			p.update(func() { p.readErr, p.ended = err, time.Now() })
			return
		}
		p.update(func() { p.got = append(p.got, string(b)) })
	}
}

// sendOutput writes "1"+base64(s) to the page.
func (p *pinger) sendOutput(s string) error {
	p.mu.Lock()
	c := p.conn
	p.mu.Unlock()
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	return c.WriteMessage(websocket.TextMessage, []byte("1"+b64(s)))
}

func (p *pinger) update(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
	close(p.changed)
	p.changed = make(chan struct{})
}

// waitFor waits until cond (under p.mu) holds or ctx ends.
func (p *pinger) waitFor(ctx context.Context, cond func() bool) bool {
	for {
		p.mu.Lock()
		ok, ch := cond(), p.changed
		p.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// pongsSince counts the pongs after t.
func (p *pinger) pongsSince(t time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, at := range p.pongs {
		if at.After(t) {
			n++
		}
	}
	return n
}

func (p *pinger) front(t *testing.T) *url.URL {
	u, err := url.Parse(p.srv.URL)
	require.NoError(t, err)
	return u
}

func b64(s string) string {
	return base64.StdEncoding.EncodeToString([]byte(s))
}

func browserOrSkip(t *testing.T) string {
	t.Helper()
	p, err := FindBrowser()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v; CI must install one", err)
		}
		t.Skip(err)
	}
	return p
}

func pingRequest(front *url.URL, end scenarios.End) clients.Request {
	return clients.Request{
		Case:  scenarios.Case{Scenario: &scenarios.Scenario{Name: "ping", End: end}, Protocol: execproto.ProtocolBase64, TTY: true},
		Front: front, Namespace: "default", Pod: "web", Container: "c", Command: []string{"sh"},
	}
}

// TestOfflineKeepsTheSocket measures what DevTools' offline emulation
// (Network.emulateNetworkConditions offline) does to an open socket, for 3 s
// (10 s with -measure-long), in three cases: idle, the page sending, the
// server sending. Measured (Chromium 156, 10 s each): the socket stays
// open (no close frame, no FIN, onclose never fires) and data frames are
// held both ways; pings are still answered (the network service answers
// them below the emulation) until a data frame from the server is held:
// then the reading stalls and pings go unanswered. So an idle offline tab
// looks alive to a proxy's keepalive for ever; one the shell writes to is
// found by it (TestThroughReferenceProxy/offline).
func TestOfflineKeepsTheSocket(t *testing.T) {
	d, err := New(Options{ExecPath: browserOrSkip(t)})
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Close()) }()
	window := 3 * time.Second
	if *measureLong {
		window = 10 * time.Second
	}
	for _, c := range []struct {
		name      string
		send      func(s *Session, p *pinger) error
		wantPongs bool
	}{
		{"idle", nil, true},
		{"page-sends", func(s *Session, _ *pinger) error { return s.Type("offline\r") }, true},
		{"server-sends", func(_ *Session, p *pinger) error { return p.sendOutput("while-offline") }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPinger(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := d.DialSession(ctx, pingRequest(p.front(t), scenarios.End{Kind: scenarios.EndClientOwn, As: scenarios.OwnOffline}))
			require.NoError(t, err)
			defer s.Release()

			// Online: pongs come, data passes both ways.
			require.True(t, p.waitFor(ctx, func() bool { return len(p.pongs) >= 2 }), "pongs while online")
			require.NoError(t, s.Type("online\r"))
			require.True(t, p.waitFor(ctx, func() bool { return len(p.got) > 0 }), "stdin while online")
			require.NoError(t, p.sendOutput("hello"))
			require.NoError(t, s.Expect(ctx, "hello"))

			require.NoError(t, s.EndAs(ctx, scenarios.OwnOffline))
			off := time.Now()
			if c.send != nil {
				require.NoError(t, c.send(s, p))
			}
			wctx, wcancel := context.WithTimeout(ctx, window)
			ended := p.waitFor(wctx, func() bool { return p.readErr != nil })
			wcancel()
			p.mu.Lock()
			stdinPassed, readErr := len(p.got) > 1, p.readErr
			p.mu.Unlock()
			// A pong in flight at the switch may still land.
			pongs := p.pongsSince(off.Add(pingEvery))
			ectx, ecancel := context.WithTimeout(ctx, 100*time.Millisecond)
			outputPassed := s.Expect(ectx, "while-offline") == nil
			ecancel()
			pageEnded := false
			select {
			case <-s.Done():
				pageEnded = true
			default:
			}
			t.Logf("offline for %v: server read ended: %v (%v); pongs (a ping every %v): %d; stdin passed: %v; output passed: %v; the page's socket ended: %v",
				time.Since(off).Round(time.Millisecond), ended, readErr, pingEvery, pongs, stdinPassed, outputPassed, pageEnded)
			assert.False(t, ended, "the server's read ended while offline: %v", readErr)
			assert.False(t, pageEnded, "the page's socket ended while offline: %s", s.End())
			assert.False(t, stdinPassed, "stdin passed while offline")
			assert.False(t, outputPassed, "output passed while offline")
			if c.wantPongs {
				assert.GreaterOrEqual(t, pongs, int(window/pingEvery)-3, "pongs while offline")
			} else {
				assert.Zero(t, pongs, "pongs while offline, with output held")
			}
		})
	}
}

// measureLong makes the measures of what lasts run as long as their
// question says (20 s in the back/forward cache), not the few seconds that
// show the same in a routine run.
var measureLong = flag.Bool("measure-long", false, "run the long measures for their full length")

// TestBackForwardCacheNavigation measures a navigation away with the
// back/forward cache on, for 5 s (20 s with -measure-long). The claim to
// check: the page goes into the cache and keeps its socket open,
// answering pings. Measured (Chromium 156): true, for a page whose
// response has no Cache-Control: no-store (20 s: 38 pongs of 40 pings,
// no close frame, no FIN); then going back restores the page from the
// cache, and the socket gets a close frame 1001 within about 25 ms. With
// no-store the page is not cached ("MainResourceHasCacheControlNoStore,
// WebSocketUsedWithCCNS") and the socket gets 1001 at once, as with the
// cache off.
func TestBackForwardCacheNavigation(t *testing.T) {
	d, err := New(Options{ExecPath: browserOrSkip(t), BackForwardCache: true})
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Close()) }()
	p := newPinger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := d.DialSession(ctx, pingRequest(p.front(t), scenarios.End{Kind: scenarios.EndClientOwn, As: scenarios.OwnNavigate}))
	require.NoError(t, err)
	defer s.Release()
	require.True(t, p.waitFor(ctx, func() bool { return len(p.pongs) >= 1 }), "pongs before the navigation")

	notUsed := chromedp.Events(s.tab, page.BackForwardCacheNotUsed)
	require.NoError(t, s.EndAs(ctx, scenarios.OwnNavigate))
	away := time.Now()
	window := 5 * time.Second
	if *measureLong {
		window = 20 * time.Second
	}
	wctx, wcancel := context.WithTimeout(ctx, window)
	ended := p.waitFor(wctx, func() bool { return p.readErr != nil })
	wcancel()
	p.mu.Lock()
	readErr, endedAt := p.readErr, p.ended
	p.mu.Unlock()
	var code int
	var ce *websocket.CloseError
	if errors.As(readErr, &ce) {
		code = ce.Code
	}
	pongs := p.pongsSince(away.Add(2 * pingEvery))

	if ended {
		t.Logf("bfcache on, navigated away: the server's read ended after %v: close code %d (%v); pongs after it: %d",
			endedAt.Sub(away).Round(time.Millisecond), code, readErr, pongs)
	} else {
		t.Logf("bfcache on, navigated away: the socket stayed open for %v; pongs answered after the first %v: %d",
			time.Since(away).Round(time.Millisecond), 2*pingEvery, pongs)
	}

	// Back: was the page restored from the cache, and if not, why not?
	navigated := chromedp.Events(s.tab, page.FrameNavigated)
	bctx, bcancel := context.WithTimeout(s.tab, 10*time.Second)
	defer bcancel()
	backAt := time.Now()
	hist, err := chromedp.Call(bctx, page.GetNavigationHistory, cdp.Empty{})
	require.NoError(t, err)
	require.Positive(t, hist.CurrentIndex)
	_, err = chromedp.Call(bctx, page.NavigateToHistoryEntry, page.NavigateToHistoryEntryParams{EntryID: hist.Entries[hist.CurrentIndex-1].ID})
	require.NoError(t, err)
	back := "?"
	nu := make(chan string, 2)
	go func() {
		for ev, err := range notUsed {
			if err != nil {
				return
			}
			var rs []string
			for _, r := range ev.NotRestoredExplanations {
				rs = append(rs, string(r.Reason))
			}
			nu <- "not restored from the cache: " + joinOr(rs)
			return
		}
	}()
	go func() {
		for ev, err := range navigated {
			if err != nil {
				return
			}
			if ev.Frame != nil && ev.Frame.ParentID == "" {
				nu <- "frameNavigated " + string(ev.Type)
				return
			}
		}
	}()
	select {
	case back = <-nu:
	case <-bctx.Done():
	}
	restored := back == "frameNavigated "+string(page.NavigationTypeBackForwardCacheRestore)
	t.Logf("back: %s", back)
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	p.waitFor(rctx, func() bool { return p.readErr != nil })
	rcancel()
	p.mu.Lock()
	readErr, endedAt = p.readErr, p.ended
	p.mu.Unlock()
	t.Logf("after the restore, the server's read: %v, %v after going back; pongs in all since the navigation: %d", readErr, endedAt.Sub(backAt).Round(time.Millisecond), p.pongsSince(away))
	assert.True(t, restored, "back: %s", back)
	var ce2 *websocket.CloseError
	if assert.ErrorAs(t, readErr, &ce2, "the socket after the restore") {
		assert.Equal(t, websocket.CloseGoingAway, ce2.Code, "the close code after the restore")
	}
}

func joinOr(rs []string) string {
	if len(rs) == 0 {
		return "(no reason given)"
	}
	out := rs[0]
	for _, r := range rs[1:] {
		out += ", " + r
	}
	return out
}
