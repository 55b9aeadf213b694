package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/scenarios"
)

func progressCase(name string) scenarios.Case {
	for _, c := range scenarios.Cases(scenarios.All()) {
		if c.Name() == name {
			return c
		}
	}
	panic("no case " + name)
}

// TestProgressPlain: off a terminal, a line per finished case, failures
// with their first message.
func TestProgressPlain(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, progressPlain, 2)
	p.started(progressCase("v5.channel.k8s.io/tty/disconnect/client-tcp-fin"))
	p.finished(harness.Result{Name: "v5.channel.k8s.io/tty/disconnect/client-tcp-fin", Verdict: harness.Pass, Duration: 312 * time.Millisecond})
	p.finished(harness.Result{Name: "v4.channel.k8s.io/tty/disconnect/client-tcp-fin", Verdict: harness.Fail, Duration: 3 * time.Second, Failures: []string{"1 of the session's processes still alive\nmore"}})
	p.close()
	assert.Equal(t, "[1/2] PASS       v5.channel.k8s.io/tty/disconnect/client-tcp-fin (312ms)\n"+
		"[2/2] FAIL       v4.channel.k8s.io/tty/disconnect/client-tcp-fin (3s): 1 of the session's processes still alive\n", b.String())
}

// TestProgressTTY: on a terminal, one line redrawn in place (carriage
// return, erase line) with counts, failures and the longest-running case;
// a failure is printed on a line of its own; close erases the live line.
func TestProgressTTY(t *testing.T) {
	var b bytes.Buffer
	now := time.Unix(1000, 0)
	p := newProgress(&b, progressTTY, 3)
	p.mu.Lock()
	p.start, p.now = now, func() time.Time { return now }
	p.mu.Unlock()
	p.started(progressCase("v5.channel.k8s.io/tty/busy/stdout-flood"))
	p.mu.Lock() // the ticker reads the clock under p.mu
	now = now.Add(1500 * time.Millisecond)
	p.mu.Unlock()
	p.started(progressCase("v5.channel.k8s.io/tty/disconnect/client-tcp-fin"))
	p.finished(harness.Result{Name: "v5.channel.k8s.io/tty/disconnect/client-tcp-fin", Verdict: harness.Fail, Failures: []string{"no close frame"}})
	p.close()
	out := b.String()
	assert.Contains(t, out, "\r\x1b[K0/3 cases · 0 failed · 1.5s · 2 running, longest v5.channel.k8s.io/tty/busy/stdout-flood (1.5s)")
	assert.Contains(t, out, "\r\x1b[K[1/3] FAIL       v5.channel.k8s.io/tty/disconnect/client-tcp-fin (0s): no close frame\n")
	assert.Contains(t, out, "\r\x1b[K1/3 cases · 1 failed · 1.5s · 1 running, longest v5.channel.k8s.io/tty/busy/stdout-flood (1.5s)")
	assert.True(t, strings.HasSuffix(out, "\r\x1b[K"), "close erases the live line: %q", out)
	assert.NotContains(t, out, "PASS")
}

// TestProgressNone: --quiet and --json print nothing while running.
func TestProgressNone(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, progressNone, 1)
	p.started(progressCase("v5.channel.k8s.io/tty/disconnect/client-tcp-fin"))
	p.finished(harness.Result{Name: "x", Verdict: harness.Fail})
	p.close()
	assert.Empty(t, b.String())
}

// TestDetectProgress: a buffer or a file that is not a terminal gets
// plain lines.
func TestDetectProgress(t *testing.T) {
	assert.Equal(t, progressPlain, detectProgress(&bytes.Buffer{}))
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if assert.NoError(t, err) {
		defer f.Close()
		assert.Equal(t, progressPlain, detectProgress(f))
	}
}
