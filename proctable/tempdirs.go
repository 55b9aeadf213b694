package proctable

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MkdirTemp makes a temporary directory named execconform-KIND-PID-*, PID
// being this process's, so that SweepTempDirs can tell once its owner is
// dead (a SIGKILLed run cannot remove its own).
func MkdirTemp(kind string) (string, error) {
	return os.MkdirTemp("", fmt.Sprintf("execconform-%s-%d-", kind, os.Getpid()))
}

// SweepTempDirs removes the directories of MkdirTemp under os.TempDir()
// whose owner process is gone, and returns them. A directory whose PID
// names a live process is kept, whoever that is now.
func SweepTempDirs() ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(os.TempDir(), "execconform-*-*-*"))
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, dir := range matches {
		pid, ok := tempDirOwner(filepath.Base(dir))
		if !ok || alive(pid) {
			continue
		}
		if err := removeAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// RemoveTempDirs removes the directories of MkdirTemp under os.TempDir()
// that process pid made, and returns them. The caller knows that pid is
// dead (and not reused): a zombie's directories go too.
func RemoveTempDirs(pid int) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("execconform-*-%d-*", pid)))
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, dir := range matches {
		if owner, ok := tempDirOwner(filepath.Base(dir)); !ok || owner != pid {
			continue
		}
		if err := removeAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// removeAll is os.RemoveAll, tried again for up to 2 s while it fails: a
// killed process's children (a browser's, outside the tagged group) can
// still be writing into the directory as they die ("directory not
// empty").
func removeAll(dir string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := os.RemoveAll(dir)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(50 * time.Millisecond)
		<-t.C
	}
}

// tempDirOwner reads the PID out of a MkdirTemp name
// (execconform-KIND-PID-RANDOM; KIND has no '-' of its own).
func tempDirOwner(name string) (int, bool) {
	parts := strings.Split(name, "-")
	if len(parts) != 4 || parts[0] != "execconform" {
		return 0, false
	}
	pid, err := strconv.Atoi(parts[2])
	return pid, err == nil && pid > 0
}

// alive tells whether pid names a process (a zombie counts: it is not
// gone until reaped, and its parent may still clean up after it).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
