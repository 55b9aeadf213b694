package report_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/report"
	"github.com/execconform/execconform/scenarios"
)

// TestHTMLInChromium opens the rendered fixture in headless Chromium. The
// golden files pin the HTML text; only a browser runs the filter script and
// applies the :target CSS that make the report usable, so this checks what a
// reader sees: the matrix, a filter, and a failing case's page.
func TestHTMLInChromium(t *testing.T) {
	exe := findBrowser(t)
	f := loadFixture(t)

	var b bytes.Buffer
	require.NoError(t, report.WriteHTML(&b, f))
	path := filepath.Join(t.TempDir(), "report.html")
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
	pageURL := (&url.URL{Scheme: "file", Path: path}).String()

	ctx := startBrowser(t, exe)
	artifacts := artifactDir(t)

	// The matrix: a row per scenario, a link per case, every row shown.
	rows, filtered := expectedRows(f)
	run(t, ctx, "open the report", chromedp.Steps(
		chromedp.Navigate(pageURL),
		chromedp.WaitReady(chromedp.CSS(`body[data-ready="true"]`)),
	))
	assert.Equal(t, rows, count(t, ctx, "#matrix tbody tr"), "matrix rows")
	assert.Equal(t, len(f.Results), count(t, ctx, "#matrix td.cell a"), "matrix links")
	waitShown(t, ctx, rows)
	screenshot(t, ctx, filepath.Join(artifacts, t.Name()+"-matrix.png"))

	// Unchecking PASS and MUST leaves the rows that are not MUST and have
	// a case that did not pass; checking them again brings every row back.
	toggles := []string{
		`#filters input[name="verdict"][value="PASS"]`,
		`#filters input[name="level"][value="MUST"]`,
	}
	click(t, ctx, toggles...)
	waitShown(t, ctx, filtered)
	click(t, ctx, toggles...)
	waitShown(t, ctx, rows)

	// A failing case's page: its link opens it and hides the overview.
	fail := firstFailing(t, f)
	id := report.CaseID(fail.Name)
	sec := `[id="` + id + `"]` // case ids have dots: "#"+id is not a CSS selector
	run(t, ctx, "open "+id+" from the matrix", chromedp.Steps(
		chromedp.Click(chromedp.CSS(`#matrix td.cell a[href="#`+id+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(sec)),
		chromedp.WaitNotVisible(chromedp.CSS("#overview")),
	))
	assert.Equal(t, 1, count(t, ctx, sec+" svg.sequence"), "sequence diagram")
	assert.Positive(t, count(t, ctx, sec+" table.timeline tbody tr"), "timeline rows")
	assert.Equal(t, 1, count(t, ctx, sec+" .evidence"), "evidence box")
	procs := run(t, ctx, "read the process table", chromedp.Text(chromedp.CSS(sec+" table.procs")))
	for _, p := range fail.Live {
		assert.Contains(t, procs, strconv.Itoa(p.PID), "live process in the table")
	}
	screenshot(t, ctx, filepath.Join(artifacts, t.Name()+"-case.png"))
}

// findBrowser finds Chromium or Chrome. Without one the test skips, except
// in CI, which installs Chromium: a test that skips there cannot fail.
func findBrowser(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser", "google-chrome"}
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("no browser in $PATH (looked for %s)", strings.Join(names, ", "))
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI must install one")
	}
	t.Skip(msg)
	return ""
}

// startBrowser starts headless Chromium for the test, bounded in time. The
// cleanup kills it and makes sure none of its processes outlive the test.
func startBrowser(t *testing.T, exe string) context.Context {
	t.Helper()
	procs := &browserProcs{mark: fmt.Sprintf("%s=%d-%d", browserMark, os.Getpid(), time.Now().UnixNano())}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // we may run as root, in a container
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1024),
		chromedp.Env(procs.mark),
	)
	bounded, cancelBounded := context.WithTimeout(context.Background(), 60*time.Second)
	alloc, cancelAlloc := chromedp.NewExecAllocator(bounded, opts...)
	ctx, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf), chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		// Kill the browser and wait for it; chromedp also kills the
		// children that name its profile directory. The crash handler
		// does not: it exits once the browser is gone. Wait for that, and
		// kill and report whatever is left.
		cancelBrowser()
		cancelAlloc()
		cancelBounded()
		if left := procs.waitGone(5 * time.Second); len(left) > 0 {
			t.Errorf("browser processes outlived the test (killed now):\n%s", strings.Join(left, "\n"))
		}
	})
	require.NoError(t, chromedp.Do(ctx), "start %s", exe) // no action: starts the browser
	procs.profile = profileArg(chromedp.FromContext(ctx).Browser.Process().Pid)
	return ctx
}

// browserMark is an environment variable that tags the browser's processes.
const browserMark = "EXECCONFORM_BROWSER_TEST"

// browserProcs finds the processes of one browser, on Linux. Its
// environment mark tags the browser and the crash handler (which leaves
// the process tree); the processes the zygote forks overwrite their
// environment, but their command line names the profile directory (the
// temporary one chromedp makes: no spaces).
type browserProcs struct {
	mark    string // "NAME=value" in the environment
	profile string // "--user-data-dir=..." in the command line
}

