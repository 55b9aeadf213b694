// Package chromium drives exec sessions from headless Chromium running a
// web console's JavaScript client, so that what a real browser does when
// a page dies (its tab closes, it navigates away, the browser is killed,
// the network goes offline) reaches the proxy under test for real.
//
//	Go (Session) ──DevTools: Runtime.evaluate──▶ page FRONT/.execconform/client.html
//	     ▲                                          │ new WebSocket(exec URL,
//	     └──DevTools binding (execconformEvent)─────┘   [base64.channel.k8s.io, bearer])
//	                                                ▼
//	                                         the proxy under test ──▶ API server
//
// The page has the proxy's own origin, as a console's page does (a proxy
// checks Origin against its Host): the tab navigates to a URL on the
// front's origin, and that request is answered from here through the
// DevTools Fetch domain, so it never reaches the proxy. The front
// credential is a cookie (Network.setCookie, before the socket opens);
// the API token travels in the bearer-token subprotocol, as consoles that
// authenticate with the user's token send it.
//
// Ordinary sessions share one browser, a tab (in a browser context of its
// own: its own cookie jar) each. A session whose ending kills the browser
// (browser-kill, browser-tree, client-tcp-fin) gets a browser of its own.
//
// What Chromium 156 puts on the wire for each ending, measured against
// the fake API server (TestEndingsOnTheWire, TestOfflineKeepsTheSocket,
// TestBackForwardCacheNavigation):
//
//	tab-close          close 1001, then FIN after the handshake
//	navigate           close 1001 (back/forward cache off)
//	ws-close           close without status (1005)
//	ws.close(code)     close code (1000, 3000-4999)
//	browser-kill       close 1001: the network service outlives the main process and closes its sockets
//	browser-tree       FIN, no close frame (so is client-tcp-fin, AbortTCP)
//	offline            nothing: the socket stays open, data is held both ways,
//	                   pings are answered until data from the server is held
//	navigate, bfcache  the page stays in the cache with its socket open, answering
//	                   pings (unless its response had Cache-Control: no-store);
//	                   going back restores it and the socket gets 1001
package chromium

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/scenarios"
)

// Options configure a Dialer.
type Options struct {
	// ExecPath is the browser to run (default: FindBrowser).
	ExecPath string
	// BackForwardCache leaves the back/forward cache on. Off by default
	// (--disable-features=BackForwardCache): with it on, a page that
	// navigates away may be kept alive in the cache instead of unloaded,
	// which is not what OwnNavigate means.
	BackForwardCache bool
	// Logger receives the dialer's log lines (nil discards). Neither
	// tokens nor cookies are ever logged.
	Logger *slog.Logger
}

// ErrNoBrowser is FindBrowser's error when no browser is installed.
var ErrNoBrowser = errors.New("chromium: no browser in $PATH")

// browserNames are the names FindBrowser looks for, in order.
var browserNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// FindBrowser is the path of Chromium or Chrome in $PATH.
func FindBrowser() (string, error) {
	for _, name := range browserNames {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (looked for %s)", ErrNoBrowser, strings.Join(browserNames, ", "))
}

// Dialer opens exec sessions in headless Chromium. It implements
// clients.Dialer.
type Dialer struct {
	opts Options
	exe  string
	log  *slog.Logger

	shared    *browser
	startCost time.Duration

	mu       sync.Mutex
	closed   bool
	sessions map[*Session]struct{}
}

var _ clients.Dialer = (*Dialer)(nil)

// New starts the shared browser and returns the Dialer. Close ends it.
func New(opts Options) (*Dialer, error) {
	if opts.ExecPath == "" {
		p, err := FindBrowser()
		if err != nil {
			return nil, err
		}
		opts.ExecPath = p
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "chromium")
	d := &Dialer{opts: opts, exe: opts.ExecPath, log: log, sessions: map[*Session]struct{}{}}
	start := time.Now()
	b, err := d.startBrowser()
	if err != nil {
		return nil, err
	}
	d.shared, d.startCost = b, time.Since(start)
	log.Debug("chromium: shared browser up", "pid", b.pid, "took", d.startCost)
	return d, nil
}

// startBrowser starts a browser with the dialer's options.
func (d *Dialer) startBrowser() (*browser, error) {
	return startBrowser(d.exe, d.opts.BackForwardCache, func(msg string, args ...any) { d.log.Debug(msg, args...) })
}

// Client is scenarios.ClientChromium.
func (d *Dialer) Client() scenarios.Client { return scenarios.ClientChromium }

// StartCost is how long the shared browser took to start (to its first
// tab attached).
func (d *Dialer) StartCost() time.Duration { return d.startCost }

// SharedPID is the PID of the shared browser's main process.
func (d *Dialer) SharedPID() int { return d.shared.pid }

// OwnBrowser says whether a session of case c gets a browser of its own:
// its ending kills the browser (OwnBrowserKill, OwnBrowserTree), or drops
// TCP the only way a browser can, by dying (EndClientAbort).
func OwnBrowser(c scenarios.Case) bool {
	if c.Scenario == nil {
		return false
	}
	switch e := c.Scenario.End; e.Kind {
	case scenarios.EndClientAbort, scenarios.EndClientReset:
		return true
	case scenarios.EndClientOwn:
		return e.As == scenarios.OwnBrowserKill || e.As == scenarios.OwnBrowserTree
	}
	return false
}

// Dial opens one exec session in a new tab (of the shared browser, or of
// a browser of its own: OwnBrowser) and returns once the page's WebSocket
// is open, or the error that kept it from opening: a
// *execclient.HandshakeError when the browser saw the upgrade refused.
func (d *Dialer) Dial(ctx context.Context, req clients.Request) (clients.Session, error) {
	return d.DialSession(ctx, req)
}

// DialSession is Dial with the concrete type.
func (d *Dialer) DialSession(ctx context.Context, req clients.Request) (*Session, error) {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, errors.New("chromium: Dial after Close")
	}
	b, own := d.shared, OwnBrowser(req.Case)
	started := time.Now()
	if own {
		var err error
		if b, err = d.startBrowser(); err != nil {
			return nil, err
		}
	}
	s, err := newSession(d, b, own, req, started)
	if err != nil {
		if own {
			_ = b.close(context.Background())
		}
		return nil, err
	}
	d.mu.Lock()
	d.sessions[s] = struct{}{}
	d.mu.Unlock()
	if err := s.open(ctx, req); err != nil {
		s.Release()
		return nil, err
	}
	return s, nil
}

// forget drops a released session.
func (d *Dialer) forget(s *Session) {
	d.mu.Lock()
	delete(d.sessions, s)
	d.mu.Unlock()
}

// Close releases every session left and ends the shared browser, waiting
// until none of its processes is left.
func (d *Dialer) Close() error {
	d.mu.Lock()
	d.closed = true
	left := make([]*Session, 0, len(d.sessions))
	for s := range d.sessions {
		left = append(left, s)
	}
	d.mu.Unlock()
	for _, s := range left {
		s.Release()
	}
	ctx, cancel := context.WithTimeout(context.Background(), browserExitWait)
	defer cancel()
	return d.shared.close(ctx)
}
