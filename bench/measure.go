package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/proctable"
)

// measure gives every figure of t: each group's runs, each with the
// target started afresh and the fake's processes cleaned after.
func (b *bencher) measure(ctx context.Context, t Target, direct *TargetReport) TargetReport {
	tr := TargetReport{Name: t.Name, Memory: t.Memory}
	if t.Dialect != nil {
		tr.Dialect = t.Dialect.Name
	}
	tr.Kind = "proxy"
	if t.Start == nil {
		tr.Kind = DirectName
	}
	started := time.Now()
	tr.GroupTook = map[string]time.Duration{}
	for _, g := range b.cfg.Figures {
		if ctx.Err() != nil {
			break
		}
		b.log.Info("bench: measuring", "target", t.Name, "group", g)
		gstart := time.Now()
		b.group(ctx, t, g, &tr, direct)
		tr.GroupTook[g] = time.Since(gstart).Round(time.Millisecond)
	}
	tr.Took = time.Since(started).Round(time.Millisecond)
	return tr
}

// group measures the figures of group g for t into tr.
func (b *bencher) group(ctx context.Context, t Target, g string, tr *TargetReport, direct *TargetReport) {
	add := func(f Figure) { tr.Figures = append(tr.Figures, f) }
	fail := func(group string, err error) {
		tr.Errors = append(tr.Errors, fmt.Sprintf("%s: %v", group, err))
		b.log.Warn("bench: figure failed", "target", t.Name, "group", group, "err", err)
	}
	// each runs one measurement with t started, cleaning up after.
	each := func(f func(e endpoint) error) error {
		e, stop, err := b.start(ctx, t)
		if err != nil {
			return err
		}
		err = f(e)
		stop()
		b.cleanup(ctx)
		return err
	}
	switch g {
	case GroupKeystroke:
		busies := []int{0}
		if b.cfg.Busy > 0 {
			busies = append(busies, b.cfg.Busy)
		}
		for _, busy := range busies {
			label, id := "idle", "keystroke.idle"
			if busy > 0 {
				label, id = fmt.Sprintf("beside %d busy sessions (80 KB/s each)", busy), "keystroke.busy"
			}
			var p50, p99, mx []float64
			err := runs(b.cfg.Runs, func() error {
				return each(func(e endpoint) error {
					ds, err := b.keystrokes(ctx, e, b.cfg.Keystrokes, busy)
					if err == nil {
						p50, p99, mx = append(p50, ms(pct(ds, 50))), append(p99, ms(pct(ds, 99))), append(mx, ms(slices.Max(ds)))
					}
					return err
				})
			})
			if err != nil {
				fail(g, fmt.Errorf("%s: %w", label, err))
				continue
			}
			add(fig(id+".p50", g, "keystroke echo p50, "+label, "ms", CompareDelta, p50))
			add(fig(id+".p99", g, "keystroke echo p99, "+label, "ms", CompareDelta, p99))
			add(fig(id+".max", g, "keystroke echo max, "+label, "ms", CompareDelta, mx))
		}
	case GroupThroughput:
		for _, p := range pathsOf(t) {
			for _, dir := range []string{"stdout", "stdin"} {
				var mbs []float64
				err := runs(b.cfg.Runs, func() error {
					return each(func(e endpoint) error {
						var v float64
						var err error
						if dir == "stdout" {
							v, err = b.stdout(ctx, e, p, b.cfg.StdoutBytes)
						} else {
							v, err = b.stdin(ctx, e, p, b.cfg.StdinBytes)
						}
						mbs = append(mbs, v)
						return err
					})
				})
				if err != nil {
					fail(g, fmt.Errorf("%s %s: %w", p.name, dir, err))
					continue
				}
				label := fmt.Sprintf("%s %s", dir, p.name)
				if p.tty {
					label = fmt.Sprintf("%s, tty (typed into an interactive shell)", dir)
					if t.Dialect != nil {
						label += ", front dialect " + t.Dialect.Name
					}
				}
				add(fig("throughput."+dir+"."+p.name, g, label, "MB/s", CompareRatio, mbs))
			}
		}
	case GroupSetup:
		var p50, p99 []float64
		err := runs(b.cfg.Runs, func() error {
			return each(func(e endpoint) error {
				ds, err := b.setups(ctx, e, b.cfg.Setups)
				if err == nil {
					p50, p99 = append(p50, ms(pct(ds, 50))), append(p99, ms(pct(ds, 99)))
				}
				return err
			})
		})
		if err != nil {
			fail(g, err)
			return
		}
		add(fig("setup.p50", g, fmt.Sprintf("upgrade to first prompt p50 (%d sessions)", b.cfg.Setups), "ms", CompareDelta, p50))
		add(fig("setup.p99", g, fmt.Sprintf("upgrade to first prompt p99 (%d sessions)", b.cfg.Setups), "ms", CompareDelta, p99))
	case GroupIdle:
		if t.Memory == MemoryNone || t.Memory == "" {
			tr.Notes = append(tr.Notes, "idle cost: not measured (the proxy runs elsewhere)")
			return
		}
		for _, n := range b.cfg.IdleSizes {
			var mem, threads []float64
			err := runs(b.cfg.Runs, func() error {
				return each(func(e endpoint) error {
					m, th, err := b.idle(ctx, e, n)
					mem, threads = append(mem, m), append(threads, th)
					return err
				})
			})
			if err != nil {
				fail(g, fmt.Errorf("%d sessions: %w", n, err))
				continue
			}
			memLabel, thLabel := "KiB", "goroutines"
			if t.Memory == MemoryProcess {
				thLabel = "threads"
			}
			add(fig(fmt.Sprintf("idle.memory.%d", n), g, fmt.Sprintf("memory per idle session, %d open", n), memLabel, CompareNone, mem))
			add(fig(fmt.Sprintf("idle.%s.%d", thLabel, n), g, fmt.Sprintf("%s per idle session, %d open", thLabel, n), thLabel, CompareNone, threads))
		}
		tr.Notes = append(tr.Notes, "idle cost: "+memoryWhat(t))
		if t.Memory == MemoryInProcess && direct != nil && t.Start != nil {
			tr.ownIdle(direct)
		}
	case GroupDrop:
		for _, n := range b.cfg.DropSizes {
			for _, kind := range b.cfg.DropKinds {
				bound := b.cfg.DropBound
				if kind == DropHalfOpen {
					bound += b.cfg.Keepalive[t.Name]
				}
				k := b.cfg.Runs
				if n > b.cfg.DropRunsAbove {
					k = 1
				}
				var p50, p99, last, left []float64
				var rounds []*DropRound
				err := runs(k, func() error {
					return each(func(e endpoint) error {
						r, err := b.massDrop(ctx, e, n, kind, bound)
						if err != nil {
							return err
						}
						rounds = append(rounds, r)
						left = append(left, float64(r.Left))
						if r.Left == 0 {
							p50, p99, last = append(p50, sec(pct(r.Gone, 50))), append(p99, sec(pct(r.Gone, 99))), append(last, sec(r.Gone[len(r.Gone)-1]))
						}
						return nil
					})
				})
				if err != nil {
					fail(g, fmt.Errorf("%d sessions, %s: %w", n, kind, err))
					continue
				}
				id := fmt.Sprintf("drop.%s.%d", kind, n)
				label := fmt.Sprintf("mass drop of %d, %s", n, dropWhat(kind))
				add(fig(id+".left", g, label+": shells left after "+bound.String(), "shells", CompareNone, left))
				if len(last) == len(rounds) {
					add(fig(id+".p50", g, label+": time to reaped, p50", "s", CompareNone, p50))
					add(fig(id+".p99", g, label+": time to reaped, p99", "s", CompareNone, p99))
					add(fig(id+".last", g, label+": time to the last shell gone", "s", CompareNone, last))
				}
				tr.Drops = append(tr.Drops, median(rounds))
			}
		}
	}
}

