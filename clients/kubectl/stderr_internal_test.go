package kubectl

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestStderrSplitter: kubectl's log lines are told from the rest of its
// stderr however the writes fall: whole, a byte at a time, with a
// multi-line value, glued to a prompt; a prompt without a newline is
// output at once, and what begins like a log line but is none ("I1",
// "Info") is output.
func TestStderrSplitter(t *testing.T) {
	const in = "$ " +
		"I1207 17:31:05.519573   20705 round_trippers.go:632] \"Response\" verb=\"GET\" url=\"https://h/x/exec?a=b\" status=\"101 Switching Protocols\" milliseconds=1\n" +
		"hello\n" +
		"E1207 17:31:05.600000       1 x.go:1] \"Unhandled Error\" err=<\n" +
		"\tline one\n" +
		"\n" +
		" >\n" +
		"$ I1207 17:31:06.000001   20705 websocket.go:415] \"Close() on stream\"\n" +
		"I1 not a log\n" +
		"Info: neither\n" +
		"command terminated with exit code 3\n" +
		"I12"
	wantOut := "$ hello\n$ I1 not a log\nInfo: neither\ncommand terminated with exit code 3\nI12"
	wantText := []string{"$ hello", "$ I1 not a log", "Info: neither", "command terminated with exit code 3", "I12"}
	wantLog := 6 // the response, the error and its three value lines, the close
	for _, chunk := range []int{len(in), 1, 3, 7} {
		var out strings.Builder
		var text, logs []string
		var prompt bool
		s := newStderrSplitter(func(b []byte) {
			out.Write(b)
			if out.String() == "$ " {
				prompt = true // out at once, before any newline
			}
		}, func(l string) { text = append(text, l) }, func(l string) { logs = append(logs, l) })
		for i := 0; i < len(in); i += chunk {
			s.write([]byte(in[i:min(i+chunk, len(in))]))
		}
		s.close()
		assert.Equal(t, wantOut, out.String(), "chunk %d", chunk)
		assert.Equal(t, wantText, text, "chunk %d", chunk)
		assert.Len(t, logs, wantLog, "chunk %d: %q", chunk, logs)
		if chunk < len(in) {
			assert.True(t, prompt, "chunk %d: the prompt waited for a newline", chunk)
		}
		r, ok := parseResponse(logs[0])
		assert.True(t, ok)
		assert.Equal(t, response{verb: "GET", url: "https://h/x/exec?a=b", status: 101}, r)
		assert.True(t, r.isExec())
	}
}
