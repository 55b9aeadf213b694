package proctable

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Proc is one process from the process table.
//
// Cmdline may be shared between the results of several scans and must not be
// modified.
type Proc struct {
	PID  int `json:"pid"`
	PPID int `json:"ppid"`
	PGID int `json:"pgid"`
	SID  int `json:"sid"`
	// State is the state letter of /proc/PID/stat: R S D Z T t X I ...
	// (in JSON, a one-letter string).
	State byte `json:"-"`
	// StartTime is field 22 of /proc/PID/stat, in clock ticks since boot;
	// (PID, StartTime) identifies a process.
	StartTime uint64 `json:"start_time"`
	// Comm is the kernel's command name (at most 15 bytes).
	Comm string `json:"comm"`
	// Cmdline is the argument vector; nil for kernel threads and zombies.
	Cmdline []string `json:"cmdline"`
	// Session is the value of EXECCONFORM_SESSION in the initial environment,
	// "" if none. For a zombie it is the value seen while it was alive, if
	// this package saw it alive (the kernel no longer exposes it).
	Session string `json:"session,omitempty"`
	// ServerPID is the value of EXECCONFORM_SERVER_PID, 0 if none or not a
	// number. Zombies are treated as for Session.
	ServerPID int `json:"server_pid,omitempty"`
}

// procJSON is Proc's JSON form: State as a letter.
type procJSON struct {
	procFields
	State string `json:"state"`
}

type procFields Proc // Proc without its methods

// MarshalJSON writes p with its state as a letter ("S").
func (p Proc) MarshalJSON() ([]byte, error) {
	return json.Marshal(procJSON{procFields(p), string(rune(p.State))})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Proc) UnmarshalJSON(b []byte) error {
	var j procJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*p = Proc(j.procFields)
	if len(j.State) == 1 {
		p.State = j.State[0]
	}
	return nil
}

// Live reports whether p is alive: false for zombies (Z) and dead tasks (X, x).
func (p Proc) Live() bool { return !isDead(p.State) }

// String formats p like a ps line: "pid=123 sid=123 state=S sh -i".
// Processes without a command line show "[comm]", as ps does, and zombies
// are marked "<defunct>".
func (p Proc) String() string {
	cmd := strings.Join(p.Cmdline, " ")
	if cmd == "" {
		cmd = "[" + p.Comm + "]"
	}
	if p.State == 'Z' {
		cmd += " <defunct>"
	}
	return fmt.Sprintf("pid=%d sid=%d state=%c %s", p.PID, p.SID, p.State, cmd)
}

// id identifies a process across scans.
type id struct {
	pid   int
	start uint64
}

func (p Proc) id() id { return id{p.PID, p.StartTime} }

// describe formats procs for error messages, at most 20 of them.
func describe(procs []Proc) string {
	const max = 20
	if len(procs) == 0 {
		return "(none seen)"
	}
	parts := make([]string, 0, min(len(procs), max)+1)
	for i, p := range procs {
		if i == max {
			parts = append(parts, fmt.Sprintf("and %d more", len(procs)-max))
			break
		}
		parts = append(parts, p.String())
	}
	return strings.Join(parts, "; ")
}
