package execproto_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
)

// TestNegotiate: the API server's choice for the offers real clients send,
// from the sources of Kubernetes v1.34.4 (TranslateStreamCloseWebsocketRequests
// on, the default since 1.30):
//
//   - k8s.io/kubernetes pkg/registry/core/pod/rest/subresources.go (ExecREST.Connect):
//     translator.NewTranslatingHandler(..., wsstream.IsWebSocketRequestWithStreamCloseProtocol);
//   - k8s.io/apimachinery pkg/util/httpstream/wsstream/conn.go:
//     IsWebSocketRequestWithStreamCloseProtocol (v5 anywhere in the first
//     header line) and handshake (the first offered name the server allows);
//   - k8s.io/apiserver pkg/util/proxy/websocket.go (createWebSocketStreams:
//     the translator's WebSocket server supports only v5.channel.k8s.io);
//   - k8s.io/kubelet pkg/cri/streaming/remotecommand/websocket.go
//     (createWebSocketStreams: "", channel.k8s.io, base64.channel.k8s.io,
//     v4.channel.k8s.io, v4.base64.channel.k8s.io).
func TestNegotiate(t *testing.T) {
	token := execproto.BearerProtocol("a-token")
	cases := []struct {
		name    string
		offered []string
		want    execproto.Protocol
		wantErr bool
	}{
		{"a client that offers nothing gets binary v1 (the kubelet's \"\")", nil, execproto.ProtocolNone, false},
		{"kubectl's WebSocket executor offers v5 alone", []string{"v5.channel.k8s.io"}, execproto.ProtocolV5, false},
		{"v5 first gets v5", []string{"v5.channel.k8s.io", "v4.channel.k8s.io"}, execproto.ProtocolV5, false},
		{"v5 anywhere wins: the API server's stream translator answers, and knows only v5", []string{"v4.channel.k8s.io", "v5.channel.k8s.io"}, execproto.ProtocolV5, false},
		{"the SPDY version list offered over WebSocket gets v5", []string{"v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"}, execproto.ProtocolV5, false},
		{"v5 behind an empty name still wins", []string{"chat", "", "v5.channel.k8s.io"}, execproto.ProtocolV5, false},
		{"without v5 the kubelet takes the first it supports, in the client's order", []string{"channel.k8s.io", "base64.channel.k8s.io"}, execproto.ProtocolV1, false},
		{"the other order gets the other protocol", []string{"base64.channel.k8s.io", "channel.k8s.io"}, execproto.ProtocolBase64, false},
		{"Headlamp's list (no v5; base64.binary.k8s.io is no server's name) gets v4", []string{"base64.binary.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"}, execproto.ProtocolV4, false},
		{"a bearer token and unknown names are skipped", []string{token, "x-console.v1", "v4.base64.channel.k8s.io", "base64.channel.k8s.io"}, execproto.ProtocolV4Base64, false},
		{"an empty name is the kubelet's \"\"", []string{"chat", "", "base64.channel.k8s.io"}, execproto.ProtocolNone, false},
		{"SPDY-only versions are not WebSocket protocols", []string{"v2.channel.k8s.io", "v3.channel.k8s.io"}, "", true},
		{"names are case-sensitive", []string{"V5.CHANNEL.K8S.IO"}, "", true},
		{"nothing supported is an error", []string{"chat"}, "", true},
		{"a bearer token alone is nothing supported", []string{token}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := execproto.Negotiate(tc.offered)
			if tc.wantErr {
				require.ErrorIs(t, err, execproto.ErrNoProtocol)
				assert.NotContains(t, err.Error(), token, "the error redacts the token")
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
	p, err := execproto.Negotiate(execproto.Offered([]string{"chat, , base64.channel.k8s.io"}))
	require.NoError(t, err)
	assert.Equal(t, execproto.ProtocolNone, p, "an empty name selects the none protocol")
	p, err = execproto.Negotiate(execproto.Offered([]string{"chat", "v5.channel.k8s.io"}))
	require.ErrorIs(t, err, execproto.ErrNoProtocol, "v5 on a second header line is not seen (got %q)", p)
}

func TestBearerProtocolIsRedacted(t *testing.T) {
	const canary = "CANARY-s3cr3t/+token"
	bp := execproto.BearerProtocol(canary)
	assert.Equal(t, "base64url.bearer.authorization.k8s.io.Q0FOQVJZLXMzY3IzdC8rdG9rZW4", bp, "unpadded base64url, as the authenticator decodes it")
	for _, text := range []string{
		bp,
		"offered [" + bp + " v5.channel.k8s.io]",
		fmt.Sprintf("%q", []string{bp, "base64.channel.k8s.io"}),
		"BASE64URL.BEARER.AUTHORIZATION.K8S.IO.Q0FOQVJZ",
		execproto.BearerProtocolPrefix + "Q0FOQVJZ==, channel.k8s.io",
	} {
		got := execproto.Redact(text)
		assert.NotContains(t, got, "Q0FOQVJZ", text)
		assert.Contains(t, got, execproto.RedactedBearer)
	}
	assert.Equal(t, "offered ["+execproto.RedactedBearer+", base64.channel.k8s.io]",
		execproto.Redact("offered ["+bp+", base64.channel.k8s.io]"), "the rest is kept")
	assert.Equal(t, []string{execproto.RedactedBearer, "v5.channel.k8s.io"}, execproto.RedactOffer([]string{bp, "v5.channel.k8s.io"}))
	assert.Nil(t, execproto.RedactOffer(nil))
	assert.Equal(t, "v5.channel.k8s.io", execproto.Redact("v5.channel.k8s.io"))
	assert.Equal(t, execproto.RedactedBearer+", x", execproto.Redact(execproto.RedactedBearer+", x"), "redacting twice changes nothing")
	inJSON, err := json.Marshal(execproto.RedactedBearer)
	require.NoError(t, err)
	assert.Equal(t, `"`+execproto.RedactedBearer+`"`, execproto.Redact(string(inJSON)), "as JSON escapes it, it is redacted once")
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
