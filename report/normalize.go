package report

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/proctable"
)

// Epoch is the instant a normalised results file starts at.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Normalize makes f comparable across runs, for golden files: the run
// starts at Epoch and each case a second after the one before (every time
// inside a case keeps its offset from the case's start); PIDs become 1000,
// 1001, ... in order of appearance, in the process records and in the
// failure messages; session IDs and the environment are fixed.
func Normalize(f *harness.ResultsFile) {
	f.Started = Epoch
	f.Environment = harness.Environment{GoVersion: "go1.x", OS: "linux", Arch: "amd64", Kernel: "6.x", CPUs: 2, GOMAXPROCS: 2}
	pids := map[int]int{}
	pid := func(p int) int {
		if p == 0 {
			return 0
		}
		if _, ok := pids[p]; !ok {
			pids[p] = 1000 + len(pids)
		}
		return pids[p]
	}
	for i := range f.Results {
		r := &f.Results[i]
		start := Epoch.Add(time.Duration(i+1) * time.Second)
		shift := start.Sub(r.Started)
		r.Started = start
		for _, l := range r.Legs {
			if l.Record != nil {
				l.Record.Started = l.Record.Started.Add(shift)
			}
		}
		session := fmt.Sprintf("s%d", i+1)
		procs := func(ps []proctable.Proc) {
			for j := range ps {
				p := &ps[j]
				p.PID, p.PPID, p.PGID, p.SID, p.ServerPID = pid(p.PID), pid(p.PPID), pid(p.PGID), pid(p.SID), pid(p.ServerPID)
				p.StartTime, p.Session = 0, session
			}
		}
		procs(r.Live)
		if b := r.Backend; b != nil {
			b.Started = b.Started.Add(shift)
			b.PID, b.ID = pid(b.PID), session
			procs(b.Live)
		}
		for _, texts := range [][]string{r.Failures, r.Notes, r.Evidence} {
			for j, t := range texts {
				texts[j] = pidText.ReplaceAllStringFunc(t, func(m string) string {
					sub := pidText.FindStringSubmatch(m)
					n, _ := strconv.Atoi(sub[2])
					return sub[1] + strconv.Itoa(pid(n))
				})
			}
		}
	}
}

// pidText finds PIDs in messages ("pid=123", "sid=123").
var pidText = regexp.MustCompile(`\b(pid=|sid=)(\d+)`)
