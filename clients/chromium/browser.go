package chromium

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/execconform/execconform/proctable"
)

// browser is one headless Chromium process and everything it started.
//
//	our process ──pipe (DevTools)──▶ chromium (main, session leader, tagged)
//	                                   ├─ zygotes ─ renderers, gpu
//	                                   ├─ network service, storage service
//	                                   └┄ crashpad handlers (their own sessions, tagged)
//
// The main process starts in a session of its own (so a process group of
// its own too): every child it forks or execs keeps that session, which is
// how the whole tree is found and killed (proctable.Match{SID}); the two
// crashpad handlers leave it but carry the environment tag, so they match
// too (proctable.Match{Session}). The main process dies with our process
// (Pdeathsig); its children notice and exit, and whatever is left is
// reaped by the project's janitor and `execconform reap`, which find the
// tags (EXECCONFORM_SERVER_PID is our PID).
type browser struct {
	ctx    context.Context // the chromedp context of the browser (its first tab)
	cancel func()          // ends the browser context and the allocator
	dir    string          // the user data directory, ours to remove
	tag    string          // EXECCONFORM_SESSION of its processes
	pid    int             // the main process
	log    func(msg string, args ...any)
	closed atomic.Bool
}

// browserSeq numbers the browsers of this process, for their tags.
var browserSeq atomic.Int64

// Flags common to every browser: headless, no sandbox (we may run as root,
// in a container), no GPU, and nothing that talks to the network by itself
// (the machines this runs on refuse such connections; their errors would
// be noise). The network service runs in a process of its own, as in a
// desktop browser (chromedp's defaults would put it in the main process,
// which would change what a kill of the main process does to the socket).
var baseFlags = []chromedp.ExecAllocatorOption{
	chromedp.Flag("headless", true),
	chromedp.Flag("no-sandbox", true),
	chromedp.Flag("disable-gpu", true),
	chromedp.Flag("disable-quic", true),
	chromedp.Flag("no-first-run", true),
	chromedp.Flag("no-default-browser-check", true),
	chromedp.Flag("disable-background-networking", true),
	chromedp.Flag("disable-component-update", true),
	chromedp.Flag("disable-sync", true),
	chromedp.Flag("disable-extensions", true),
	chromedp.Flag("disable-default-apps", true),
	chromedp.Flag("disable-breakpad", true),
	chromedp.Flag("password-store", "basic"),
	chromedp.Flag("use-mock-keychain", true),
	chromedp.Flag("mute-audio", true),
	// Many tabs share one browser: none may be throttled for being in
	// the background.
	chromedp.Flag("disable-background-timer-throttling", true),
	chromedp.Flag("disable-backgrounding-occluded-windows", true),
	chromedp.Flag("disable-renderer-backgrounding", true),
}

