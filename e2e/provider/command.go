package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// runCommand runs cmd with env's variables, its stdio ours, passing on the
// signals we get, and returns its exit status (128+N when signal N ended it).
func runCommand(cmd []string, env *targetEnv, sigs <-chan os.Signal) (int, error) {
	c := exec.Command(cmd[0], cmd[1:]...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	c.Env = append(os.Environ(), env.vars()...)
	if err := c.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", cmd[0], err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = c.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err := c.Wait()
	close(done)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	default:
		return 0, err
	}
}
