package bench

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/execconform/execconform/execproto"
)

// keystrokes types n single bytes into an interactive tty shell, one at
// a time, each once the previous one's echo is back, and returns each
// byte's time from the write to its echo. The bytes cycle through the
// letters, so that each echo is told from the one before; the line is
// killed (Ctrl-U) every 500 bytes, far below the terminal's line limit.
// With busy > 0, that many sessions beside it print a scrolling log
// (busyScript: 4 KB every 50 ms, 80 KB/s each), as a tail -f or a build
// in other tabs.
func (b *bencher) keystrokes(ctx context.Context, e endpoint, n, busy int) ([]time.Duration, error) {
	if busy > 0 {
		flood := spec{tty: false, command: []string{"sh", "-c", busyScript}, proto: execproto.ProtocolV5}
		if e.t.Dialect != nil {
			flood = spec{tty: true, prompt: true}
		}
		floods, err := b.openMany(ctx, e, flood, busy)
		if err != nil {
			return nil, fmt.Errorf("busy sessions: %w", err)
		}
		defer b.drop(floods)
		for _, f := range floods {
			if e.t.Dialect != nil {
				if err := f.c.Type(busyScript + "\r"); err != nil {
					return nil, fmt.Errorf("busy session: %w", err)
				}
			}
			fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := f.c.Expect(fctx, "0040")
			cancel()
			if err != nil {
				return nil, fmt.Errorf("busy session: %w", err)
			}
		}
	}
	s, err := b.open(ctx, e, spec{tty: true, proto: execproto.ProtocolV5, prompt: true})
	if err != nil {
		return nil, err
	}
	defer exit(ctx, s)
	out := make([]time.Duration, 0, n)
	for i := range n {
		if i > 0 && i%500 == 0 {
			if err := s.c.Type("\x15"); err != nil {
				return nil, err
			}
		}
		ch := string(rune('a' + i%26))
		t0 := time.Now()
		if err := s.c.Type(ch); err != nil {
			return nil, fmt.Errorf("keystroke %d: %w", i+1, err)
		}
		kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.c.Expect(kctx, ch)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("keystroke %d: no echo: %w", i+1, err)
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

// busyScript prints 40 numbered lines of 100 bytes every 50 ms, without
// a process per line: bash's read -t on a pipe that never carries
// anything is the clock.
const busyScript = `exec bash -c 'exec 3< <(exec sleep infinity); while :; do printf "%096d\n" {1..40}; read -t 0.05 -u 3; done'`

// A throughput path: how the bytes travel.
type path struct {
	name  string
	proto execproto.Protocol
	spdy  bool
	tty   bool // an interactive tty shell, the command typed (every dialect's only path)
}

// paths are the throughput paths of a pass-through target, and of direct.
var paths = []path{
	{name: "v4.channel.k8s.io", proto: execproto.ProtocolV4},
	{name: "v4.base64.channel.k8s.io", proto: execproto.ProtocolV4Base64},
	{name: "v5.channel.k8s.io", proto: execproto.ProtocolV5},
	{name: "spdy/v4.channel.k8s.io", proto: execproto.ProtocolV4, spdy: true},
	{name: "tty", proto: execproto.ProtocolV5, tty: true},
}

// pathsOf are the paths t can carry.
func pathsOf(t Target) []path {
	if t.Dialect != nil {
		return paths[len(paths)-1:]
	}
	return paths
}

// flood is a command that writes n bytes of printable text, as a
// terminal's output mostly is (a JSON dialect would carry NUL bytes as
// six-byte escapes).
func flood(n int64) string {
	return fmt.Sprintf("yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.- | head -c %d", n)
}

// stdout measures one flood of n bytes from the shell to the client:
// bytes per second from the session's open to its end (notty: the exit
// status; tty: the marker after the bytes).
func (b *bencher) stdout(ctx context.Context, e endpoint, p path, n int64) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if p.tty {
		s, err := b.open(ctx, e, spec{tty: true, proto: p.proto, prompt: true})
		if err != nil {
			return 0, err
		}
		defer exit(ctx, s)
		// rea""dy and do""ne: the echo of the line does not match.
		if err := s.c.Type(fmt.Sprintf("stty raw -echo; echo rea''dy; %s; echo do''ne; stty sane\r", flood(n))); err != nil {
			return 0, err
		}
		if err := s.c.Expect(ctx, "ready"); err != nil {
			return 0, err
		}
		t0 := time.Now()
		if err := s.c.Expect(ctx, "done"); err != nil {
			return 0, err
		}
		return rate(n, time.Since(t0)), nil
	}
	t0 := time.Now()
	s, err := b.open(ctx, e, spec{proto: p.proto, spdy: p.spdy, command: []string{"sh", "-c", flood(n)}})
	if err != nil {
		return 0, err
	}
	defer s.c.Reset() //nolint:errcheck // ended already
	// The end of the connection, not the status: over SPDY the status
	// travels on a stream of its own and can overtake the last output.
	select {
	case <-s.c.Done():
	case <-ctx.Done():
		return 0, fmt.Errorf("the flood did not end: %w", ctx.Err())
	}
	took := time.Since(t0)
	got := outputTotal(s.c)
	if got >= 0 && got != n {
		return 0, fmt.Errorf("%d bytes of %d arrived", got, n)
	}
	return rate(n, took), nil
}

// stdin measures one paste of n bytes from the client into the shell:
// bytes per second from the first write to the shell's word that it has
// read them all.
func (b *bencher) stdin(ctx context.Context, e endpoint, p path, n int64) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var s *session
	var err error
	if p.tty {
		if s, err = b.open(ctx, e, spec{tty: true, proto: p.proto, prompt: true}); err != nil {
			return 0, err
		}
		defer exit(ctx, s)
		if err := s.c.Type(fmt.Sprintf("stty raw -echo; echo rea''dy; head -c %d >/dev/null; echo do''ne; stty sane\r", n)); err != nil {
			return 0, err
		}
	} else {
		if s, err = b.open(ctx, e, spec{proto: p.proto, spdy: p.spdy,
			command: []string{"sh", "-c", fmt.Sprintf("echo ready; head -c %d >/dev/null; echo done", n)}}); err != nil {
			return 0, err
		}
		defer s.c.Reset() //nolint:errcheck // ended already
	}
	if err := s.c.Expect(ctx, "ready"); err != nil {
		return 0, err
	}
	chunk := bytes.Repeat([]byte{'x'}, 32<<10)
	t0 := time.Now()
	for left := n; left > 0; {
		c := chunk[:min(int64(len(chunk)), left)]
		if err := s.c.Send(execproto.StreamStdin, c); err != nil {
			return 0, fmt.Errorf("paste: %w", err)
		}
		left -= int64(len(c))
	}
	if err := s.c.Expect(ctx, "done"); err != nil {
		return 0, err
	}
	return rate(n, time.Since(t0)), nil
}

