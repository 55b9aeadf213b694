package realapiserver

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/proctable"
)

// ProcSource is where a session's processes are found, killed and waited
// for: this machine's process table (*proctable.Table), or the pod's /proc
// read through execs.
type ProcSource interface {
	Live(ctx context.Context, m proctable.Match) ([]proctable.Proc, error)
	WaitGone(ctx context.Context, m proctable.Match) (time.Duration, []proctable.Proc, error)
	Kill(ctx context.Context, m proctable.Match, sig syscall.Signal) (int, error)
}

// podProcs reads the process table inside the pod, through an exec straight
// to the API server: for a cluster on another machine, whose node's /proc
// this one cannot read. It is still the operating system's table: the
// kernel's /proc/PID/{stat,cmdline,environ} of every process carrying a
// session tag, read by the pod's own sh. Concurrent readers share one exec
// that started after they asked (as PodShells does).
type podProcs struct {
	cl   Cluster
	runs coalescer
}

// podListScript prints, for every process in the pod whose environment
// carries a session tag, three lines: "S stat", "C cmdline" and "E the
// tags", NULs turned into \001. It needs sh, grep, cat and tr (busybox has
// them). A process gone halfway is skipped by the parser (no S line, or an
// empty one).
const podListScript = `for e in $(grep -l ` + proctable.SessionEnv + `= /proc/[0-9]*/environ 2>/dev/null); do
d=${e%/environ}
s=$(cat $d/stat 2>/dev/null) || continue
printf 'S %s\n' "$s"
printf 'C %s\n' "$(tr '\0' '\001' <$d/cmdline 2>/dev/null)"
printf 'E %s\n' "$(tr '\0' '\n' <$e 2>/dev/null | grep '^EXECCONFORM_' | tr '\n' '\001')"
done
echo END`

// podWaitGap is the pause between two reads of the pod's table while
// waiting for processes to go: each read is an exec through the API server,
// the kubelet and the runtime, which should not run back to back.
const podWaitGap = 100 * time.Millisecond

// list reads the tagged processes of the pod.
func (p *podProcs) list(ctx context.Context) ([]proctable.Proc, error) {
	out, err := p.runs.get(ctx, func(ctx context.Context) (string, error) {
		return p.cl.Run(ctx, "sh", "-c", podListScript)
	})
	if err != nil {
		return nil, err
	}
	return parsePodList(out)
}

