package proctable

import (
	"bytes"
	"strconv"
	"sync"
)

var (
	sessionPrefix   = []byte(SessionEnv + "=")
	serverPIDPrefix = []byte(ServerPIDEnv + "=")
)

// parseEnviron extracts the two tags from the contents of /proc/PID/environ
// (NUL-separated NAME=value entries). The first occurrence of a name wins,
// as with getenv.
func parseEnviron(b []byte) (session string, serverPID int) {
	var haveSession, havePID bool
	for len(b) > 0 && !(haveSession && havePID) {
		entry := b
		if i := bytes.IndexByte(b, 0); i >= 0 {
			entry, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		switch {
		case !haveSession && bytes.HasPrefix(entry, sessionPrefix):
			session, haveSession = string(entry[len(sessionPrefix):]), true
		case !havePID && bytes.HasPrefix(entry, serverPIDPrefix):
			havePID = true
			if n, err := strconv.Atoi(string(entry[len(serverPIDPrefix):])); err == nil && n > 0 {
				serverPID = n
			}
		}
	}
	return session, serverPID
}

// parseCmdline splits the contents of /proc/PID/cmdline (NUL-terminated
// arguments) into an argument vector; nil if empty.
func parseCmdline(b []byte) []string {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil
	}
	return toStrings(bytes.Split(b, []byte{0}))
}

func toStrings(bs [][]byte) []string {
	s := make([]string, len(bs))
	for i, b := range bs {
		s[i] = string(b)
	}
	return s
}

// imageKey identifies one process image: the process (PID is the map key,
// plus start time) and what execve changes, namely the command name and the
// addresses of the argument and environment blocks.
type imageKey struct {
	startTime                          uint64
	comm                               string
	argStart, argEnd, envStart, envEnd uint64
}

// imageInfo is what the cache remembers about one process image.
type imageInfo struct {
	key       imageKey
	cmdline   []string
	session   string
	serverPID int
	seen      uint64 // generation of the latest scan that used it
}

// imageCache remembers, per PID, the command line and tags of the process
// image last read, so a scan reads /proc/PID/cmdline and /proc/PID/environ
// only for processes that are new or have called execve since.
type imageCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[int]*imageInfo
}

// begin starts a scan and returns its generation.
func (c *imageCache) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	return c.gen
}

// lookup returns the cached image of pid matching s. The entry of a process
// is kept for as long as the process exists, even when it does not match:
// a process that is exiting has lost its memory (its stat shows the block
// addresses as 0, reading environ fails) and a zombie's stat no longer shows
// its image at all, so for those the image last read will do.
func (c *imageCache) lookup(gen uint64, s *stat) (imageInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[s.pid]
	if e == nil || e.key.startTime != s.startTime {
		return imageInfo{}, false
	}
	e.seen = max(e.seen, gen)
	k := &e.key
	lostMemory := s.envEnd == 0 && k.envEnd != 0
	switch {
	case isDead(s.state):
	case lostMemory && k.comm == string(s.comm):
	case k.comm != string(s.comm) ||
		k.argStart != s.argStart || k.argEnd != s.argEnd ||
		k.envStart != s.envStart || k.envEnd != s.envEnd:
		return imageInfo{}, false
	}
	return *e, true
}

// store records info for pid.
func (c *imageCache) store(gen uint64, pid int, info imageInfo) {
	info.seen = gen
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[int]*imageInfo)
	}
	c.m[pid] = &info
}

// prune forgets processes that the scan of generation gen did not see and
// that no later scan has used.
func (c *imageCache) prune(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for pid, e := range c.m {
		if e.seen < gen {
			delete(c.m, pid)
		}
	}
}

// isDead reports whether a stat state letter means the process has exited.
func isDead(state byte) bool {
	return state == 'Z' || state == 'X' || state == 'x'
}
