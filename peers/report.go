package peers

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/scenarios"
)

// Info describes a run of a peer: what was run, where and how.
type Info struct {
	Name      string   `json:"name"`
	Title     string   `json:"title"`
	Module    string   `json:"module"`
	Version   string   `json:"version"` // from the running program's build information
	Package   string   `json:"package"`
	Config    []string `json:"config"`
	Date      string   `json:"date"` // UTC, YYYY-MM-DD
	GoVersion string   `json:"go_version"`
	Platform  string   `json:"platform"` // GOOS/GOARCH
	CPUs      int      `json:"cpus"`
	// The harness options of the run.
	Parallel       int           `json:"parallel"`
	Grace          time.Duration `json:"grace_ns"`
	KeepaliveBound time.Duration `json:"keepalive_bound_ns"` // 0: none declared
	Cases          int           `json:"cases"`
	// Run is the expression that selected the cases ("": the full matrix).
	Run string `json:"run,omitempty"`
	// Dialect is the front dialect the client spoke ("": the Kubernetes
	// subprotocols); the cases are scenarios.DialectCases', and
	// NotApplicable are the cells that cannot run in it, with why.
	Dialect       string                    `json:"dialect,omitempty"`
	NotApplicable []scenarios.NotApplicable `json:"not_applicable,omitempty"`
	// Command is how the page was generated ("": Command).
	Command string `json:"command,omitempty"`
}

// NewInfo describes peer p run with opts over n cases (selected by the
// expression run, "" for the full matrix), now.
func NewInfo(p Peer, opts harness.Options, n int, run string) Info {
	parallel, grace := opts.Parallel, opts.Grace
	if parallel <= 0 {
		parallel = harness.DefaultParallel()
	}
	if grace <= 0 {
		grace = 3 * time.Second
	}
	return Info{
		Name: p.Name, Title: p.Title, Module: p.Module, Version: ModuleVersion(p.Module), Package: p.Package,
		Config: p.Config, Date: time.Now().UTC().Format("2006-01-02"), GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH, CPUs: runtime.NumCPU(),
		Parallel: parallel, Grace: grace, KeepaliveBound: opts.KeepaliveBound, Cases: n, Run: run,
	}
}

// ModuleVersion is the version of module path in the running program's
// build information, the pinned one when a replace pins it ("unknown"
// when it is not there, as in some test binaries).
func ModuleVersion(path string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range bi.Deps {
		if d.Path != path {
			continue
		}
		if d.Replace != nil {
			if d.Replace.Path == d.Path {
				// A pin (replace m => m vX): vX is the code linked.
				return d.Replace.Version
			}
			return d.Version + " => " + d.Replace.Path + " " + d.Replace.Version
		}
		return d.Version
	}
	return "unknown"
}

// File is a peer's JSON file: the CLI's results.json
// (harness.ResultsFile) with a "peer" object added.
type File struct {
	harness.ResultsFile
	Peer Info `json:"peer"`
}

// NewFile is the JSON file of a run, slimmed to what is published
// (Published).
func NewFile(info Info, rep *harness.Report) File {
	f := File{ResultsFile: harness.NewResultsFile(info.Name, rep), Peer: info}
	f.Results = Published(f.Results)
	return f
}

// What a peer's JSON file keeps of each case: docs/peers/ is regenerated
// into the repository's history by every make peers, so it holds the
// verdicts, failures, findings (their evidence: the message is the
// failure of the same index) and evidence of every case, but frames only
// of the cases that did not pass (the first and last PublishedFrames/2 of
// the backend leg, none of the client leg; each leg's close record is
// kept, its per-direction counts are not),
// at most PublishedLive of the processes left alive (Observed.LiveProcesses
// counts them all), and not the API server's view of the session
// (Result.Backend). The full traces are in a local run's results.json.
const (
	PublishedFrames = 2
	PublishedLive   = 1
)

// Published is results as a peer's JSON file keeps them (see
// PublishedFrames); results itself is not changed.
func Published(results []harness.Result) []harness.Result {
	out := slices.Clone(results)
	for i := range out {
		r := &out[i]
		keep := PublishedFrames
		if r.Verdict == harness.Pass {
			keep = 0
		}
		legs := make(map[scenarios.Leg]*harness.LegView, len(r.Legs))
		for l, v := range r.Legs {
			v := *v
			if v.Record != nil {
				keep := keep
				if l == scenarios.ClientLeg {
					keep = 0 // the client's own view: its close record says enough
				}
				rec := v.Record.Trim(keep)
				if keep == 0 {
					rec.FramesDropped += int64(len(rec.Frames))
					rec.Frames = nil
				}
				rec.Stats = nil
				v.Record = &rec
			}
			legs[l] = &v
		}
		if r.Legs != nil {
			r.Legs = legs
		}
		if len(r.Live) > PublishedLive {
			r.Live = slices.Clone(r.Live[:PublishedLive])
		}
		r.Backend = nil
		if len(r.Findings) == len(r.Failures) {
			r.Findings = slices.Clone(r.Findings)
			for j := range r.Findings {
				r.Findings[j].Message = "" // failures[j] says it
			}
		}
	}
	return out
}

