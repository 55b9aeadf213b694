package report

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/execconform/execconform/harness"
)

// The files WriteAll writes into a directory.
const (
	JSONFile     = "results.json"
	JUnitFile    = "junit.xml"
	HTMLFile     = "report.html"
	MarkdownFile = "summary.md"
)

// Options adjust the rendering.
type Options struct {
	// HTMLLink is where the HTML report will be for a reader of the
	// Markdown summary and the JUnit failures (a CI artifact's URL);
	// default HTMLFile, next to them.
	HTMLLink string
	// MaxBytes bounds the Markdown summary (default MaxMarkdown): it
	// leaves out what does not fit, and says so.
	MaxBytes int
}

func (o Options) withDefaults() Options {
	if o.HTMLLink == "" {
		o.HTMLLink = HTMLFile
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = MaxMarkdown
	}
	return o
}

// WriteAll writes every format into dir and returns the paths written.
func WriteAll(dir string, f *harness.ResultsFile, o Options) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, w := range []struct {
		name  string
		write func(io.Writer) error
	}{
		{JSONFile, func(w io.Writer) error { return WriteJSON(w, f) }},
		{JUnitFile, func(w io.Writer) error { return WriteJUnit(w, f, o) }},
		{HTMLFile, func(w io.Writer) error { return WriteHTML(w, f) }},
		{MarkdownFile, func(w io.Writer) error { return WriteMarkdown(w, f, o) }},
	} {
		path := filepath.Join(dir, w.name)
		if err := writeFile(path, w.write); err != nil {
			return paths, fmt.Errorf("report: %s: %w", path, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

func writeFile(path string, write func(io.Writer) error) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(fh, 64<<10) // templates write in small pieces
	if err := errors.Join(write(bw), bw.Flush()); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// WriteJSON writes f as results.json (docs/reports.md).
func WriteJSON(w io.Writer, f *harness.ResultsFile) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(f)
}

// JUnit XML, as GitHub Actions (test reporters), GitLab and Prow (Spyglass)
// read it: testsuites > testsuite (one per scenario group) > testcase (one
// per cell of the matrix, classname execconform.GROUP).
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",cdata"`
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteJUnit writes f as JUnit XML. FAIL is a failure and ERROR an error;
// a NON-STRICT case (a SHOULD not met) passes, as it does not fail the
// run, with its evidence in system-out, as INFO cases have theirs.
func WriteJUnit(w io.Writer, f *harness.ResultsFile, o Options) error {
	o = o.withDefaults()
	doc := junitSuites{Name: "execconform", Time: seconds(f.Duration)}
	index := map[string]int{}
	durations := map[int]time.Duration{}
	for _, r := range f.Results {
		g := harness.Group(r.Scenario)
		i, ok := index[g]
		if !ok {
			i = len(doc.Suites)
			index[g] = i
			doc.Suites = append(doc.Suites, junitSuite{Name: "execconform." + g, Timestamp: f.Started.UTC().Format("2006-01-02T15:04:05"),
				Properties: suiteProperties(f)})
		}
		s := &doc.Suites[i]
		c := junitCase{Name: r.Name, Classname: "execconform." + g, Time: seconds(r.Duration)}
		body := caseText(r, o)
		switch r.Verdict {
		case harness.Fail:
			c.Failure = &junitProblem{Message: firstLine(r), Type: string(r.Verdict), Text: body}
			s.Failures++
		case harness.Error:
			c.Error = &junitProblem{Message: firstLine(r), Type: string(r.Verdict), Text: body}
			s.Errors++
		case harness.NonStrict, harness.Info:
			c.SystemOut = body
		}
		s.Tests++
		s.Cases = append(s.Cases, c)
		durations[i] += r.Duration
	}
	for i := range doc.Suites {
		s := &doc.Suites[i]
		s.Time = seconds(durations[i])
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// suiteProperties are the properties of every testsuite: the run's
// target, version and seed, its notices (notice.KIND), and for a series
// of runs their number and which failed.
func suiteProperties(f *harness.ResultsFile) []junitProperty {
	props := []junitProperty{{"target", f.Target}, {"suite_version", f.Suite.Version}, {"seed", fmt.Sprint(f.Seed)}}
	for _, n := range f.Notices {
		props = append(props, junitProperty{"notice." + n.Kind, n.Message})
	}
	if len(f.Runs) > 1 {
		var bad []string
		for _, k := range failedRuns(f) {
			bad = append(bad, fmt.Sprint(k))
		}
		props = append(props, junitProperty{"runs", fmt.Sprint(len(f.Runs))}, junitProperty{"failed_runs", strings.Join(bad, ",")})
	}
	return props
}

// firstLine is a result's verdict and first failure, for a message.
func firstLine(r harness.Result) string {
	msg := string(r.Verdict) + " [" + string(r.Level) + "]"
	if rv := RunVerdicts(r); rv != "" && len(r.RunVerdicts) > 1 {
		msg += " (" + rv + " of " + fmt.Sprint(len(r.RunVerdicts)) + ")"
	}
	if len(r.Failures) > 0 {
		msg += ": " + r.Failures[0]
	}
	if len(msg) > 300 {
		msg = msg[:297] + "..."
	}
	return msg
}

// caseText is a case's verdict, failures, evidence and diagnosis as text.
func caseText(r harness.Result, o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s [%s]\n", r.Verdict, r.Name, r.Level)
	if len(r.RunVerdicts) > 1 {
		fmt.Fprintf(&b, "\nin each run: %s (the details below are run %d's)\n", eachRun(r), r.Run)
	}
	if len(r.Failures) > 0 {
		b.WriteString("\nfailures:\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "  - %s\n", f)
		}
	}
	if ev := evidence(r); len(ev) > 0 {
		b.WriteString("\nevidence:\n")
		for _, l := range ev {
			fmt.Fprintf(&b, "  - %s\n", l)
		}
	}
	for _, l := range r.LooksLike {
		fmt.Fprintf(&b, "\nlooks like: %s\n", l)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nnotes:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	if r.TargetOutput != "" {
		fmt.Fprintf(&b, "\nthe proxy's output (tail):\n%s\n", r.TargetOutput)
	}
	fmt.Fprintf(&b, "\nframe timeline: %s#%s\n", o.HTMLLink, CaseID(r.Name))
	return b.String()
}

// Counts are a run's cases per level and verdict, in display order.
func Counts(f *harness.ResultsFile) string {
	var parts []string
	for _, l := range levelOrder {
		vs, ok := f.Summary[l]
		if !ok {
			continue
		}
		var each []string
		for _, v := range verdictOrder {
			if vs[v] > 0 {
				each = append(each, fmt.Sprintf("%d %s", vs[v], v))
			}
		}
		parts = append(parts, fmt.Sprintf("%s %s", l, strings.Join(each, ", ")))
	}
	return strings.Join(parts, "; ")
}

// eachRun is a combined case's verdict in each run of its series:
// "run 1 FAIL, run 2 PASS".
func eachRun(r harness.Result) string {
	parts := make([]string, len(r.RunVerdicts))
	for i, v := range r.RunVerdicts {
		parts[i] = fmt.Sprintf("run %d %s", i+1, v)
	}
	return strings.Join(parts, ", ")
}

// runDirName matches RunDir's names.
var runDirName = regexp.MustCompile(`^run-[0-9]+$`)

// RemoveRunDirs removes the run directories (RunDir) an earlier series of
// runs left in dir, so that a new run's reports are not read beside a
// stale run's. A directory holding anything but the reports is left alone.
func RemoveRunDirs(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	ours := []string{JSONFile, JUnitFile, HTMLFile, MarkdownFile}
	for _, e := range entries {
		if !e.IsDir() || !runDirName.MatchString(e.Name()) {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		files, err := os.ReadDir(sub)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(files, func(f os.DirEntry) bool { return f.IsDir() || !slices.Contains(ours, f.Name()) }) {
			continue
		}
		if err := os.RemoveAll(sub); err != nil {
			return fmt.Errorf("report: remove the stale %s: %w", sub, err)
		}
	}
	return nil
}
