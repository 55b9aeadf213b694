package chromium_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients/chromium"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/scenarios"
)

// wireEnd is what an ending put on the wire, as the API server saw it.
type wireEnd struct {
	FirstBy    string // who sent a close frame first ("" nobody)
	ClientCode int    // the browser's close code (0: it sent none)
	TCP        string // how TCP ended (fakeapiserver.TCP*)
	Open       bool   // the WebSocket was still open at the end of the measure
}

func (w wireEnd) String() string {
	if w.Open {
		return "still open"
	}
	code := "no close frame"
	if w.ClientCode != 0 {
		code = fmt.Sprintf("close %d first by %s", w.ClientCode, w.FirstBy)
	}
	return code + ", TCP " + w.TCP
}

// ending is one way a page's session ends, and what Chromium was
// measured to put on the wire for it (Chromium 156, Linux).
type ending struct {
	name string
	end  scenarios.End
	do   func(ctx context.Context, s *chromium.Session) error
	want wireEnd
	// within bounds the wait for the API server to see the end; a
	// measure of an ending that leaves the socket open waits it out.
	within time.Duration
}

func endAs(name string) func(ctx context.Context, s *chromium.Session) error {
	return func(ctx context.Context, s *chromium.Session) error { return s.EndAs(ctx, name) }
}

func closeWith(code int) func(ctx context.Context, s *chromium.Session) error {
	return func(ctx context.Context, s *chromium.Session) error {
		_, err := s.Close(ctx, code, "")
		return err
	}
}

// closeFirst is a close frame from the browser with code, answered, and
// TCP closed after the handshake.
func closeFirst(code int) wireEnd {
	return wireEnd{FirstBy: "client", ClientCode: code, TCP: fakeapiserver.TCPAfterClose}
}

// finOnly is TCP closed with a FIN, no close frame.
var finOnly = wireEnd{TCP: fakeapiserver.TCPEOF}

// endings, as measured on Chromium 156 (Linux, headless, the back/forward
// cache off): every ending but a dead network service sends a close frame;
// 1001 (going away) when the page goes, whatever made it go.
var endings = []ending{
	{name: "tab-close", end: own(scenarios.OwnTabClose), do: endAs(scenarios.OwnTabClose), want: closeFirst(1001)},
	{name: "navigate", end: own(scenarios.OwnNavigate), do: endAs(scenarios.OwnNavigate), want: closeFirst(1001)},
	{name: "ws-close", end: own(scenarios.OwnWSClose), do: endAs(scenarios.OwnWSClose), want: closeFirst(1005)},
	// The main process dies; the network service (a process of its own)
	// sees it go and closes its sockets with a close frame.
	{name: "browser-kill", end: own(scenarios.OwnBrowserKill), do: endAs(scenarios.OwnBrowserKill), want: closeFirst(1001)},
	// The network service dies too: the kernel closes the socket.
	{name: "browser-tree", end: own(scenarios.OwnBrowserTree), do: endAs(scenarios.OwnBrowserTree), want: finOnly},
	{name: "client-tcp-fin", end: scenarios.End{Kind: scenarios.EndClientAbort}, do: func(_ context.Context, s *chromium.Session) error { return s.AbortTCP() }, want: finOnly},
	// Nothing at all: see TestOfflineKeepsTheSocket for pings and data.
	{name: "offline", end: own(scenarios.OwnOffline), do: endAs(scenarios.OwnOffline), want: wireEnd{Open: true}, within: 2 * time.Second},
	{name: "ws.close(1000)", end: scenarios.End{Kind: scenarios.EndClientClose, Code: 1000}, do: closeWith(1000), want: closeFirst(1000)},
	{name: "ws.close(4000)", end: scenarios.End{Kind: scenarios.EndClientClose, Code: 4000}, do: closeWith(4000), want: closeFirst(4000)},
}

func own(as string) scenarios.End { return scenarios.End{Kind: scenarios.EndClientOwn, As: as} }

// TestEndingsOnTheWire measures what Chromium does on each ending, straight
// against the fake API server (no proxy: the page on the fake's origin,
// the token in the bearer subprotocol), from the fake's session recorder.
func TestEndingsOnTheWire(t *testing.T) {
	d := newDialer(t, chromium.Options{})
	fake := newFake(t)
	var table []string
	for _, e := range endings {
		t.Run(e.name, func(t *testing.T) {
			got, page := measure(t, d, fake, e)
			assert.Equal(t, e.want, got, "what the API server saw")
			table = append(table, fmt.Sprintf("| %s | %s | %s |", e.name, got, page))
		})
	}
	t.Logf("\n| ending | the API server saw | the page saw |\n|---|---|---|\n%s", strings.Join(table, "\n"))
}

// measure runs one session to e's ending and returns what the API server
// saw, and how the session ended for the page.
func measure(t *testing.T, d *chromium.Dialer, fake *fakeapiserver.Server, e ending) (wireEnd, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := request(fake.URL(), fake.Token(), true, e.end, nil)
	s, err := d.DialSession(ctx, req)
	require.NoError(t, err)
	defer s.Release()
	require.NoError(t, s.Type("echo $((40+2))\r"))
	require.NoError(t, s.Expect(ctx, "42"))
	bs := backendSession(t, fake, req)

	start := time.Now()
	require.NoError(t, e.do(ctx, s))
	within := e.within
	if within == 0 {
		within = 5 * time.Second
	}
	timer := time.NewTimer(within)
	defer timer.Stop()
	got := wireEnd{}
	select {
	case <-bs.Done():
	case <-timer.C:
		got.Open = true
	}
	rec := bs.Recorder().Close()
	if !got.Open {
		// The session is done once the close handshake is; the end of
		// its TCP connection is recorded as the tap sees it, a moment
		// later at times (seen: TCP still "open" 0.4 ms after the
		// handshake, 1 run in 3). The record raises no event: poll it,
		// bounded.
		tick := time.NewTicker(2 * time.Millisecond)
		tcpBound := time.NewTimer(2 * time.Second)
		for rec.TCP == fakeapiserver.TCPOpen {
			select {
			case <-tick.C:
				rec = bs.Recorder().Close()
				continue
			case <-tcpBound.C:
			}
			break
		}
		tick.Stop()
		tcpBound.Stop()
	}
	got.FirstBy, got.TCP = rec.FirstBy, rec.TCP
	if rec.ClientSent {
		got.ClientCode = rec.ClientCode
	}
	// The page may learn of it a little later.
	wait := 5 * time.Second
	if got.Open {
		wait = 0
	}
	page := "not ended"
	pctx, cancelPage := context.WithTimeout(ctx, wait)
	defer cancelPage()
	select {
	case <-s.Done():
		page = s.End().String()
	case <-pctx.Done():
	}
	t.Logf("%s: the API server saw %s after %v (%+v); the page: %s", e.name, got, time.Since(start).Round(time.Millisecond), rec, page)
	return got, page
}
