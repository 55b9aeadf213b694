package bench

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Flags are the flags that set a Config, for the commands that run the
// bench (execconform bench, the peers' bench).
type Flags struct {
	cfg       Config
	idleSizes string
	dropSizes string
	dropKinds string
	figures   string
	quick     bool
	fs        *flag.FlagSet
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	f.fs = fs
	fs.IntVar(&f.cfg.Runs, "runs", 3, "measure each figure `n` times (min, median, max)")
	fs.IntVar(&f.cfg.Keystrokes, "keystrokes", 1000, "keystrokes per latency run")
	fs.IntVar(&f.cfg.Busy, "busy", 50, "busy sessions (yes) beside the second latency figure; 0 leaves it out")
	fs.Int64Var(&f.cfg.StdoutBytes, "stdout-bytes", 32<<20, "bytes per stdout throughput run")
	fs.Int64Var(&f.cfg.StdinBytes, "stdin-bytes", 16<<20, "bytes per stdin (paste) throughput run")
	fs.IntVar(&f.cfg.Setups, "setups", 200, "sessions per set-up run, one after the other")
	fs.StringVar(&f.idleSizes, "idle-sizes", "100,1000", "comma-separated numbers of idle sessions to measure the idle cost at")
	fs.StringVar(&f.dropSizes, "drop-sizes", "1000", "comma-separated numbers of sessions dropped at once (\"max\": the most this machine's open-file and pty limits allow)")
	fs.IntVar(&f.cfg.DropRunsAbove, "drop-runs-above", 1000, "mass drops of more sessions than `n` are measured once, not --runs times")
	fs.StringVar(&f.dropKinds, "drop-kinds", "", "comma-separated ways the clients go in a mass drop: "+strings.Join(DropKinds(), ", ")+" (default all)")
	fs.DurationVar(&f.cfg.DropBound, "drop-bound", 10*time.Second, "how long a mass drop waits for the shells to go (half-open: beyond the target's keepalive)")
	fs.StringVar(&f.figures, "figures", "", "comma-separated figure groups: "+strings.Join(Groups(), ", ")+" (default all)")
	fs.BoolVar(&f.quick, "quick", false, "small sizes, one run (about a minute a target): to try a target, not to publish")
}

// Config is the Config the parsed flags give; --quick sets the sizes the
// other flags do not.
func (f *Flags) Config() (Config, error) {
	c := f.cfg
	if f.quick {
		set := map[string]bool{}
		f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
		quick := map[string]func(){
			"runs": func() { c.Runs = 1 }, "keystrokes": func() { c.Keystrokes = 200 }, "busy": func() { c.Busy = 10 },
			"stdout-bytes": func() { c.StdoutBytes = 8 << 20 }, "stdin-bytes": func() { c.StdinBytes = 4 << 20 },
			"setups": func() { c.Setups = 20 }, "idle-sizes": func() { f.idleSizes = "50" }, "drop-sizes": func() { f.dropSizes = "100" },
			"drop-bound": func() { c.DropBound = 5 * time.Second },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	var err error
	if c.IdleSizes, err = sizes(f.idleSizes, 0); err != nil {
		return c, fmt.Errorf("--idle-sizes: %w", err)
	}
	if c.DropSizes, err = sizes(f.dropSizes, MaxSessions(CurrentMachine())); err != nil {
		return c, fmt.Errorf("--drop-sizes: %w", err)
	}
	c.DropKinds, c.Figures = list(f.dropKinds), list(f.figures)
	return c, c.Validate()
}

// sizes parses a comma-separated list of positive numbers; "max" is max
// (when max > 0).
func sizes(s string, max int) ([]int, error) {
	var out []int
	for _, p := range list(s) {
		if p == "max" && max > 0 {
			out = append(out, max)
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: want a positive number", p)
		}
		out = append(out, n)
	}
	return out, nil
}

func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
