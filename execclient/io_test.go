package execclient

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
)

// TestExpect covers the cursor, matches across messages, a waiter started
// before the data, and the timeout error.
func TestExpect(t *testing.T) {
	ctx := testCtx(t)
	srv := newServer(t, serverOpts{})
	c := srv.dial(t, ctx, Options{Protocols: []execproto.Protocol{execproto.ProtocolBase64}})

	require.NoError(t, c.Type("abc abc"))
	require.NoError(t, c.Expect(ctx, "abc"))
	require.NoError(t, c.Expect(ctx, "abc"), "the second occurrence, after the cursor")

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err := c.Expect(short, "abc")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), `output tail: "abc abc"`)

	require.NoError(t, c.Type("hel"))
	require.NoError(t, c.Type("lo"))
	require.NoError(t, c.Expect(ctx, "hello"), "a match split across two messages")

	waiting := make(chan error, 1)
	go func() { waiting <- c.Expect(ctx, "later") }()
	require.NoError(t, c.Type("later"))
	require.NoError(t, recv(t, ctx, waiting))

	require.NoError(t, c.Type(strings.Repeat("y", 600)))
	require.NoError(t, c.Expect(ctx, strings.Repeat("y", 600)))
	short, cancel = context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	err = c.Expect(short, "never")
	require.Error(t, err)
	assert.True(t, strings.HasSuffix(err.Error(), fmt.Sprintf("output tail: %q", strings.Repeat("y", tailLen))), err.Error())

	assert.Equal(t, "abc abchellolater"+strings.Repeat("y", 600), c.Output())
	assert.EqualValues(t, len(c.Output()), c.OutputTotal())

	// The connection ends: a pending Expect fails with ErrEnded.
	require.NoError(t, c.Type("bye\r"))
	err = c.Expect(ctx, "never")
	require.ErrorIs(t, err, ErrEnded)
	assert.Contains(t, err.Error(), "server close 4001")
}

// TestStatus covers the JSON status of v4 and later, the text of v1, and
// the pre-v4 success (no status at all).
func TestStatus(t *testing.T) {
	for _, p := range []execproto.Protocol{execproto.ProtocolV4, execproto.ProtocolV4Base64, execproto.ProtocolV5} {
		t.Run(p.String(), func(t *testing.T) {
			ctx := testCtx(t)
			srv := newServer(t, serverOpts{})
			c := srv.dial(t, ctx, Options{Protocols: []execproto.Protocol{p}})
			require.NoError(t, c.Type("status 3\r"))
			s, ok, err := c.Status(ctx)
			require.NoError(t, err)
			require.True(t, ok)
			code, ok := s.ExitCode()
			assert.True(t, ok)
			assert.Equal(t, 3, code)
			assert.Equal(t, execproto.NonZeroExitCodeReason, s.Reason)
			waitDone(t, ctx, c)
			assert.Equal(t, 1000, c.End().ServerCloseCode)
		})
	}

	t.Run("v1 failure text", func(t *testing.T) {
		ctx := testCtx(t)
		srv := newServer(t, serverOpts{handle: func(sc *srvConn) {
			sc.send(execproto.StreamStdout, nil)
			sc.send(execproto.StreamError, []byte("command terminated with non-zero exit code: exit code 2"))
			sc.read(nil)
		}})
		c := srv.dial(t, ctx, Options{Protocols: []execproto.Protocol{execproto.ProtocolV1}})
		s, ok, err := c.Status(ctx)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, execproto.StatusFailure, s.Status)
		assert.Equal(t, "command terminated with non-zero exit code: exit code 2", s.Message)
	})

	t.Run("v1 success is no status", func(t *testing.T) {
		ctx := testCtx(t)
		srv := newServer(t, serverOpts{})
		c := srv.dial(t, ctx, Options{Protocols: []execproto.Protocol{execproto.ProtocolV1}})
		require.NoError(t, c.Type("status 0\r"))
		s, ok, err := c.Status(ctx)
		require.NoError(t, err)
		assert.False(t, ok)
		assert.Equal(t, execproto.Status{}, s)
	})

	t.Run("open signal on the error channel is not a status", func(t *testing.T) {
		ctx := testCtx(t)
		srv := newServer(t, serverOpts{handle: func(sc *srvConn) {
			sc.send(execproto.StreamError, nil)
			sc.read(nil)
		}})
		c := srv.dial(t, ctx, Options{Protocols: []execproto.Protocol{execproto.ProtocolV4}})
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, ok, err := c.Status(short)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.False(t, ok)
		assert.True(t, c.Opened())
	})
}

// TestFrames checks undecodable messages and the open signal.
func TestFrames(t *testing.T) {
	ctx := testCtx(t)
	srv := newServer(t, serverOpts{handle: func(sc *srvConn) {
		sc.send(execproto.StreamStderr, []byte("err"))
		sc.ws.WriteMessage(websocket.TextMessage, []byte("1!!!"))   // bad base64
		sc.ws.WriteMessage(websocket.BinaryMessage, []byte{1, 'x'}) // binary on a base64 protocol: channel 1-'0'
		sc.ws.WriteMessage(websocket.TextMessage, nil)
		sc.send(execproto.StreamStdout, []byte("end"))
		sc.read(nil)
	}})
	c := srv.dial(t, ctx, Options{Protocols: []execproto.Protocol{execproto.ProtocolBase64}})
	require.NoError(t, c.Expect(ctx, "end"))
	assert.False(t, c.Opened(), "the first message was not empty")
	fr := c.Frames()
	require.Len(t, fr, 5)
	assert.Equal(t, execproto.StreamStderr, fr[0].Stream)
	assert.NoError(t, fr[0].Err)
	assert.Error(t, fr[1].Err)
	assert.Equal(t, []byte("1!!!"), fr[1].Data)
	assert.Error(t, fr[2].Err)
	assert.ErrorIs(t, fr[3].Err, errEmptyMessage)
	assert.Equal(t, websocket.TextMessage, fr[4].MessageType)
	assert.Equal(t, "errend", c.Output())
	assert.Equal(t, 5, c.FrameCount())
	for i := 1; i < len(fr); i++ {
		assert.GreaterOrEqual(t, fr[i].At, fr[i-1].At)
	}
}

// TestOutputBound checks that Output keeps the last MaxOutput bytes and
// Expect still finds text across a trim.
func TestOutputBound(t *testing.T) {
	c := &Conn{sessionState: newSessionState(nil, 0)}
	chunk := strings.Repeat("z", 64<<10)
	for range 3 * MaxOutput / len(chunk) {
		c.appendOutput([]byte(chunk))
	}
	c.appendOutput([]byte("needle"))
	assert.Len(t, c.Output(), MaxOutput)
	assert.True(t, strings.HasSuffix(c.Output(), "zneedle"))
	assert.EqualValues(t, 3*MaxOutput+6, c.OutputTotal())
	require.NoError(t, c.Expect(context.Background(), "needle"))
}
