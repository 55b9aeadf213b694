package execproto_test

// Fuzz tests of what the client emulator reads from the proxy under test
// besides Decode (FuzzDecode): DecodeFromServer, the framing of every
// message the client reads, and ParseStatus, the status on the error
// channel. Both read bytes that a broken proxy may have made up.
//
//	go test -run '^$' -fuzz FuzzParseStatus -fuzztime 60s -parallel 1 ./execproto/
//
// Without -fuzz, go test runs each target on its seeds only.

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/execconform/execconform/execproto"
)

// fuzzProtocol picks a protocol from a fuzz byte: the six the suite knows
// and one it does not (which frames as binary, without JSON status).
func fuzzProtocol(b uint8) execproto.Protocol {
	all := append(execproto.AllProtocols[:len(execproto.AllProtocols):len(execproto.AllProtocols)], "v6.channel.k8s.io")
	return all[int(b)%len(all)]
}

// protocolIndex is the fuzz byte fuzzProtocol maps to p.
func protocolIndex(p execproto.Protocol) uint8 {
	for i, q := range execproto.AllProtocols {
		if p == q {
			return uint8(i)
		}
	}
	return uint8(len(execproto.AllProtocols))
}

// normStatus makes two statuses comparable after a JSON round trip: an
// empty cause list is the same as none (omitempty drops it).
func normStatus(s execproto.Status) execproto.Status {
	if s.Details != nil && len(s.Details.Causes) == 0 {
		s.Details = &execproto.StatusDetails{}
	}
	return s
}

// exitCodeSuffix is the plain reading of the kubelet's wording: the
// digits after the last "exit code " if nothing else follows them.
func exitCodeSuffix(msg string) (string, bool) {
	i := strings.LastIndex(msg, "exit code ")
	if i < 0 {
		return "", false
	}
	digits := msg[i+len("exit code "):]
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", false
	}
	return digits, true
}

// FuzzParseStatus: on any bytes ParseStatus does not panic. Under the JSON
// protocols (v4, v5) it fails exactly on what is not JSON of a Status, with
// an encoding/json error, and what it reads encodes back to the same
// status; an exit code it reports is the one of the ExitCode cause. Before
// v4 it never fails: the text is a failure's message, and it carries an
// exit code exactly when the text ends in "exit code " and digits, those
// digits. And whatever the server writes for an exit code (ExitStatus,
// EncodeStatus) reads back as that code.
func FuzzParseStatus(f *testing.F) {
	add := func(p execproto.Protocol, b []byte, code int, cmd string) {
		f.Add(protocolIndex(p), b, code, cmd)
	}
	for _, p := range execproto.AllProtocols {
		add(p, execproto.EncodeStatus(p, execproto.ExitStatus([]string{"sh", "-c", "exit 3"}, 3)), 3, "sh")
		add(p, execproto.EncodeStatus(p, execproto.InternalError(errors.New(`exec: "nosuch": executable file not found in $PATH`))), 127, "nosuch")
	}
	add(execproto.ProtocolV5, []byte(`{"metadata":{},"status":"Success"}`), 0, "true")
	add(execproto.ProtocolV4, []byte(`{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh], exit code 137","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"137"}]}}`), 137, "sh")
	add(execproto.ProtocolV4, []byte(`{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"x"},{"reason":"ExitCode","message":"2"}]}}`), 2, "")
	add(execproto.ProtocolV4Base64, []byte(`{"metadata":5}`), 1, "")
	add(execproto.ProtocolV5, []byte(`{"status":"Failure","details":{"causes":[]},"code":2147483648}`), -1, "")
	add(execproto.ProtocolV1, []byte("command terminated with non-zero exit code: error executing command [sh], exit code 99999999999999999999"), 1, "a\nb")
	add(execproto.ProtocolBase64, []byte("exit code 1exit code 2"), 255, "")
	add(execproto.ProtocolNone, []byte("\xffexit code 0012\n"), 2, "\xff")
	f.Fuzz(func(t *testing.T, pb uint8, b []byte, code int, cmd string) {
		p := fuzzProtocol(pb)
		s, err := execproto.ParseStatus(p, b)
		if p.StatusJSON() {
			var syntax *json.SyntaxError
			var typ *json.UnmarshalTypeError
			switch {
			case err != nil && !errors.As(err, &syntax) && !errors.As(err, &typ):
				t.Fatalf("%q: error %v (%T) is not encoding/json's", b, err, errors.Unwrap(err))
			case err != nil:
				if s != (execproto.Status{}) {
					t.Fatalf("%q: status %+v beside error %v", b, s, err)
				}
			case !json.Valid(b):
				t.Fatalf("%q is not JSON, read as %+v", b, s)
			default:
				again, err := execproto.ParseStatus(p, execproto.EncodeStatus(p, s))
				if err != nil || !reflect.DeepEqual(normStatus(again), normStatus(s)) {
					t.Fatalf("%q: %+v re-encodes to %+v, %v", b, s, again, err)
				}
			}
			if n, ok := s.ExitCode(); ok && s.Status != execproto.StatusSuccess {
				var first string
				for _, c := range s.Details.Causes {
					if c.Type == execproto.ExitCodeCauseType {
						first = c.Message
						break
					}
				}
				if v, err := strconv.Atoi(first); s.Reason != execproto.NonZeroExitCodeReason || err != nil || v != n {
					t.Fatalf("%q: exit code %d from %+v", b, n, s)
				}
			}
		} else {
			if err != nil {
				t.Fatalf("%q: %v", b, err)
			}
			if s.Status != execproto.StatusFailure || s.Message != string(b) {
				t.Fatalf("%q: %+v", b, s)
			}
			n, ok := s.ExitCode()
			digits, want := exitCodeSuffix(s.Message)
			if want {
				if s.Reason != execproto.NonZeroExitCodeReason || s.Details == nil || len(s.Details.Causes) != 1 || s.Details.Causes[0].Message != digits {
					t.Fatalf("%q: status %+v does not carry exit code %s", b, s, digits)
				}
				if v, err := strconv.Atoi(digits); ok != (err == nil) || ok && n != v {
					t.Fatalf("%q: exit code %d, %v; the text says %s", b, n, ok, digits)
				}
			} else if ok || s.Reason != "" || s.Details != nil {
				t.Fatalf("%q: no exit code in the text, read as %+v (code %d, %v)", b, s, n, ok)
			}
		}

		// What the server writes for an exit code reads back as it. Before
		// v4 success is written as nothing, and the text has no room
		// for a negative code.
		cmdv := strings.Fields(cmd)
		if code != 0 && (p.StatusJSON() || code > 0) {
			wrote := execproto.ExitStatus(cmdv, code)
			got, err := execproto.ParseStatus(p, execproto.EncodeStatus(p, wrote))
			if err != nil {
				t.Fatalf("exit code %d under %s: %v", code, p, err)
			}
			if n, ok := got.ExitCode(); !ok || n != code {
				t.Fatalf("exit code %d under %s reads as %d, %v: %+v", code, p, n, ok, got)
			}
			if p.StatusJSON() && utf8.ValidString(cmd) && !reflect.DeepEqual(got, wrote) {
				t.Fatalf("under %s %+v reads as %+v", p, wrote, got)
			}
		}
	})
}

