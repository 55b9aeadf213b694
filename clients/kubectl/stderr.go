package kubectl

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// stderrSplitter separates what kubectl writes on stderr into its log
// lines (klog's "I1207 17:31:05.519573   20705 file.go:632] ...", each
// written whole) and the rest: the remote stderr of a notty session and
// kubectl's own messages ("command terminated with exit code 3"), which
// are output, passed on as they come (a shell's prompt has no newline).
// A line is held back only while its first bytes could still begin a log
// line (at most 6 bytes, "I1207 ").
type stderrSplitter struct {
	output func([]byte)      // output bytes, in order
	text   func(string)      // each whole line of output (for the stderr tail)
	log    func(line string) // each log line, without its newline

	atStart bool   // the next byte begins a line
	pending []byte // the start of a line not yet told apart
	inLog   bool   // the current line is a log line
	logLine []byte
	block   bool   // inside a multi-line value of a log line (`key=<` ... ` >`)
	textBuf []byte // the current output line
}

func newStderrSplitter(output func([]byte), text, log func(string)) *stderrSplitter {
	return &stderrSplitter{output: output, text: text, log: log, atStart: true}
}

// klogPrefix is the start of a klog line: severity, MMDD, a space.
const klogPrefix = 6

// couldBeLog reports whether b (at most klogPrefix bytes) can begin a klog line.
func couldBeLog(b []byte) bool {
	for i, c := range b {
		switch {
		case i == 0 && !strings.ContainsRune("IWEF", rune(c)):
			return false
		case i >= 1 && i <= 4 && (c < '0' || c > '9'):
			return false
		case i == 5 && c != ' ':
			return false
		}
	}
	return true
}

func (s *stderrSplitter) write(b []byte) {
	var out []byte
	flushText := func(p []byte) {
		out = append(out, p...)
		for _, c := range p {
			if c == '\n' {
				s.text(strings.TrimRight(string(s.textBuf), "\r"))
				s.textBuf = s.textBuf[:0]
				continue
			}
			s.textBuf = append(s.textBuf, c)
		}
	}
	for _, c := range b {
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
		case s.atStart && s.block:
			s.inLog, s.atStart = true, false
			s.logLine = append(s.logLine[:0], c)
			if c == '\n' { // an empty line of the value
				s.log("")
				s.logLine, s.inLog, s.atStart = s.logLine[:0], false, true
			}
		case s.atStart:
			s.pending = append(s.pending, c)
			switch {
			case !couldBeLog(s.pending):
				flushText(s.pending)
				s.pending = s.pending[:0]
				s.atStart = c == '\n'
			case len(s.pending) == klogPrefix:
				s.inLog, s.atStart = true, false
				s.logLine = append(s.logLine[:0], s.pending...)
				s.pending = s.pending[:0]
			}
		default:
			flushText([]byte{c})
			s.atStart = c == '\n'
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