// runs calls f k times, stopping at the first error.
func runs(k int, f func() error) error {
	for range k {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// median is the round whose time to the last shell (or shells left) is
// the median of rounds.
func median(rounds []*DropRound) DropRound {
	s := slices.Clone(rounds)
	key := func(r *DropRound) time.Duration {
		if r.Left > 0 {
			return time.Duration(r.Left) * time.Hour
		}
		return r.Gone[len(r.Gone)-1]
	}
	slices.SortFunc(s, func(a, b *DropRound) int { return int(key(a) - key(b)) })
	return *s[len(s)/2]
}

func dropWhat(kind string) string {
	switch kind {
	case DropFIN:
		return "clients' FIN"
	case DropRST:
		return "clients' RST"
	case DropLBReset:
		return "client-leg load balancer restart"
	case DropHalfOpen:
		return "client leg silent (half-open)"
	}
	return kind
}

func memoryWhat(t Target) string {
	switch {
	case t.Memory == MemoryProcess:
		return "the proxy process's resident memory"
	case t.Start == nil:
		return "Go heap and stacks of the client and the fake API server"
	}
	return "Go heap and stacks of the client, the proxy and the fake API server; less direct's: the proxy's own"
}

// idle opens n idle tty sessions through e and returns the memory (KiB)
// and goroutines or threads each costs: the difference to before they
// were opened, divided by n.
func (b *bencher) idle(ctx context.Context, e endpoint, n int) (kib, threads float64, err error) {
	before, err := b.footprint(ctx, e.t)
	if err != nil {
		return 0, 0, err
	}
	ss, err := b.openMany(ctx, e, spec{tty: true, proto: execproto.ProtocolV5, prompt: true}, n)
	if err != nil {
		return 0, 0, err
	}
	defer b.drop(ss)
	after, err := b.footprint(ctx, e.t)
	if err != nil {
		return 0, 0, err
	}
	return float64(after.bytes-before.bytes) / 1024 / float64(n), float64(after.threads-before.threads) / float64(n), nil
}

type footprint struct {
	bytes   int64
	threads int64
}

// footprint is what t holds now: in-process, this process's Go heap and
// stacks in use after a collection, and its goroutines; for a process,
// the resident memory and threads of the processes a CommandTarget of
// this process started (tagged proxy:...).
func (b *bencher) footprint(ctx context.Context, t Target) (footprint, error) {
	if t.Memory != MemoryProcess {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return footprint{bytes: int64(m.HeapInuse + m.StackInuse), threads: int64(runtime.NumGoroutine())}, nil
	}
	procs, err := proctable.Default.Snapshot(ctx)
	if err != nil {
		return footprint{}, err
	}
	var f footprint
	found := 0
	for _, p := range procs {
		if !p.Live() || p.ServerPID != os.Getpid() || !strings.HasPrefix(p.Session, "proxy:") {
			continue
		}
		rss, th, err := status(p.PID)
		if err != nil {
			continue // gone meanwhile
		}
		f.bytes += rss
		f.threads += th
		found++
	}
	if found == 0 {
		return footprint{}, fmt.Errorf("no proxy process of this run in the process table")
	}
	return f, nil
}

// status reads VmRSS (bytes) and Threads from /proc/PID/status.
func status(pid int) (rss, threads int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n * 1024
		case "Threads":
			threads = n
		}
	}
	return rss, threads, nil
}

// pct is harness.Percentile: the same rank as the suite's reports use.
func pct(ds []time.Duration, p float64) time.Duration { return harness.Percentile(ds, p) }

func ms(d time.Duration) float64  { return float64(d) / float64(time.Millisecond) }
func sec(d time.Duration) float64 { return d.Seconds() }