// FuzzDecodeFromServer: on any message DecodeFromServer does not panic,
// fails only with a *FrameError, refuses the v5 CLOSE signal (which only a
// client sends) and otherwise decodes exactly as Decode does, whatever the
// WebSocket message type; a frame owns its data (the reader's buffer is
// reused) and names a channel of exec. What Encode frames for any channel
// and data decodes back to them.
func FuzzDecodeFromServer(f *testing.F) {
	for _, p := range execproto.AllProtocols {
		for _, ch := range []byte{execproto.StreamStdout, execproto.StreamStderr, execproto.StreamError} {
			_, b := execproto.Encode(p, ch, []byte("ready\r\n"))
			f.Add(protocolIndex(p), b, ch, []byte("\x1b[31m\xff\x00"))
		}
	}
	f.Add(protocolIndex(execproto.ProtocolV5), []byte{255, 1}, byte(4), []byte(nil))
	f.Add(protocolIndex(execproto.ProtocolV5), []byte{255}, byte(255), []byte{255, 0})
	f.Add(protocolIndex(execproto.ProtocolV4), []byte{255, 1}, byte(0), []byte(`{"Width":80,"Height":24}`))
	f.Add(protocolIndex(execproto.ProtocolV4Base64), []byte("1aGk=\n"), byte(1), []byte{})
	f.Add(protocolIndex(execproto.ProtocolBase64), []byte("/AAAA"), byte('0'), []byte("x"))
	f.Add(uint8(6), []byte{5, 1, 2}, byte(5), []byte("y"))
	f.Fuzz(func(t *testing.T, pb uint8, payload []byte, stream byte, data []byte) {
		p := fuzzProtocol(pb)
		fr, err := execproto.DecodeFromServer(p, websocket.BinaryMessage, payload)
		asText, errText := execproto.DecodeFromServer(p, websocket.TextMessage, payload)
		if !reflect.DeepEqual(fr, asText) || (err == nil) != (errText == nil) || err != nil && err.Error() != errText.Error() {
			t.Fatalf("%s %q: binary %+v, %v; text %+v, %v", p, payload, fr, err, asText, errText)
		}
		if err != nil {
			var fe *execproto.FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("%s %q: error %v of type %T", p, payload, err, err)
			}
		}
		isClose := p.StreamClose() && len(payload) > 0 && payload[0] == execproto.StreamClose
		if isClose {
			var fe *execproto.FrameError
			if !errors.As(err, &fe) || fe.Stream != execproto.StreamClose {
				t.Fatalf("%s %q: a CLOSE signal from the server read as %+v, %v", p, payload, fr, err)
			}
		} else {
			want, werr := execproto.Decode(p, websocket.BinaryMessage, payload)
			if !reflect.DeepEqual(fr, want) || (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
				t.Fatalf("%s %q: %+v, %v; Decode gives %+v, %v", p, payload, fr, err, want, werr)
			}
		}
		if err == nil && fr != nil {
			if fr.Stream >= execproto.NumStreams {
				t.Fatalf("%s %q: channel %d", p, payload, fr.Stream)
			}
			kept := bytes.Clone(fr.Data)
			for i := range payload {
				payload[i] ^= 0xff
			}
			if !bytes.Equal(kept, fr.Data) {
				t.Fatalf("%s: the frame's data aliases the message", p)
			}
		}
		if err == nil && fr == nil && len(payload) != 0 {
			t.Fatalf("%s %q: no frame and no error", p, payload)
		}

		ch := stream % execproto.NumStreams
		mt, b := execproto.Encode(p, ch, data)
		back, err := execproto.DecodeFromServer(p, mt, b)
		if err != nil || back == nil || back.Stream != ch || !bytes.Equal(back.Data, data) {
			t.Fatalf("%s: channel %d, %q encodes to %q, which decodes to %+v, %v", p, ch, data, b, back, err)
		}
	})
}
