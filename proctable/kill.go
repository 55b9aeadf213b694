package proctable

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pidfdSignalProcessGroup is PIDFD_SIGNAL_PROCESS_GROUP (Linux 6.9): signal
// the process group of the pidfd's process rather than the process.
const pidfdSignalProcessGroup = 4

// Kill sends sig to every live process matching m, and to the process groups
// they lead, scanning repeatedly until none is left or ctx ends. It returns
// how many matching processes it signalled; each process (PID and start
// time) is signalled once, so processes forked meanwhile are caught by later
// scans. The calling process is never signalled, nor its own process group.
//
// If ctx ends first, the error lists the processes still live and wraps
// ctx's error, and any error from sending a signal.
func (t *Table) Kill(ctx context.Context, m Match, sig syscall.Signal) (int, error) {
	start := time.Now()
	self := os.Getpid()
	signalled := make(map[id]bool)
	var live []Proc
	var sigErr error
	for {
		procs, err := t.Live(ctx, m)
		if err != nil {
			elapsed := time.Since(start)
			if ctx.Err() == nil {
				return len(signalled), err
			}
			return len(signalled), errors.Join(stillLive(elapsed, live, err), sigErr)
		}
		live = slices.DeleteFunc(procs, func(p Proc) bool { return p.PID == self })
		if len(live) == 0 {
			return len(signalled), nil
		}
		if err := signalAll(live, sig, signalled); err != nil && sigErr == nil {
			sigErr = err
		}
	}
}

// signalAll sends sig to the procs not yet in signalled, and records those
// it reached. Group leaders go first, so that one signal reaches a whole
// group. It returns the first error.
func signalAll(procs []Proc, sig syscall.Signal, signalled map[id]bool) error {
	var first error
	for _, leaders := range []bool{true, false} {
		for _, p := range procs {
			if leads(p) != leaders || signalled[p.id()] {
				continue
			}
			sent, group, err := signal(p, sig)
			if err != nil && first == nil {
				first = err
			}
			if !sent {
				continue
			}
			signalled[p.id()] = true
			if group {
				// The group signal reached every member seen in this scan.
				for _, q := range procs {
					if q.PGID == p.PGID {
						signalled[q.id()] = true
					}
				}
			}
		}
	}
	return first
}

// leads reports whether p leads its process group.
func leads(p Proc) bool { return p.PGID == p.PID }

// signal sends sig to p, or to the process group p leads unless that is the
// caller's, provided p (same PID and start time) still exists. It reports
// whether it sent the signal, and whether to the group. A process that no
// longer exists is not an error: the next scan will not show it either.
func signal(p Proc, sig syscall.Signal) (sent, group bool, err error) {
	group = leads(p) && p.PGID != unix.Getpgrp()
	fd, err := unix.PidfdOpen(p.PID, 0)
	switch {
	case err == unix.ESRCH:
		return false, false, nil
	case err != nil:
		return signalByPID(p, sig, group)
	}
	defer unix.Close(fd)
	// fd now pins one process; make sure it is p and not a reuse of its PID.
	if !sameProcess(p) {
		return false, false, nil
	}
	if group {
		err = unix.PidfdSendSignal(fd, sig, nil, pidfdSignalProcessGroup)
		if err == unix.EINVAL { // kernel before 6.9
			err = unix.Kill(-p.PGID, sig)
		}
	} else {
		err = unix.PidfdSendSignal(fd, sig, nil, 0)
	}
	return result(p, group, err)
}

// result turns the outcome of a kill into signal's results.
func result(p Proc, group bool, err error) (sent, sentGroup bool, _ error) {
	switch err {
	case nil:
		return true, group, nil
	case unix.ESRCH:
		return false, false, nil
	default:
		return false, false, &os.SyscallError{Syscall: "kill " + p.String(), Err: err}
	}
}

// signalByPID is signal for kernels without pidfd_open (before 5.3), where
// the PID could be reused between the check and the signal.
func signalByPID(p Proc, sig syscall.Signal, group bool) (sent, sentGroup bool, err error) {
	if !sameProcess(p) {
		return false, false, nil
	}
	target := p.PID
	if group {
		target = -p.PGID
	}
	return result(p, group, unix.Kill(target, sig))
}

// sameProcess reports whether p's PID still names p, a process with its
// start time.
func sameProcess(p Proc) bool {
	b, err := readFile(procRoot+"/"+strconv.Itoa(p.PID)+"/stat", nil)
	if err != nil {
		return false
	}
	s, err := parseStat(b)
	return err == nil && s.startTime == p.StartTime
}