// parsePodList parses podListScript's output.
func parsePodList(out string) ([]proctable.Proc, error) {
	if !strings.HasSuffix(strings.TrimRight(out, "\n"), "END") {
		return nil, fmt.Errorf("realapiserver: the pod's process list is cut short: %q", tail(out, 200))
	}
	var procs []proctable.Proc
	var stat, cmdline string
	for line := range strings.Lines(out) {
		line = strings.TrimSuffix(line, "\n")
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "S":
			stat, cmdline = rest, ""
		case "C":
			cmdline = rest
		case "E":
			if stat == "" {
				continue
			}
			unNUL := func(s string) []byte { return bytes.ReplaceAll([]byte(s), []byte{1}, []byte{0}) }
			pr, err := proctable.Parse([]byte(stat), unNUL(cmdline), unNUL(rest))
			if err != nil {
				return nil, fmt.Errorf("realapiserver: the pod's /proc: %w", err)
			}
			procs = append(procs, pr)
			stat = ""
		}
	}
	return procs, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (p *podProcs) Live(ctx context.Context, m proctable.Match) ([]proctable.Proc, error) {
	procs, err := p.list(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(procs, func(pr proctable.Proc) bool { return !pr.Live() || !m.Matches(pr) }), nil
}

// WaitGone reads the pod's table until no live process matches m.
func (p *podProcs) WaitGone(ctx context.Context, m proctable.Match) (time.Duration, []proctable.Proc, error) {
	start := time.Now()
	var live []proctable.Proc
	for {
		procs, err := p.Live(ctx, m)
		if err == nil && len(procs) == 0 {
			return time.Since(start), nil, nil
		}
		if err == nil {
			live = procs
		}
		if err != nil && ctx.Err() == nil {
			return time.Since(start), live, err
		}
		t := time.NewTimer(podWaitGap)
		select {
		case <-ctx.Done():
			t.Stop()
			return time.Since(start), live, fmt.Errorf("realapiserver: still live in the pod after %v: %d process(es): %w",
				time.Since(start).Round(time.Millisecond), len(live), ctx.Err())
		case <-t.C:
		}
	}
}

// Kill signals the matching processes in the pod with kill(1), until none
// is left.
func (p *podProcs) Kill(ctx context.Context, m proctable.Match, sig syscall.Signal) (int, error) {
	signalled := map[int]bool{}
	for {
		procs, err := p.Live(ctx, m)
		if err != nil {
			return len(signalled), err
		}
		if len(procs) == 0 {
			return len(signalled), nil
		}
		args := []string{"kill", "-" + strconv.Itoa(int(sig))}
		for _, pr := range procs {
			args = append(args, strconv.Itoa(pr.PID))
			signalled[pr.PID] = true
		}
		// kill fails for a process that exited meanwhile; the next read
		// tells.
		if _, err := p.cl.Run(ctx, args...); err != nil && ctx.Err() != nil {
			return len(signalled), err
		}
	}
}

// Run runs command in the pod through a fresh exec straight to the API
// server (no tty, no stdin) and returns its output; an error if it did not
// end with Success.
func (c Cluster) Run(ctx context.Context, command ...string) (string, error) {
	conn, err := c.Dial(ctx, command, false, false, execproto.ProtocolV5, execproto.ProtocolV4)
	if err != nil {
		return "", fmt.Errorf("realapiserver: exec %s in the pod: %w", command[0], err)
	}
	defer func() { _ = conn.Reset() }()
	select {
	case <-conn.Done():
	case <-ctx.Done():
		return "", fmt.Errorf("realapiserver: %s in the pod did not end: %w", command[0], ctx.Err())
	}
	st, ok, err := conn.Status(ctx)
	if err != nil {
		return conn.Output(), fmt.Errorf("realapiserver: %s in the pod: %w", command[0], err)
	}
	if ok && st.Status != "Success" {
		return conn.Output(), fmt.Errorf("realapiserver: %s in the pod failed: %s %s", command[0], st.Reason, st.Message)
	}
	return conn.Output(), nil
}

// CheckVisible starts a tagged sleep in the pod and waits until the
// server's process source shows it, then kills it: the proof that the
// session's processes are looked for where they are. Against a cluster on
// another machine, or a kind node's processes that this user may not read,
// the host's table shows nothing, and every shell would look gone.
func (s *Server) CheckVisible(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tag := s.Tag()
	m := proctable.Match{Session: tag}
	conn, err := s.cl.Dial(ctx, Mark(tag, []string{"sleep", "60"}), false, false, execproto.ProtocolV5, execproto.ProtocolV4)
	if err != nil {
		return fmt.Errorf("realapiserver: exec a tagged sleep in pod %s/%s: %w", s.cl.Namespace, s.cl.Pod, err)
	}
	defer func() {
		_ = conn.Reset()
		kctx, kcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer kcancel()
		_, _ = s.procs.Kill(kctx, m, 9)
	}()
	for {
		live, err := s.procs.Live(ctx, m)
		if err == nil && len(live) > 0 {
			return nil
		}
		t := time.NewTimer(podWaitGap)
		select {
		case <-ctx.Done():
			t.Stop()
			hint := "set " + EnvProcs + "=" + ProcsPod + " (the pod's /proc, read through execs)"
			if s.cl.Procs == ProcsPod {
				hint = "the pod's image needs sh, grep, cat and tr"
			}
			return fmt.Errorf("realapiserver: a process started in pod %s/%s never showed in %s (last error: %v): %s",
				s.cl.Namespace, s.cl.Pod, s.procsName(), err, hint)
		case <-t.C:
		}
	}
}
