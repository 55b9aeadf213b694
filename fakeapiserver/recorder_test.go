package fakeapiserver_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
)

func TestRecorderFramesAndClose(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	t.Run("frames both ways, decoded, with channels", func(t *testing.T) {
		c := dial(t, srv, execproto.ProtocolV4Base64, true, "sh", "-i")
		sess := session(t, srv, c)
		require.NoError(t, c.Type("echo $((6*7))\r"))
		require.NoError(t, c.Expect(deadline(t, 5*time.Second), "42"))
		rec := sess.Recorder().Snapshot()
		var sawStdin, sawStdout, sawOpen bool
		for _, f := range rec.Frames {
			switch {
			case f.Dir == fakeapiserver.FromClient && f.Channel == 0 && f.Payload == "echo $((6*7))\r":
				sawStdin = true
				assert.True(t, f.Masked)
				assert.Equal(t, "text", f.Opcode)
			case f.Dir == fakeapiserver.FromServer && f.Channel == 1 && f.Length == 1:
				sawOpen = true
			case f.Dir == fakeapiserver.FromServer && f.Channel == 1 && strings.Contains(f.Payload, "42"):
				sawStdout = true
				assert.False(t, f.Masked)
			}
		}
		assert.True(t, sawStdin, "the typed line, base64-decoded, on channel 0")
		assert.True(t, sawOpen, "the empty opening message on stdout")
		assert.True(t, sawStdout, "the answer on channel 1")
		assert.Greater(t, rec.Stats[fakeapiserver.FromClient].Messages["stdin"], int64(0))
	})
	cases := []struct {
		name    string
		end     func(*execclient.Conn) error
		wantTCP string
		// Whether the server's close (v5 answers any end with 1000) is
		// recorded as sent: into a FIN'd connection it goes on the wire,
		// into a reset one it cannot (Linux fails the write), and a real
		// API server's is lost the same way.
		wantServerSent bool
	}{
		{"a TCP close without a close frame is an EOF", (*execclient.Conn).AbortTCP, fakeapiserver.TCPEOF, true},
		{"a reset is a reset", (*execclient.Conn).Reset, fakeapiserver.TCPReset, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, srv, execproto.ProtocolV5, false, "cat")
			sess := session(t, srv, c)
			require.NoError(t, tc.end(c))
			<-sess.Done()
			cr := sess.Recorder().Close()
			assert.Equal(t, tc.wantTCP, cr.TCP)
			assert.False(t, cr.ClientSent)
			assert.Equal(t, tc.wantServerSent, cr.ServerSent, "the server's close recorded as sent")
		})
	}
	t.Run("a client close 1001 is answered with 1000 and the handshake recorded", func(t *testing.T) {
		c := dial(t, srv, execproto.ProtocolV5, false, "cat")
		sess := session(t, srv, c)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := c.Close(ctx, 1001, "tab closed")
		require.NoError(t, err)
		assert.True(t, res.Replied)
		assert.Equal(t, 1000, res.ReplyCode)
		<-sess.Done()
		cr := sess.Recorder().Close()
		assert.Equal(t, "client", cr.FirstBy)
		assert.Equal(t, 1001, cr.ClientCode)
		assert.Equal(t, "tab closed", cr.ClientReason)
		assert.Equal(t, 1000, cr.ServerCode)
		assert.True(t, cr.Completed)
		assert.Equal(t, fakeapiserver.TCPAfterClose, cr.TCP)
	})
}

// TestRecorderMemoryIsBounded: under an output flood the recorder keeps a
// bounded number of frames and counts the rest.
func TestRecorderMemoryIsBounded(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{RecordFrames: 100})
	const size = 8 << 20
	c := dial(t, srv, execproto.ProtocolV4, false, "sh", "-c", "head -c 8388608 /dev/zero; echo; echo done")
	sess := session(t, srv, c)
	require.NoError(t, c.Expect(deadline(t, 30*time.Second), "done"))
	<-sess.Done()
	rec := sess.Recorder().Snapshot()
	assert.LessOrEqual(t, len(rec.Frames), 100)
	assert.Greater(t, rec.FramesDropped, int64(0))
	assert.GreaterOrEqual(t, rec.Stats[fakeapiserver.FromServer].Bytes, int64(size))
	last := rec.Frames[len(rec.Frames)-1]
	assert.Equal(t, "close", last.Opcode, "the tail keeps the end of the session")
}

// TestSPDYRecorderBounds: the SPDY parser reads frames split anywhere,
// keeps only the payload prefix of DATA, and stops a direction at a
// control frame over its bound, with a protocol error.
func TestSPDYRecorderBounds(t *testing.T) {
	rec := fakeapiserver.NewRecorder(time.Now(), "", 4, 0)
	rec.StartTransport(execproto.TransportSPDY, execproto.SPDYProtocolV4)
	data := append([]byte{0, 0, 0, 3, 0x01, 0, 0, 10}, "0123456789"...) // DATA, stream 3, FIN, 10 bytes
	for _, b := range data {
		rec.Sent([]byte{b})
	}
	rec.Sent([]byte{0x80, 3, 0, 1, 0, 0x10, 0, 0}) // SYN_STREAM of 1 MiB
	rec.Sent(make([]byte, 100))
	r := rec.Snapshot()
	require.Len(t, r.Frames, 1)
	f := r.Frames[0]
	assert.Equal(t, "data", f.Opcode)
	assert.Equal(t, uint32(3), f.StreamID)
	assert.True(t, f.Fin)
	assert.Equal(t, int64(10), f.Length)
	assert.Equal(t, "0123", f.Payload)
	assert.True(t, f.Truncated)
	assert.Equal(t, -1, f.Channel, "no SYN_STREAM named the stream")
	require.Len(t, r.ProtocolErrors, 1)
	assert.Contains(t, r.ProtocolErrors[0], "control frame of 1048576 bytes")
	assert.Equal(t, "spdy", r.Transport)
}
