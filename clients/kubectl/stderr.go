package kubectl

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// stderrSplitter separates what kubectl writes on stderr into its log
// lines (klog's "I1207 17:31:05.519573   20705 file.go:632] ...", each
// written whole, but read from the pipe together with what came before:
// a notty shell's prompt, which has no newline) and the rest: the
// remote stderr of a notty session and kubectl's own messages ("command
// terminated with exit code 3"), which are output, passed on as they
// come. Only bytes that could still begin a klog header are held back
// (from an I, W, E or F until the header is whole, or a byte that
// cannot be in it).
type stderrSplitter struct {
	output func([]byte)      // output bytes, in order
	text   func(string)      // each whole line of output (for the stderr tail)
	log    func(line string) // each log line, without its newline

	atStart bool   // the next byte begins a line
	pending []byte // what could be the start of a klog header
	inLog   bool   // the current line is a log line
	logLine []byte
	block   bool   // inside a multi-line value of a log line (`key=<` ... ` >`)
	textBuf []byte // the current output line
}

func newStderrSplitter(output func([]byte), text, log func(string)) *stderrSplitter {
	return &stderrSplitter{output: output, text: text, log: log, atStart: true}
}

// klogHeader matches b against klog's header, "Lmmdd hh:mm:ss.uuuuuu
// threadid file:line] ": whether b can begin one, and whether b is one
// whole.
func klogHeader(b []byte) (prefix, whole bool) {
	const fixed = "L0000 00:00:00.000000 " // L: severity; 0: a digit
	for i, c := range b {
		switch {
		case i < len(fixed):
			ok := false
			switch fixed[i] {
			case 'L':
				ok = c == 'I' || c == 'W' || c == 'E' || c == 'F'
			case '0':
				ok = c >= '0' && c <= '9'
			default:
				ok = c == fixed[i]
			}
			if !ok {
				return false, false
			}
		default:
			// Then spaces, the thread id, a space, file:line, "] ".
			rest := string(b[len(fixed) : i+1])
			if !klogTail(rest) {
				return false, false
			}
			if strings.HasSuffix(rest, "] ") {
				return true, true
			}
		}
		if i > 120 {
			return false, false
		}
	}
	return true, false
}

// klogTail reports whether rest can begin "   threadid file.go:line] ".
func klogTail(rest string) bool {
	r := strings.TrimLeft(rest, " ")
	id := strings.IndexFunc(r, func(c rune) bool { return c < '0' || c > '9' })
	if id < 0 {
		return true // spaces and digits so far
	}
	if id == 0 || r[id] != ' ' {
		return false
	}
	file := r[id+1:]
	if strings.ContainsAny(file, " \n") && !strings.HasSuffix(file, "] ") {
		return false
	}
	return !strings.Contains(strings.TrimSuffix(file, " "), " ")
}

func (s *stderrSplitter) write(b []byte) {
	var out []byte
	emit := func(p []byte) {
		out = append(out, p...)
		for _, c := range p {
			if c == '\n' {
				s.text(strings.TrimRight(string(s.textBuf), "\r"))
				s.textBuf = s.textBuf[:0]
				s.atStart = true
				continue
			}
			s.atStart = false
			s.textBuf = append(s.textBuf, c)
		}
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case s.inLog:
			if c == '\n' {
				line := string(s.logLine)
				s.log(line)
				switch {
				case strings.HasSuffix(line, "=<"):
					s.block = true // klog's multi-line value: its lines are the log's
				case s.block && line == " >":
					s.block = false
				}
				s.logLine, s.inLog, s.atStart = s.logLine[:0], false, true
				continue
			}
			s.logLine = append(s.logLine, c)
		case s.atStart && s.block && len(s.pending) == 0:
			if c == '\n' { // an empty line of the value
				s.log("")
				continue
			}
			s.inLog, s.atStart = true, false
			s.logLine = append(s.logLine[:0], c)
		case len(s.pending) > 0 || c == 'I' || c == 'W' || c == 'E' || c == 'F':
			s.pending = append(s.pending, c)
			switch prefix, whole := klogHeader(s.pending); {
			case whole:
				s.inLog = true
				s.logLine = append(s.logLine[:0], s.pending...)
				s.pending = s.pending[:0]
			case !prefix:
				// Not a header: its first byte is text; the rest may
				// still begin one.
				p := append([]byte(nil), s.pending...)
				s.pending = s.pending[:0]
				emit(p[:1])
				b = append(p[1:], b[i+1:]...)
				i = -1
			}
		default:
			emit([]byte{c})
		}
	}
	if len(out) > 0 {
		s.output(out)
	}
}

// close passes on what is held back, at the end of stderr.
func (s *stderrSplitter) close() {
	if s.inLog && len(s.logLine) > 0 {
		s.log(string(s.logLine))
	}
	if len(s.pending) > 0 {
		s.output(s.pending)
		s.textBuf = append(s.textBuf, s.pending...)
	}
	if len(s.textBuf) > 0 {
		s.text(string(s.textBuf))
	}
	s.pending, s.logLine, s.textBuf = nil, nil, nil
}

// The log lines of kubectl -v=6 that the session reads.
var (
	// client-go's round tripper, for every request:
	// "Response" verb="GET" url="https://..." status="101 Switching Protocols" milliseconds=1
	responseLine = regexp.MustCompile(`"Response" verb="([A-Z]+)" url="([^"]*)" status="(\d+)[^"]*"`)
	// client-go's WebSocket executor, once the upgrade is answered:
	// "Subprotocol negotiated" protocol="v5.channel.k8s.io"
	subprotocolLine = regexp.MustCompile(`"Subprotocol negotiated" protocol="([^"]*)"`)
	// kubectl's message for a remote exit status other than 0, at the end
	// of a line: without a tty the remote stderr shares kubectl's, so the
	// shell's prompt ("# ", no newline) can come before it.
	exitCodeLine = regexp.MustCompile(`command terminated with exit code (\d+)$`)
)

// response is a request kubectl logged.
type response struct {
	verb   string
	url    string
	status int
}

// parseResponse reads a "Response" log line.
func parseResponse(line string) (response, bool) {
	m := responseLine.FindStringSubmatch(line)
	if m == nil {
		return response{}, false
	}
	code, err := strconv.Atoi(m[3])
	if err != nil {
		return response{}, false
	}
	return response{verb: m[1], url: m[2], status: code}, true
}

// isExec reports whether the request was an exec (or attach) upgrade.
func (r response) isExec() bool {
	u, err := url.Parse(r.url)
	if err != nil {
		return false
	}
	return strings.HasSuffix(u.Path, "/exec") || strings.HasSuffix(u.Path, "/attach")
}