// startBrowser starts a browser and returns once its DevTools connection
// is up. bfcache keeps the back/forward cache on (it is off otherwise:
// --disable-features=BackForwardCache, so that navigating away unloads
// the page, as OwnNavigate says).
func startBrowser(exe string, bfcache bool, logf func(msg string, args ...any)) (*browser, error) {
	dir, err := proctable.MkdirTemp("chromium")
	if err != nil {
		return nil, fmt.Errorf("chromium: user data directory: %w", err)
	}
	b := &browser{
		dir: dir,
		tag: fmt.Sprintf("chromium:%d:%d", os.Getpid(), browserSeq.Add(1)),
		log: logf,
	}
	opts := append([]chromedp.ExecAllocatorOption{chromedp.ExecPath(exe)}, baseFlags...)
	// The page is answered through DevTools (Fetch.fulfillRequest), so it
	// comes from no address, which Chromium counts as public, and Local
	// Network Access would then block its socket to a loopback front
	// (net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS). A console served
	// by the proxy itself shares the proxy's address space and meets no
	// such check: the check is off.
	disabled := []string{"LocalNetworkAccessChecks"}
	if !bfcache {
		disabled = append(disabled, "BackForwardCache")
	}
	opts = append(opts, chromedp.Flag("disable-features", strings.Join(disabled, ",")))
	opts = append(opts,
		chromedp.UserDataDir(dir),
		chromedp.Env(proctable.SessionEnv+"="+b.tag, proctable.ServerPIDEnv+"="+strconv.Itoa(os.Getpid())),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			// chromedp starts the browser from a goroutine locked to its
			// thread, so Pdeathsig follows our process's death, not a
			// retired thread's.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
		}),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx,
		chromedp.WithLogf(b.quiet), chromedp.WithErrorf(b.quiet))
	b.ctx = ctx
	b.cancel = func() { cancelCtx(); cancelAlloc() }
	// No action: starts the browser and attaches its first tab. The
	// browser's life is bound to the context of this first Run, so the
	// bound on the start is a timer, not a context.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	timer := time.NewTimer(browserStartTimeout)
	defer timer.Stop()
	select {
	case err = <-started:
	case <-timer.C:
		b.cancel()
		if err = <-started; err == nil {
			err = fmt.Errorf("not up within %v", browserStartTimeout)
		}
	}
	if c := chromedp.FromContext(ctx); c.Browser != nil && c.Browser.Process() != nil {
		b.pid = c.Browser.Process().Pid
	}
	if err != nil {
		b.cancel()
		return nil, errors.Join(fmt.Errorf("chromium: start %s: %w", exe, err), b.wait(context.Background()))
	}
	return b, nil
}

// browserStartTimeout bounds a browser's start.
const browserStartTimeout = 30 * time.Second

// quiet is chromedp's log and error function. chromedp's messages can
// quote protocol messages, which can carry a cookie or a token: only the
// format is logged.
func (b *browser) quiet(format string, _ ...any) {
	if b.log != nil {
		b.log("chromium: devtools", "format", format)
	}
}

// match selects every process of the browser.
func (b *browser) match() proctable.Match {
	return proctable.Match{Session: b.tag, SID: b.pid}
}

// killMain sends SIGKILL to the browser's main process only.
func (b *browser) killMain() error {
	if err := syscall.Kill(b.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("chromium: kill %d: %w", b.pid, err)
	}
	return nil
}

// killTree sends SIGKILL to every process of the browser (the process
// group at once, then whatever else matches), until none is left.
func (b *browser) killTree(ctx context.Context) error {
	if _, err := proctable.Default.Kill(ctx, b.match(), syscall.SIGKILL); err != nil {
		return fmt.Errorf("chromium: kill the browser's processes: %w", err)
	}
	return nil
}

// close ends the browser: its context (chromedp kills the process), then
// every process left, and removes its user data directory. Safe to call
// twice.
func (b *browser) close(ctx context.Context) error {
	if b.closed.Swap(true) {
		return nil
	}
	b.cancel()
	return b.wait(ctx)
}

// wait waits until no process of the browser is left (killing the
// stragglers when ctx ends), then removes its directory.
func (b *browser) wait(ctx context.Context) error {
	var errs []error
	if b.pid != 0 {
		wctx, cancel := context.WithTimeout(ctx, browserExitWait)
		_, _, err := proctable.Default.WaitGone(wctx, b.match())
		cancel()
		if err != nil {
			kctx, cancel := context.WithTimeout(context.Background(), browserExitWait)
			errs = append(errs, fmt.Errorf("chromium: browser processes outlived it: %w", err), b.killTree(kctx))
			cancel()
		}
	}
	if err := os.RemoveAll(b.dir); err != nil {
		errs = append(errs, fmt.Errorf("chromium: remove %s: %w", b.dir, err))
	}
	return errors.Join(errs...)
}

// browserExitWait bounds the wait for a browser's processes to exit once
// it is told to.
const browserExitWait = 5 * time.Second
