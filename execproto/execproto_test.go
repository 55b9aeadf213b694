package execproto_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
)

func TestNegotiate(t *testing.T) {
	cases := []struct {
		name    string
		offered []string
		want    execproto.Protocol
		wantErr bool
	}{
		{"a client that offers nothing gets binary v1", nil, execproto.ProtocolNone, false},
		{"the first supported protocol in the client's order wins", []string{"v4.channel.k8s.io", "v5.channel.k8s.io"}, execproto.ProtocolV4, false},
		{"the client's order wins, not the server's preference", []string{"v5.channel.k8s.io", "v4.channel.k8s.io"}, execproto.ProtocolV5, false},
		{"unknown protocols are skipped", []string{"x.k8s.io", "base64.channel.k8s.io"}, execproto.ProtocolBase64, false},
		{"SPDY-only versions are not WebSocket protocols", []string{"v2.channel.k8s.io", "v3.channel.k8s.io"}, "", true},
		{"nothing supported is an error", []string{"chat"}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := execproto.Negotiate(tc.offered)
			if tc.wantErr {
				require.ErrorIs(t, err, execproto.ErrNoProtocol)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestOffered(t *testing.T) {
	assert.Equal(t, []string{"a", "b"}, execproto.Offered([]string{"a, b", " c "}), "only the first header line counts, as in the real server")
	assert.Equal(t, []string{"chat", "", "v5.channel.k8s.io"}, execproto.Offered([]string{"chat, , v5.channel.k8s.io"}))
	assert.Nil(t, execproto.Offered(nil))
	assert.Nil(t, execproto.Offered([]string{" "}))
	p, err := execproto.Negotiate(execproto.Offered([]string{"chat, , v5.channel.k8s.io"}))
	require.NoError(t, err)
	assert.Equal(t, execproto.ProtocolNone, p, "an empty name selects the none protocol")
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	data := []byte("exit\r\x00\xff")
	for _, p := range execproto.AllProtocols {
		t.Run(p.String(), func(t *testing.T) {
			for stream := byte(0); stream < execproto.NumStreams; stream++ {
				mt, payload := execproto.Encode(p, stream, data)
				if p.Base64() {
					assert.Equal(t, websocket.TextMessage, mt)
					assert.Equal(t, '0'+stream, payload[0])
				} else {
					assert.Equal(t, websocket.BinaryMessage, mt)
					assert.Equal(t, stream, payload[0])
				}
				f, err := execproto.Decode(p, mt, payload)
				require.NoError(t, err)
				assert.Equal(t, stream, f.Stream)
				assert.Equal(t, data, f.Data)
			}
		})
	}
}

func TestEncodeExactBytes(t *testing.T) {
	_, b := execproto.Encode(execproto.ProtocolBase64, execproto.StreamStdin, []byte("exit\r"))
	assert.Equal(t, "0ZXhpdA0=", string(b))
	_, b = execproto.Encode(execproto.ProtocolV5, execproto.StreamStdin, []byte("exit\r"))
	assert.Equal(t, []byte("\x00exit\r"), b)
}

func TestDecodeMalformed(t *testing.T) {
	var fe *execproto.FrameError
	cases := []struct {
		name    string
		p       execproto.Protocol
		payload []byte
		stream  byte
	}{
		{"base64 framing on a binary protocol names channel 48", execproto.ProtocolV4, []byte("0ZXhpdA0="), '0'},
		{"binary framing on a base64 protocol names no channel", execproto.ProtocolBase64, []byte("\x00exit"), 208},
		{"bad base64 is an error on its channel", execproto.ProtocolV4Base64, []byte("0!!!"), 0},
		{"a CLOSE signal of three bytes", execproto.ProtocolV5, []byte{255, 0, 0}, execproto.StreamClose},
		{"a CLOSE signal for channel 9", execproto.ProtocolV5, []byte{255, 9}, execproto.StreamClose},
		{"channel 255 on v4 is just an unknown channel", execproto.ProtocolV4, []byte{255, 0}, 255},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := execproto.Decode(tc.p, websocket.BinaryMessage, tc.payload)
			require.True(t, errors.As(err, &fe), "got %v", err)
			assert.Equal(t, tc.stream, fe.Stream)
		})
	}
	f, err := execproto.Decode(execproto.ProtocolV5, websocket.BinaryMessage, nil)
	assert.NoError(t, err)
	assert.Nil(t, f, "an empty message is skipped")
	f, err = execproto.Decode(execproto.ProtocolV5, websocket.BinaryMessage, []byte{255, 0})
	require.NoError(t, err)
	assert.Equal(t, execproto.StreamClose, f.Stream)
	assert.Equal(t, []byte{0}, f.Data)
}

func TestStatusJSONMatchesMetav1(t *testing.T) {
	// The bytes the kubelet writes: json.Marshal of a metav1.Status with empty TypeMeta.
	ok := execproto.EncodeStatus(execproto.ProtocolV5, execproto.ExitStatus([]string{"sh"}, 0))
	assert.JSONEq(t, `{"metadata":{},"status":"Success"}`, string(ok))
	bad := execproto.EncodeStatus(execproto.ProtocolV4, execproto.ExitStatus([]string{"sh", "-c", "exit 3"}, 3))
	var m map[string]any
	require.NoError(t, json.Unmarshal(bad, &m))
	assert.Equal(t, "Failure", m["status"])
	assert.Equal(t, "NonZeroExitCode", m["reason"])
	assert.Equal(t, []any{map[string]any{"reason": "ExitCode", "message": "3"}}, m["details"].(map[string]any)["causes"])
	st, err := execproto.ParseStatus(execproto.ProtocolV4, bad)
	require.NoError(t, err)
	code, okc := st.ExitCode()
	assert.True(t, okc)
	assert.Equal(t, 3, code)

	v1, err := execproto.ParseStatus(execproto.ProtocolV1, execproto.EncodeStatus(execproto.ProtocolV1, execproto.ExitStatus([]string{"sh"}, 137)))
	require.NoError(t, err)
	code, okc = v1.ExitCode()
	assert.True(t, okc)
	assert.Equal(t, 137, code)

	assert.Nil(t, execproto.EncodeStatus(execproto.ProtocolV1, execproto.ExitStatus([]string{"sh"}, 0)), "v1 writes nothing on success")
	assert.True(t, bytes.Contains(execproto.EncodeStatus(execproto.ProtocolBase64, execproto.ExitStatus([]string{"sh"}, 2)), []byte("exit code 2")))
}

func TestParseProtocol(t *testing.T) {
	for _, p := range execproto.AllProtocols {
		got, err := execproto.ParseProtocol(p.String())
		require.NoError(t, err)
		assert.Equal(t, p, got)
	}
	_, err := execproto.ParseProtocol("v3.channel.k8s.io")
	assert.Error(t, err)
}

func FuzzDecode(f *testing.F) {
	for _, p := range execproto.AllProtocols {
		_, b := execproto.Encode(p, 0, []byte("exit\r"))
		f.Add(string(p), b)
	}
	f.Add(string(execproto.ProtocolV5), []byte{255, 0})
	f.Add(string(execproto.ProtocolV4Base64), []byte("3!!"))
	f.Fuzz(func(t *testing.T, proto string, payload []byte) {
		p := execproto.Protocol(proto)
		fr, err := execproto.Decode(p, websocket.BinaryMessage, payload)
		if err != nil {
			var fe *execproto.FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if fr == nil {
			if len(payload) != 0 {
				t.Fatalf("nil frame for %d bytes", len(payload))
			}
			return
		}
		if fr.Stream != execproto.StreamClose && fr.Stream >= execproto.NumStreams {
			t.Fatalf("stream %d accepted", fr.Stream)
		}
		if fr.Stream == execproto.StreamClose {
			return
		}
		// Whatever decodes re-encodes to a message that decodes the same.
		mt, again := execproto.Encode(p, fr.Stream, fr.Data)
		fr2, err := execproto.Decode(p, mt, again)
		if err != nil || fr2.Stream != fr.Stream || !bytes.Equal(fr2.Data, fr.Data) {
			t.Fatalf("re-encode mismatch: %v %v", fr2, err)
		}
	})
}
