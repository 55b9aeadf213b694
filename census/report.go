package census

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// SchemaID names the JSON form of a Report (docs/census.schema.json).
const SchemaID = "execconform-census/v1"

// Report is the census of a cluster (or of one container, in tests).
type Report struct {
	Schema   string    `json:"schema"`
	Started  time.Time `json:"started"`
	Duration Millis    `json:"duration_ms"`
	Rules    RulesJSON `json:"rules"`
	// Scope is what was asked: a namespace ("" with all namespaces), a
	// label selector, a container, pods named.
	Scope  Scope       `json:"scope"`
	Pods   []PodResult `json:"pods"`
	Totals Totals      `json:"totals"`
	// Reaped is set by --reap: what was signalled, and what ended.
	Reaped []ReapResult `json:"reaped,omitempty"`
}

// Millis is a duration written as milliseconds.
type Millis float64

// MillisOf is d in milliseconds, to 0.1 ms.
func MillisOf(d time.Duration) Millis {
	return Millis(math.Round(float64(d)/float64(100*time.Microsecond)) / 10)
}

// RulesJSON is Rules as the report writes them.
type RulesJSON struct {
	IdleSeconds  float64 `json:"idle_seconds"`
	IncludeBusy  bool    `json:"include_busy"`
	IncludeNoTTY bool    `json:"include_notty"`
	Max          int     `json:"max"`
}

// Scope is what the census was asked to look at.
type Scope struct {
	Namespace     string   `json:"namespace"`
	AllNamespaces bool     `json:"all_namespaces"`
	Selector      string   `json:"selector,omitempty"`
	Container     string   `json:"container,omitempty"`
	Pods          []string `json:"pods,omitempty"`
}

// Totals sum the pods.
type Totals struct {
	Containers int `json:"containers"`
	Failed     int `json:"failed"`
	Roots      int `json:"roots"`
	Flagged    int `json:"flagged"`
}

// PodResult is the census of one container of a pod.
type PodResult struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container"`
	Node      string `json:"node,omitempty"`
	// Error says why the container could not be read (exec refused, no
	// sh, timed out); the other fields are then empty.
	Error string `json:"error,omitempty"`
	// Cost is the wall time of the container's exec and parse.
	Cost Millis `json:"cost_ms"`
	// Processes is how many processes the dump held; PID1 is the
	// container's main process's command name.
	Processes int    `json:"processes"`
	PID1      string `json:"pid1,omitempty"`
	// SharedPIDNamespace is set when PID 1 is a pod's pause process: the
	// containers share one PID namespace, every container's main process
	// has PPID 0 too, and nothing is flagged.
	SharedPIDNamespace bool `json:"shared_pid_namespace,omitempty"`
	// TTYTimes is what read the ttys' times: "stat", "ls", "none", "" (no tty).
	TTYTimes string `json:"tty_times"`
	// OwnPID is the census's own shell, whose tree is left out.
	OwnPID  int    `json:"own_pid,omitempty"`
	Roots   []Root `json:"roots"`
	Flagged int    `json:"flagged"`
	// Oldest is the age of the oldest root, in seconds.
	Oldest float64 `json:"oldest_seconds"`
}

// Root is one exec'd tree in the report.
type Root struct {
	PID        int      `json:"pid"`
	StartTicks uint64   `json:"start_ticks"`
	Started    string   `json:"started"`
	AgeSeconds float64  `json:"age_seconds"`
	Comm       string   `json:"comm"`
	Cmdline    []string `json:"cmdline"`
	State      string   `json:"state"`
	// TTY is "pts/N"; "" without a tty.
	TTY string `json:"tty,omitempty"`
	// LastInput and LastOutput are the tty's atime and mtime (RFC 3339;
	// up to 8 s older than the activity, see docs/census.md).
	LastInput  string `json:"last_input,omitempty"`
	LastOutput string `json:"last_output,omitempty"`
	// InputIdleSeconds and OutputIdleSeconds are the least time since the
	// last input and output; -1 when unknown.
	InputIdleSeconds  float64 `json:"input_idle_seconds"`
	OutputIdleSeconds float64 `json:"output_idle_seconds"`
	InputSeen         bool    `json:"input_seen"`
	Children          []Child `json:"children"`
	Flagged           bool    `json:"flagged"`
	Reason            string  `json:"reason"`
}