// WriteFile writes f as dir/<name>.json, compact (indented, it was 70%
// larger).
func WriteFile(dir string, f File) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, f.Peer.Name+".json"), append(b, '\n'), 0o644)
}

// ReadFile reads dir/<name>.json.
func ReadFile(dir, name string) (File, error) {
	var f File
	b, err := os.ReadFile(filepath.Join(dir, name+".json"))
	if err != nil {
		return f, err
	}
	var head struct{ Schema string }
	if err := json.Unmarshal(b, &head); err == nil && head.Schema != harness.ResultsSchema {
		return f, fmt.Errorf("%s.json has results schema %q, not %q", name, head.Schema, harness.ResultsSchema)
	}
	err = json.Unmarshal(b, &f)
	return f, err
}

// Levels in report order.
var Levels = []scenarios.Level{scenarios.MUST, scenarios.SHOULD, scenarios.INFO}

// LevelCount is how one level's cases ended.
type LevelCount struct {
	Level                                     scenarios.Level
	Cases, Pass, Fail, NonStrict, Info, Error int
}

// CountLevels tallies rep per level, in Levels order (levels without
// cases left out).
func CountLevels(rep *harness.Report) []LevelCount {
	counts := rep.Counts()
	var out []LevelCount
	for _, l := range Levels {
		c := counts[l]
		if len(c) == 0 {
			continue
		}
		lc := LevelCount{Level: l, Pass: c[harness.Pass], Fail: c[harness.Fail], NonStrict: c[harness.NonStrict], Info: c[harness.Info], Error: c[harness.Error]}
		for _, n := range c {
			lc.Cases += n
		}
		out = append(out, lc)
	}
	return out
}

// String is the count in one line: "MUST 48/221 pass, 173 fail"; INFO
// cases are not judged: "INFO 20 info".
func (c LevelCount) String() string {
	var parts []string
	if c.Level != scenarios.INFO || c.Pass > 0 {
		parts = append(parts, fmt.Sprintf("%d/%d pass", c.Pass, c.Cases))
	}
	for _, p := range []struct {
		n    int
		word string
	}{{c.Fail, "fail"}, {c.NonStrict, "non-strict"}, {c.Info, "info"}, {c.Error, "error"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.word))
		}
	}
	return fmt.Sprintf("%s %s", c.Level, strings.Join(parts, ", "))
}

// Reason is a distinct way cases failed, with the cases that show it.
type Reason struct {
	Text   string
	Levels []scenarios.Level
	Cases  []string
}

var (
	sessionPrefix = regexp.MustCompile(`^session \d+/\d+: `)
	stillAlive    = regexp.MustCompile(`^\d+ of the session's processes still alive (\S+) after the ending: (.*)$`)
	procName      = regexp.MustCompile(`pid=\d+ sid=\d+ state=\S+ `)
	stdinPayload  = regexp.MustCompile(`stdin "(?:[^"\\]|\\.)*"`)
	earlierFrames = regexp.MustCompile(`^\d+ earlier frames$`)
)

// reasonKey is a failure message without what differs between cases of
// the same cause (pids, payloads, session numbers, error details); "" for
// lines that only count other lines.
func reasonKey(msg string) string {
	msg = sessionPrefix.ReplaceAllString(msg, "")
	if strings.HasPrefix(msg, "... and ") {
		return ""
	}
	head, evidence, hasEvidence := strings.Cut(msg, "; after the ending the backend received: ")
	if m := stillAlive.FindStringSubmatch(head); m != nil {
		head = "the session's processes (the shell, and its foreground program if any) still alive " + m[1] + " after the ending"
	}
	if strings.HasPrefix(head, "the proxy ended the client connection without a close frame") {
		head = "the proxy ended the client connection without a close frame (the client saw 1006)"
	}
	if !hasEvidence {
		return head
	}
	frames, tcp, _ := strings.Cut(evidence, "; TCP: ")
	frames = stdinPayload.ReplaceAllString(frames, "stdin data")
	var parts []string
	for _, p := range strings.Split(frames, ", ") {
		if earlierFrames.MatchString(p) || (len(parts) > 0 && parts[len(parts)-1] == p) {
			continue
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("%s; after the ending the backend received: %s; TCP: %s", head, strings.Join(parts, ", "), tcp)
}

// Reasons groups the failures of the failed cases of rep by reason, most
// cases first.
func Reasons(rep *harness.Report) []Reason {
	by := map[string]*Reason{}
	for _, r := range rep.Failed() {
		seen := map[string]bool{}
		for _, f := range r.Failures {
			k := reasonKey(f)
			if k == "" || seen[k] {
				continue
			}
			seen[k] = true
			rs := by[k]
			if rs == nil {
				rs = &Reason{Text: k}
				by[k] = rs
			}
			rs.Cases = append(rs.Cases, r.Name)
			if !slices.Contains(rs.Levels, r.Level) {
				rs.Levels = append(rs.Levels, r.Level)
			}
		}
	}
	out := make([]Reason, 0, len(by))
	for _, r := range by {
		slices.SortFunc(r.Levels, func(a, b scenarios.Level) int {
			return slices.Index(Levels, a) - slices.Index(Levels, b)
		})
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i].Cases) != len(out[j].Cases) {
			return len(out[i].Cases) > len(out[j].Cases)
		}
		return out[i].Text < out[j].Text
	})
	return out
}