// list is the PIDs of the browser's live processes.
func (b *browserProcs) list() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if hasArg(env, b.mark) || b.profile != "" && hasArg(cmd, b.profile) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitGone waits until the browser has no process left, up to limit; then
// it kills those left and describes them.
func (b *browserProcs) waitGone(limit time.Duration) []string {
	// The crash handler is not our child: nothing signals its exit, so
	// the process table is read until it is gone.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(limit); ; <-tick.C {
		pids := b.list()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var left []string
			for _, pid := range pids {
				cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				left = append(left, fmt.Sprintf("%d: %s", pid, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			return left
		}
	}
}

// profileArg is the --user-data-dir argument of process pid.
func profileArg(pid int) string {
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	for arg := range bytes.SplitSeq(cmd, []byte{0}) {
		if bytes.HasPrefix(arg, []byte("--user-data-dir=")) {
			return string(arg)
		}
	}
	return ""
}

// hasArg reports whether the argument list b holds s. The list is
// NUL-separated, or space-separated where Chromium rewrote its command line
// to name the process type.
func hasArg(b []byte, s string) bool {
	for arg := range strings.FieldsFuncSeq(string(b), func(r rune) bool { return r == 0 || r == ' ' }) {
		if arg == s {
			return true
		}
	}
	return false
}

// artifactDir is where the screenshots go, for a human or CI to look at:
// $EXECCONFORM_ARTIFACTS, else test-artifacts/ at the repository root.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EXECCONFORM_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "test-artifacts")
	}
	dir, err := filepath.Abs(dir)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// expectedRows derives the matrix from the fixture rather than from the
// HTML: its rows (one per scenario), and how many stay when PASS and MUST
// are unchecked (rows not at level MUST with a case that did not pass).
func expectedRows(f *harness.ResultsFile) (rows, filtered int) {
	m := harness.NewMatrix(f.Report()) // a row's level, as the report gives it
	scens := map[string]bool{}
	notPassed := map[string]bool{}
	for _, r := range f.Results {
		scens[r.Scenario] = true
		if r.Verdict != harness.Pass {
			notPassed[r.Scenario] = true
		}
	}
	for s := range scens {
		if m.Level[s] != scenarios.MUST && notPassed[s] {
			filtered++
		}
	}
	return len(scens), filtered
}

func firstFailing(t *testing.T, f *harness.ResultsFile) harness.Result {
	t.Helper()
	for _, r := range f.Results {
		if r.Verdict == harness.Fail {
			require.NotEmpty(t, r.Live, "%s: the fixture's failing cases have live processes", r.Name)
			return r
		}
	}
	t.Fatal("the fixture has no failing case")
	return harness.Result{}
}

// stepTimeout bounds each browser step, so that a step waiting for what
// never comes (an element, a visibility) fails by name, well before the
// browser's own deadline.
const stepTimeout = 15 * time.Second

// run runs one chromedp action, bounded by stepTimeout; what names the step
// if it fails.
func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	require.NoError(t, err, what)
	return v
}

// count is the number of elements matching a CSS selector.
func count(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	return run(t, ctx, "count "+sel, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
}

// click clicks each element, as a reader would: the form's change event
// re-applies the filters.
func click(t *testing.T, ctx context.Context, sels ...string) {
	t.Helper()
	for _, sel := range sels {
		run(t, ctx, "click "+sel, chromedp.Click(chromedp.CSS(sel)))
	}
}

// waitShown waits until the script reports want rows shown and want rows
// are visible (the filters apply on the form's change event: the page is
// watched for the DOM mutations they make), then asserts both.
func waitShown(t *testing.T, ctx context.Context, want int) {
	t.Helper()
	const rows = `[...document.querySelectorAll("#matrix tbody tr")].filter(tr => tr.checkVisibility()).length`
	cond := fmt.Sprintf(`document.body.dataset.shownRows === %q && %s === %d`, strconv.Itoa(want), rows, want)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, _ = chromedp.Run(pctx, chromedp.Poll[bool](cond, chromedp.WithPollingMutation())) // the assertions below tell
	cancel()
	type shown struct {
		Attr    string `json:"attr"`
		Visible int    `json:"visible"`
	}
	got := run(t, ctx, "read the rows shown", chromedp.Evaluate[shown](`({attr: document.body.dataset.shownRows, visible: `+rows+`})`))
	assert.Equal(t, strconv.Itoa(want), got.Attr, "data-shown-rows")
	assert.Equal(t, want, got.Visible, "visible matrix rows")
}

// screenshot saves the full page as a PNG artifact and checks that the page
// painted: the image decodes and is not one colour.
func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	buf := run(t, ctx, "screenshot "+path, chromedp.FullScreenshot(100)) // 100: PNG
	require.NoError(t, os.WriteFile(path, buf, 0o644))
	t.Log("screenshot:", path)
	img, err := png.Decode(bytes.NewReader(buf))
	require.NoError(t, err, path)
	assert.False(t, oneColour(img), "%s: the page did not paint", path)
}

func oneColour(img image.Image) bool {
	r := img.Bounds()
	first := img.At(r.Min.X, r.Min.Y)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if img.At(x, y) != first {
				return false
			}
		}
	}
	return true
}