// Child is a descendant of a root.
type Child struct {
	PID        int      `json:"pid"`
	PPID       int      `json:"ppid"`
	StartTicks uint64   `json:"start_ticks"`
	Comm       string   `json:"comm"`
	Cmdline    []string `json:"cmdline"`
	State      string   `json:"state"`
}

// Result builds a container's result from its snapshot: its trees (by
// root), judged by r, the census's own left out.
func (r Rules) Result(s *Snapshot, root RootFunc) PodResult {
	res := PodResult{Processes: len(s.Procs), TTYTimes: s.TTYSource, Roots: []Root{}}
	for _, p := range s.Procs {
		if p.PID == 1 {
			res.PID1 = p.Comm
		}
	}
	res.SharedPIDNamespace = res.PID1 == "pause"
	for _, t := range Trees(s, root) {
		if t.Own {
			res.OwnPID = t.Root.PID
			continue
		}
		v := r.Judge(s, t)
		if res.SharedPIDNamespace && v.Flagged {
			v.Flagged = false
			v.Reason = "not judged: the pod's containers share one PID namespace (" + v.Reason + ")"
		}
		rt := Root{
			PID: t.Root.PID, StartTicks: t.Root.StartTime,
			Started:    s.Started(t.Root).UTC().Format(time.RFC3339),
			AgeSeconds: s.Age(t.Root).Round(10 * time.Millisecond).Seconds(),
			Comm:       t.Root.Comm, Cmdline: nonNil(t.Root.Cmdline), State: string(rune(t.Root.State)),
			TTY:              v.TTY,
			InputIdleSeconds: secondsOr(v.InputIdle), OutputIdleSeconds: secondsOr(v.OutputIdle),
			InputSeen: v.InputSeen, Children: []Child{}, Flagged: v.Flagged, Reason: v.Reason,
		}
		if v.Times != nil {
			rt.LastInput = time.Unix(v.Times.Atime, 0).UTC().Format(time.RFC3339)
			rt.LastOutput = time.Unix(v.Times.Mtime, 0).UTC().Format(time.RFC3339)
		}
		for _, d := range t.Descendants {
			rt.Children = append(rt.Children, Child{PID: d.PID, PPID: d.PPID, StartTicks: d.StartTime,
				Comm: d.Comm, Cmdline: nonNil(d.Cmdline), State: string(rune(d.State))})
		}
		if v.Flagged {
			res.Flagged++
		}
		res.Oldest = max(res.Oldest, rt.AgeSeconds)
		res.Roots = append(res.Roots, rt)
	}
	return res
}