// Change is a case whose verdict differs between two runs.
type Change struct {
	Case     string
	Old, New harness.Verdict
}

// Changes lists the cases whose verdict differs between old and rep.
func Changes(old, rep *harness.Report) []Change {
	was := map[string]harness.Verdict{}
	for _, r := range old.Results {
		was[r.Name] = r.Verdict
	}
	var out []Change
	for _, r := range rep.Results {
		if v, ok := was[r.Name]; ok && v != r.Verdict {
			out = append(out, Change{r.Name, v, r.Verdict})
		}
	}
	return out
}

// Drift is a case with the same verdict in two runs whose observations
// (harness.Observed: how the backend TCP ended, who closed first, close
// codes, status, live processes) differ.
type Drift struct {
	Case  string
	Diffs []string // "backend TCP eof -> reset"
}

// Drifts lists the cases of rep with old's verdict but other observations.
func Drifts(old, rep *harness.Report) []Drift {
	was := map[string]harness.Result{}
	for _, r := range old.Results {
		was[r.Name] = r
	}
	var out []Drift
	for _, r := range rep.Results {
		o, ok := was[r.Name]
		if !ok || o.Verdict != r.Verdict {
			continue
		}
		a, b := o.Observed, r.Observed
		var d []string
		add := func(what string, x, y any) {
			if x != y {
				d = append(d, fmt.Sprintf("%s %v -> %v", what, x, y))
			}
		}
		add("backend TCP", a.BackendTCP, b.BackendTCP)
		add("first close by", quoteEmpty(a.CloseFirstBy), quoteEmpty(b.CloseFirstBy))
		add("proxy's close code to the backend", a.TargetCloseCode, b.TargetCloseCode)
		add("backend's close code", a.ServerCloseCode, b.ServerCloseCode)
		add("client's close code", a.ClientCloseCode, b.ClientCloseCode)
		add("status", a.Status, b.Status)
		add("live processes", a.LiveProcesses, b.LiveProcesses)
		if len(d) > 0 {
			out = append(out, Drift{Case: r.Name, Diffs: d})
		}
	}
	return out
}

func quoteEmpty(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}

// WriteMarkdownMatrix writes rep as a Markdown table: a row per scenario,
// a column per subprotocol and mode (tty first), cells as in the CLI's
// matrix ("ok", "FAIL", "NS" for a failed SHOULD, "info", "ERROR", "-"
// where the case does not exist).
func WriteMarkdownMatrix(w io.Writer, rep *harness.Report) {
	m := harness.NewMatrix(rep)
	fmt.Fprint(w, "| scenario | level |")
	for _, c := range m.Cols {
		fmt.Fprintf(w, " %s |", c.Name())
	}
	fmt.Fprint(w, "\n|---|---|")
	for range m.Cols {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	for _, row := range m.Rows {
		fmt.Fprintf(w, "| `%s` | %s |", row, m.Level[row])
		for _, c := range m.Cols {
			r, ok := m.Cell(row, c)
			fmt.Fprintf(w, " %s |", cellText(r, ok))
		}
		fmt.Fprintln(w)
	}
}

func cellText(r harness.Result, ok bool) string {
	if !ok {
		return "-"
	}
	switch r.Verdict {
	case harness.Pass:
		return "ok"
	case harness.Fail:
		return "**FAIL**"
	case harness.NonStrict:
		return "NS"
	case harness.Info:
		return "info"
	}
	return string(r.Verdict)
}

// WriteIndexDir writes dir/README.md, the index of every peer's JSON file
// in dir: those of All first, in their order, then any other (a peer of
// another module, peers/argocd), by name. It returns the path written.
func WriteIndexDir(dir string) (string, error) {
	var names []string
	for _, p := range All() {
		names = append(names, p.Name)
	}
	others, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return "", err
	}
	sort.Strings(others)
	for _, o := range others {
		n := strings.TrimSuffix(filepath.Base(o), ".json")
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	var files []File
	sizes := map[string]int64{}
	for _, n := range names {
		f, err := ReadFile(dir, n)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return "", err
		}
		files = append(files, f)
		if st, err := os.Stat(filepath.Join(dir, n+".json")); err == nil {
			sizes[n] = st.Size()
		}
	}
	var b strings.Builder
	WriteIndex(&b, files, sizes)
	path := filepath.Join(dir, "README.md")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}
