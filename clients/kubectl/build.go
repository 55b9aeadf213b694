package kubectl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/execconform/execconform/proctable"
)

// The kubectl the suite builds: the kubectl library at ModuleVersion,
// which Kubernetes releases as kubectl Version.
const (
	ModuleVersion = "v0.37.2"
	Version       = "v1.37.2"
)

// ErrNoGo is the error of Build on a machine without a go command.
var ErrNoGo = errors.New("kubectl: no go command to build kubectl with")

// ldflags are those of a release build, as far as they show: the
// version that `kubectl version --client` prints and that client-go
// puts in the User-Agent (kubectl/v1.37.2 (linux/amd64)
// kubernetes/unknown: no commit is claimed), stripped of symbols.
var ldflags = func() string {
	major, minor, _ := strings.Cut(strings.TrimPrefix(Version, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	flags := []string{"-s", "-w"}
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags,
			"-X", pkg+".gitVersion="+Version,
			"-X", pkg+".gitMajor="+major,
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitCommit=",
			"-X", pkg+".gitTreeState=clean")
	}
	return strings.Join(flags, " ")
}()

// sourceFiles are the files of the kubectlbin module that decide the binary.
var sourceFiles = []string{"go.mod", "go.sum", "main.go"}

// DefaultSource is the kubectlbin module's directory beside this file, ""
// when this package was built without its source paths (-trimpath).
func DefaultSource() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return ""
	}
	dir := filepath.Join(filepath.Dir(file), "kubectlbin")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return ""
	}
	return dir
}

// DefaultCacheDir is where Build keeps its binaries:
// $XDG_CACHE_HOME/execconform/clients, by default
// $HOME/.cache/execconform/clients.
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("kubectl: cache directory: %w", err)
	}
	return filepath.Join(dir, "execconform", "clients"), nil
}

// BuildOptions say what Build builds and where it keeps it.
type BuildOptions struct {
	// Source is the kubectlbin module (default DefaultSource).
	Source string
	// CacheDir holds one directory per version, kubectl-ModuleVersion
	// (default DefaultCacheDir).
	CacheDir string
	// Go is the go command (default: "go" on PATH).
	Go string
	// Output receives the go command's output (nil: kept for the error only).
	Output io.Writer
}

// Build returns the path of the cached kubectl, building it first if it
// is missing or was built from other sources (a stamp beside it holds
// the hash of the sources and the flags). Building takes minutes on a
// cold build cache (measured: 101 s on 2 cores) and seconds on a warm
// one; a cached binary costs a stat and a read of its stamp. It is safe
// for two processes to build at once: a lock file makes the second
// wait, and the binary is built into a temporary file renamed into
// place. Without its source (Source empty and none found), a cached
// binary is used as it is.
func Build(ctx context.Context, opts BuildOptions) (string, error) {
	if opts.Source == "" {
		opts.Source = DefaultSource()
	}
	if opts.CacheDir == "" {
		dir, err := DefaultCacheDir()
		if err != nil {
			return "", err
		}
		opts.CacheDir = dir
	}
	dir := filepath.Join(opts.CacheDir, "kubectl-"+ModuleVersion)
	bin := filepath.Join(dir, "kubectl")
	if opts.Source == "" {
		if _, err := os.Stat(bin); err == nil {
			return bin, nil
		}
		return "", fmt.Errorf("kubectl: no cached binary at %s and no kubectlbin source to build it from (this package was built with -trimpath?)", bin)
	}
	stamp, err := sourceStamp(opts.Source)
	if err != nil {
		return "", err
	}
	if fresh(bin, stamp) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("kubectl: %w", err)
	}
	unlock, err := lock(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if fresh(bin, stamp) { // built by whoever held the lock
		return bin, nil
	}
	goCmd, err := goCommand(opts.Go)
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".kubectl-*")
	if err != nil {
		return "", fmt.Errorf("kubectl: %w", err)
	}
	tmpName := tmp.Name()
	_ = tmp.Close()
	defer os.Remove(tmpName) // gone after the rename; left by a failed build
	var out strings.Builder
	var w io.Writer = &out
	if opts.Output != nil {
		w = io.MultiWriter(&out, opts.Output)
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-ldflags", ldflags, "-o", tmpName, ".")
	cmd.Dir = opts.Source
	cmd.Stdout, cmd.Stderr = w, w
	// The module's own go.mod and go.sum, whatever workspace or flags
	// the caller runs in; tagged like every process the suite starts,
	// so that a build left by a killed test is found and reaped.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly",
		proctable.SessionEnv+"=kubectl-build", proctable.ServerPIDEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kubectl: go build in %s: %w\n%s", opts.Source, err, out.String())
	}
	if err := os.Chmod(tmpName, 0o755); err != nil {
		return "", fmt.Errorf("kubectl: %w", err)
	}
	if err := os.Rename(tmpName, bin); err != nil {
		return "", fmt.Errorf("kubectl: %w", err)
	}
	if err := os.WriteFile(bin+".stamp", []byte(stamp+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("kubectl: %w", err)
	}
	if opts.Output != nil {
		fmt.Fprintf(opts.Output, "kubectl: built %s in %s\n", bin, time.Since(start).Round(100*time.Millisecond))
	}
	return bin, nil
}

// sourceStamp hashes the module's files and the build flags.
func sourceStamp(src string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "ldflags %s\n", ldflags)
	for _, f := range sourceFiles {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", fmt.Errorf("kubectl: source: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fresh reports whether bin exists and was built from stamp's sources.
func fresh(bin, stamp string) bool {
	got, err := os.ReadFile(bin + ".stamp")
	if err != nil || strings.TrimSpace(string(got)) != stamp {
		return false
	}
	_, err = os.Stat(bin)
	return err == nil
}

// lock takes an exclusive flock on path, waiting for it until ctx ends.
func lock(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kubectl: lock: %w", err)
	}
	got := make(chan error, 1)
	go func() { got <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-got:
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("kubectl: lock %s: %w", path, err)
		}
		return func() { _ = f.Close() }, nil // closing releases the lock
	case <-ctx.Done():
		// The waiting flock takes the lock some day; closing the file
		// then releases it.
		go func() { <-got; _ = f.Close() }()
		return nil, fmt.Errorf("kubectl: waiting for %s (another build): %w", path, ctx.Err())
	}
}

// goCommand finds the go command.
func goCommand(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	return "", ErrNoGo
}
