package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/scenarios"
)

// progressMode is how a run shows its progress.
type progressMode int

const (
	progressNone  progressMode = iota // --quiet, --json
	progressPlain                     // a line per finished case (CI, a pipe)
	progressTTY                       // one live line, redrawn; failures printed above it
)

// detectProgress picks plain lines unless w is a terminal and CI is unset.
func detectProgress(w io.Writer) progressMode {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("CI") != "" {
		return progressPlain
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return progressPlain
	}
	return progressTTY
}

// progress reports cases as they start and end. Its methods are called
// from the cases' goroutines.
type progress struct {
	w     io.Writer
	mode  progressMode
	total int
	start time.Time
	now   func() time.Time

	mu      sync.Mutex
	done    int
	failed  int
	running map[string]time.Time
	stop    chan struct{}
	stopped chan struct{}
}

// tick is how often the live line's elapsed time is redrawn.
const tick = 250 * time.Millisecond

func newProgress(w io.Writer, mode progressMode, total int) *progress {
	p := &progress{w: w, mode: mode, total: total, start: time.Now(), now: time.Now, running: map[string]time.Time{}}
	if mode == progressTTY {
		p.stop, p.stopped = make(chan struct{}), make(chan struct{})
		go p.ticker()
	}
	return p
}

func (p *progress) ticker() {
	defer close(p.stopped)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.drawLocked()
			p.mu.Unlock()
		}
	}
}

// started notes a case that started.
func (p *progress) started(c scenarios.Case) {
	if p.mode != progressTTY {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running[c.Name()] = p.now()
	p.drawLocked()
}

// finished notes a case's result.
func (p *progress) finished(r harness.Result) {
	if p.mode == progressNone {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if r.Failed() {
		p.failed++
	}
	delete(p.running, r.Name)
	line := fmt.Sprintf("[%*d/%d] %-10s %s (%s)", len(fmt.Sprint(p.total)), p.done, p.total, r.Verdict, r.Name, r.Duration.Round(time.Millisecond))
	if r.Failed() && len(r.Failures) > 0 {
		line += ": " + oneLine(r.Failures[0], 160)
	}
	switch p.mode {
	case progressPlain:
		fmt.Fprintln(p.w, line)
	case progressTTY:
		if r.Failed() {
			fmt.Fprintf(p.w, "\r\x1b[K%s\n", line)
		}
		p.drawLocked()
	}
}

// drawLocked redraws the live line: cases done of all, failures so far,
// the elapsed time and the longest-running case.
func (p *progress) drawLocked() {
	if p.mode != progressTTY {
		return
	}
	now := p.now()
	line := fmt.Sprintf("%d/%d cases · %d failed · %s", p.done, p.total, p.failed, now.Sub(p.start).Round(100*time.Millisecond))
	oldest, since := "", now
	for name, t := range p.running {
		if t.Before(since) || (t.Equal(since) && name < oldest) {
			oldest, since = name, t
		}
	}
	if oldest != "" {
		line += fmt.Sprintf(" · %d running, longest %s (%s)", len(p.running), oldest, now.Sub(since).Round(100*time.Millisecond))
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", oneLine(line, 150))
}

// close ends the progress display (the live line is erased).
func (p *progress) close() {
	if p.mode != progressTTY {
		return
	}
	close(p.stop)
	<-p.stopped
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, "\r\x1b[K")
}

// oneLine cuts s to its first line and at most n bytes.
func oneLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > n {
		s = s[:n-3] + "..."
	}
	return s
}