func secondsOr(d time.Duration) float64 {
	if d < 0 {
		return -1
	}
	return d.Seconds()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Sum fills in r's totals from its pods.
func (r *Report) Sum() {
	r.Totals = Totals{}
	for _, p := range r.Pods {
		r.Totals.Containers++
		if p.Error != "" {
			r.Totals.Failed++
		}
		r.Totals.Roots += len(p.Roots)
		r.Totals.Flagged += p.Flagged
	}
}

// WriteTable writes the report as a table: a row per container, then the
// flagged trees (all trees when verbose), then the totals.
func (r *Report) WriteTable(w io.Writer, verbose bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPOD\tCONTAINER\tROOTS\tLIKELY ORPHANS\tOLDEST\tCOST")
	for _, p := range r.Pods {
		if p.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t%s\t(%s)\n", p.Namespace, p.Pod, p.Container, fmtMillis(p.Cost), p.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", p.Namespace, p.Pod, p.Container, len(p.Roots), p.Flagged, age(p.Oldest, len(p.Roots)), fmtMillis(p.Cost))
	}
	tw.Flush()
	first := true
	for _, p := range r.Pods {
		for _, rt := range p.Roots {
			if !rt.Flagged && !verbose {
				continue
			}
			if first {
				fmt.Fprintln(w)
				first = false
			}
			mark := "  "
			if rt.Flagged {
				mark = "! "
			}
			fmt.Fprintf(w, "%s%s/%s[%s] pid %d %s, %s: %s\n", mark, p.Namespace, p.Pod, p.Container, rt.PID,
				strings.Join(rt.Cmdline, " "), age(rt.AgeSeconds, 1), rt.Reason)
			for _, c := range rt.Children {
				fmt.Fprintf(w, "      child pid %d %s\n", c.PID, strings.Join(c.Cmdline, " "))
			}
		}
	}
	for _, rr := range r.Reaped {
		fmt.Fprintf(w, "reaped %s/%s[%s]: %s\n", rr.Namespace, rr.Pod, rr.Container, rr.summary())
	}
	fmt.Fprintf(w, "\n%d container(s), %d unreadable, %d exec'd tree(s), %d likely orphan(s) (idle > %s)\n",
		r.Totals.Containers, r.Totals.Failed, r.Totals.Roots, r.Totals.Flagged, time.Duration(r.Rules.IdleSeconds*float64(time.Second)))
}

// WriteMarkdown writes the report as Markdown.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "# Census of exec'd shells\n\n%s, %s; idle > %s, max %d. %d container(s), %d unreadable, %d exec'd tree(s), **%d likely orphan(s)**.\n\n",
		r.Started.UTC().Format(time.RFC3339), time.Duration(float64(r.Duration)*float64(time.Millisecond)).Round(time.Millisecond),
		time.Duration(r.Rules.IdleSeconds*float64(time.Second)), r.Rules.Max,
		r.Totals.Containers, r.Totals.Failed, r.Totals.Roots, r.Totals.Flagged)
	fmt.Fprintln(w, "| namespace | pod | container | roots | likely orphans | oldest | cost |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---|---:|")
	for _, p := range r.Pods {
		if p.Error != "" {
			fmt.Fprintf(w, "| %s | %s | %s | - | - | %s | %s |\n", p.Namespace, p.Pod, p.Container, mdEscape(p.Error), fmtMillis(p.Cost))
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %s | %s |\n", p.Namespace, p.Pod, p.Container, len(p.Roots), p.Flagged, age(p.Oldest, len(p.Roots)), fmtMillis(p.Cost))
	}
	var flagged bool
	for _, p := range r.Pods {
		for _, rt := range p.Roots {
			if !rt.Flagged {
				continue
			}
			if !flagged {
				fmt.Fprintln(w, "\n## Likely orphans\n\n| pod | pid | command | tty | age | why |\n|---|---:|---|---|---|---|")
				flagged = true
			}
			fmt.Fprintf(w, "| %s/%s[%s] | %d | `%s` | %s | %s | %s |\n", p.Namespace, p.Pod, p.Container, rt.PID,
				mdEscape(strings.Join(rt.Cmdline, " ")), rt.TTY, age(rt.AgeSeconds, 1), mdEscape(rt.Reason))
		}
	}
	for i, rr := range r.Reaped {
		if i == 0 {
			fmt.Fprintln(w, "\n## Reaped")
		}
		fmt.Fprintf(w, "\n- %s/%s[%s]: %s\n", rr.Namespace, rr.Pod, rr.Container, mdEscape(rr.summary()))
	}
}

func mdEscape(s string) string { return strings.NewReplacer("|", `\|`, "\n", " ", "`", "'").Replace(s) }

func fmtMillis(m Millis) string { return fmt.Sprintf("%.0f ms", float64(m)) }

func age(sec float64, n int) string {
	if n == 0 {
		return "-"
	}
	return round(time.Duration(sec * float64(time.Second))).String()
}
