package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// parseFlags parses args into fs. With -h or --help it prints the usage
// on stdout and the command is done (exit 0); on a bad flag, flag has
// printed the error, the usage follows on fs's output (stderr) and the
// command is done with exit 2.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (done bool, err error) {
	usage := fs.Usage
	fs.Usage = func() {} // printed below, where it belongs
	err = fs.Parse(args)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return true, nil
	case err != nil:
		fs.Usage()
		return true, exitError(2)
	}
	return false, nil
}

// optionalDuration is a duration flag that may be left unset: its default
// depends on other flags, so the usage says it in words (an unset value
// prints as nothing, which flag takes for a zero value and leaves out).
type optionalDuration struct {
	d   time.Duration
	set bool
}

func (o *optionalDuration) String() string {
	if o == nil || !o.set {
		return ""
	}
	return o.d.String()
}

func (o *optionalDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("%s: want 0 or more", s)
	}
	o.d, o.set = d, true
	return nil
}

// keepaliveLine says that n half-open cases are only reported, and how
// to have them judged.
func (f frontOptions) keepaliveLine(n int) string {
	given := "no --keepalive given"
	if f.keepalive.set {
		given = "--keepalive 0"
	}
	are := "cases are"
	if n == 1 {
		are = "case is"
	}
	return fmt.Sprintf("%d half-open %s only reported: %s; pass --keepalive D, the longest your proxy takes to notice a silent client", n, are, given)
}

// flagGroup is a titled group of flags in a usage.
type flagGroup struct {
	title string
	flags []string
}

// runFlagGroups order run's flags in its usage.
var runFlagGroups = []flagGroup{
	{"Which cases", []string{"run", "protocol", "transport", "dialect", "client", "level", "list", "list-variants"}},
	{"How they run", []string{"parallel", "max-sessions", "grace", "seed", "count", "cluster"}},
	{"The target (default: the reference proxy, in-process)", []string{"variant", "executor", "proxy-cmd", "proxy-start-timeout", "proxy-stop-timeout", "no-fd-check", "target-url", "keepalive"}},
	{"With --target-url: the fake API server the proxy points at", []string{"backend-listen", "backend-token", "backend-token-file", "backend-cert-dir", "backend-insecure-http"}},
	{"Reaching the proxy", []string{"scheme", "path-prefix", "header", "cookie", "origin", "front-ca", "insecure-skip-verify"}},
	{"Output", []string{"out", "report-url", "quiet", "json", "v", "cpuprofile"}},
}

// writeRunUsage writes run's usage: its flags by group, each with its
// default when it has one worth saying.
func writeRunUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, "usage: execconform run [flags]\n\nRuns the conformance matrix against a proxy and writes its reports (docs/reports.md).\nExit status: 0 every MUST case passed, 1 a MUST case failed, 2 the suite could not run a case or the flags are wrong.\n")
	writeFlagGroups(w, fs, runFlagGroups)
}

// writeFlagGroups writes fs's flags by group, each with its default when
// it has one worth saying.
func writeFlagGroups(w io.Writer, fs *flag.FlagSet, groups []flagGroup) {
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.flags {
			f := fs.Lookup(name)
			if f == nil {
				continue
			}
			arg, usage := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			if len(f.Name) == 1 {
				line = "  -" + f.Name
			}
			if arg != "" {
				line += " " + arg
			}
			fmt.Fprintf(w, "%s\n", line)
			if def := defaultWord(f); def != "" {
				usage += " (default " + def + ")"
			}
			for _, l := range wrap(usage, 76) {
				fmt.Fprintf(w, "      %s\n", l)
			}
		}
	}
}

// defaultWord is f's default as the usage shows it: nothing for a zero
// value (whose meaning the usage says in words), a string quoted.
func defaultWord(f *flag.Flag) string {
	switch f.DefValue {
	case "", "0", "false", "0s":
		return ""
	}
	if _, ok := f.Value.(interface{ IsBoolFlag() bool }); ok {
		return ""
	}
	if arg, _ := flag.UnquoteUsage(f); arg == "string" || strings.ContainsAny(f.DefValue, " :/") {
		return fmt.Sprintf("%q", f.DefValue)
	}
	return f.DefValue
}

// wrap breaks s into lines of at most width bytes, at spaces.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}