// outputTotal is how many output bytes c received, -1 if it cannot tell.
func outputTotal(c any) int64 {
	if t, ok := c.(interface{ OutputTotal() int64 }); ok {
		return t.OutputTotal()
	}
	return -1
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / 1e6 / d.Seconds()
}

// setups opens n sessions one after the other and returns each one's time
// from the dial to the shell's first prompt; each is ended (exit) before
// the next.
func (b *bencher) setups(ctx context.Context, e endpoint, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for i := range n {
		s, err := b.open(ctx, e, spec{tty: true, proto: execproto.ProtocolV5, prompt: true})
		if err != nil {
			return nil, fmt.Errorf("session %d: %w", i+1, err)
		}
		out = append(out, s.opened)
		exit(ctx, s)
	}
	return out, nil
}

// warmUp types into a direct session and floods one, discarding the
// times.
func (b *bencher) warmUp(ctx context.Context) {
	e := endpoint{t: Target{Name: DirectName}}
	if _, err := b.keystrokes(ctx, e, 200, 0); err != nil {
		b.log.Warn("bench: warm-up", "err", err)
	}
	if _, err := b.stdout(ctx, e, paths[0], 4<<20); err != nil {
		b.log.Warn("bench: warm-up", "err", err)
	}
	b.cleanup(ctx)
}
