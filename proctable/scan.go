package proctable

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// procRoot is where the process table is mounted.
const procRoot = "/proc"

// cache is shared by all scans of procRoot.
var cache imageCache

// Scan reads the whole process table once. Processes that vanish while being
// read are skipped, not errors. Command lines and tags are re-read only for
// processes that are new or have called execve since the previous scan.
func Scan() ([]Proc, error) {
	return scan(procRoot, &cache)
}

// scan reads the process table mounted at root.
func scan(root string, c *imageCache) ([]Proc, error) {
	d, err := os.Open(root)
	if err != nil {
		return nil, fmt.Errorf("proctable: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("proctable: %w", err)
	}
	gen := c.begin()
	procs := make([]Proc, 0, len(names))
	r := reader{root: root, buf: make([]byte, 0, 4096), cache: c, gen: gen}
	for _, name := range names {
		pid, ok := parseUint([]byte(name))
		if !ok || pid == 0 || pid > 1<<31 {
			continue
		}
		p, err := r.read(int(pid))
		if vanished(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
	}
	c.prune(gen)
	return procs, nil
}

// reader reads single processes, reusing one buffer.
type reader struct {
	root  string
	buf   []byte
	cache *imageCache
	gen   uint64
}

// read reads one process. Its error satisfies vanished if the process is
// gone. Kernel threads, zombies and exiting processes have no command line or
// environment (reading environ fails with ESRCH): their fields stay empty.
func (r *reader) read(pid int) (Proc, error) {
	dir := r.root + "/" + strconv.Itoa(pid) + "/"
	var err error
	r.buf, err = readFile(dir+"stat", r.buf)
	if err != nil {
		return Proc{}, err
	}
	s, err := parseStat(r.buf) // s.comm aliases r.buf until the next read
	if err != nil {
		return Proc{}, fmt.Errorf("%w: %s", err, dir+"stat")
	}
	info, ok := r.cache.lookup(r.gen, &s)
	if ok && info.key.comm != string(s.comm) {
		// A zombie, matched by start time alone.
		info.key.comm = string(s.comm)
	}
	if !ok {
		if info, err = r.readInfo(dir, &s); err != nil {
			return Proc{}, err
		}
	}
	p := Proc{
		PID: s.pid, PPID: s.ppid, PGID: s.pgid, SID: s.sid,
		State: s.state, StartTime: s.startTime, Comm: info.key.comm,
		Cmdline: info.cmdline, Session: info.session, ServerPID: info.serverPID,
	}
	if isDead(s.state) {
		p.Cmdline = nil
	}
	return p, nil
}

// readInfo reads the command line and tags of the process image described
// by s, and caches them if they cannot change.
func (r *reader) readInfo(dir string, s *stat) (imageInfo, error) {
	// The caller read stat before cmdline and environ: should the process
	// call execve in between, the new contents are cached under the old
	// image's key, which the next scan will not match.
	info := imageInfo{key: imageKey{
		startTime: s.startTime, comm: string(s.comm),
		argStart: s.argStart, argEnd: s.argEnd,
		envStart: s.envStart, envEnd: s.envEnd,
	}}
	final := true
	if !s.kernelThread() {
		finalArgs, err := r.readImage(dir + "cmdline")
		if err != nil {
			return info, err
		}
		info.cmdline = parseCmdline(r.buf)
		finalEnv, err := r.readImage(dir + "environ")
		if err != nil {
			return info, err
		}
		info.session, info.serverPID = parseEnviron(r.buf)
		// What a live process did not let us read is cached only once
		// it is dead and so cannot change any more.
		final = (finalArgs && finalEnv) || isDead(s.state)
	}
	if final {
		r.cache.store(r.gen, s.pid, info)
	}
	return info, nil
}

// readImage reads into r.buf a file backed by the process's memory
// (cmdline, environ). It reports whether the contents are final: a process
// that has no memory any more (exiting, zombie) fails with ESRCH, and one
// whose memory the caller may not read fails with EACCES; both leave r.buf
// empty, the first not final. An error satisfying vanished means the process
// is gone.
func (r *reader) readImage(path string) (final bool, err error) {
	r.buf, err = readFile(path, r.buf)
	switch {
	case err == nil, denied(err):
		return true, nil
	case errors.Is(err, unix.ESRCH):
		return false, nil
	default:
		return false, err
	}
}

// readFile reads the file at path into buf[:0], growing it as needed.
// Files under /proc report size 0, so it reads until a short read: procfs
// returns all there is in one read when the buffer is large enough, and
// stopping there saves the system call that would return end of file.
func readFile(path string, buf []byte) ([]byte, error) {
	buf = buf[:0]
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return buf, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		room := cap(buf) - len(buf)
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if n > 0 {
			buf = buf[:len(buf)+n]
		}
		switch {
		case err == unix.EINTR:
		case err != nil:
			return buf[:0], &os.PathError{Op: "read", Path: path, Err: err}
		case n < room:
			return buf, nil
		}
	}
}

// vanished reports whether err means the process being read is gone.
func vanished(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

// denied reports whether err means the caller may not read the file
// (another user's environment, when not root); such fields stay empty.
func denied(err error) bool {
	return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
}

// Parse builds a Proc from the contents of /proc/PID/stat, cmdline and
// environ read elsewhere: inside a pod on another machine, through an exec
// (see realapiserver). environ may hold only the entries that matter.
func Parse(stat, cmdline, environ []byte) (Proc, error) {
	s, err := parseStat(stat)
	if err != nil {
		return Proc{}, err
	}
	p := Proc{
		PID: s.pid, PPID: s.ppid, PGID: s.pgid, SID: s.sid,
		State: s.state, StartTime: s.startTime, Comm: string(s.comm),
	}
	if !isDead(s.state) {
		p.Cmdline = parseCmdline(cmdline)
	}
	p.Session, p.ServerPID = parseEnviron(environ)
	return p, nil
}
