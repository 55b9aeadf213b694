package fakeapiserver_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/proctable"
)

// survivalWindow is how long a shell must stay alive after its connection
// ended to count as an orphan here. Real clusters were measured at 5 s and
// 15 min; the process table is read throughout the window, not once at
// its end.
const survivalWindow = 500 * time.Millisecond

type ending struct {
	name string
	do   func(*execclient.Conn) error
}

var endings = []ending{
	{"a clean close frame", func(c *execclient.Conn) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Close(ctx, websocket.CloseNormalClosure, "")
		return err
	}},
	{"a TCP close without a close frame", (*execclient.Conn).AbortTCP},
	{"a TCP reset", (*execclient.Conn).Reset},
}

// TestOrphanSemantics checks, in the process table, that the fake runtime
// does what real clusters were measured to do (shared/E2E-NOTES.md): a tty
// shell survives every disconnect, a shell on pipes exits on stdin EOF.
func TestOrphanSemantics(t *testing.T) {
	for _, sem := range []fakeapiserver.Semantics{fakeapiserver.Containerd, fakeapiserver.HangupOnDisconnect} {
		srv := startServer(t, fakeapiserver.Config{Semantics: sem})
		for _, tty := range []bool{true, false} {
			for _, e := range endings {
				// The orphan: containerd semantics with a tty.
				wantAlive := sem == fakeapiserver.Containerd && tty
				name := fmt.Sprintf("%s/tty=%v/%s", sem, tty, e.name)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					c := dial(t, srv, execproto.ProtocolV5, tty, "sh", "-i")
					sess := session(t, srv, c)
					require.NoError(t, c.Type("echo $((6*7))"+enter(tty)))
					require.NoError(t, c.Expect(deadline(t, 5*time.Second), "42"))
					require.NoError(t, e.do(c))
					select {
					case <-sess.Done():
					case <-deadline(t, 5*time.Second).Done():
						t.Fatal("the server did not notice the disconnect")
					}
					checkSurvival(t, sess, wantAlive)
				})
			}
		}
	}
}

// checkSurvival asserts the session's shell is (or is not) alive, reading
// the process table: gone within 5 s, or alive throughout survivalWindow.
func checkSurvival(t *testing.T, sess *fakeapiserver.Session, wantAlive bool) {
	t.Helper()
	if wantAlive {
		_, live, err := sess.WaitGone(deadline(t, survivalWindow))
		require.True(t, errors.Is(err, context.DeadlineExceeded), "the shell should survive as an orphan; err=%v", err)
		require.NotEmpty(t, live)
		assert.Equal(t, sess.PID(), live[0].PID)
		assert.Equal(t, sess.ID, live[0].Session)
		return
	}
	_, live, err := sess.WaitGone(deadline(t, 5*time.Second))
	require.NoError(t, err, "the shell should be gone; still live: %v", live)
}

// TestExitInTheRightFramingEndsTheShell: exit + Enter, encoded for the
// negotiated protocol, is what ends a tty shell; the same bytes in the
// wrong framing do not.
func TestExitInTheRightFramingEndsTheShell(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	for _, p := range execproto.AllProtocols {
		for _, tty := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/tty=%v", p, tty), func(t *testing.T) {
				t.Parallel()
				c := dial(t, srv, p, tty, "sh", "-i")
				sess := session(t, srv, c)
				require.NoError(t, c.Type("echo $((6*7))"+enter(tty)))
				require.NoError(t, c.Expect(deadline(t, 5*time.Second), "42"))
				require.NoError(t, c.Type("exit"+enter(tty)))
				require.NoError(t, c.AbortTCP())
				checkSurvival(t, sess, false)
			})
		}
	}
	t.Run("base64 framing on a binary protocol leaves the orphan", func(t *testing.T) {
		c := dial(t, srv, execproto.ProtocolV5, true, "sh", "-i")
		sess := session(t, srv, c)
		require.NoError(t, c.Type("echo $((6*7))\r"))
		require.NoError(t, c.Expect(deadline(t, 5*time.Second), "42"))
		_, b64 := execproto.Encode(execproto.ProtocolBase64, execproto.StreamStdin, []byte("exit\r"))
		require.NoError(t, c.SendRaw(websocket.TextMessage, b64))
		require.NoError(t, c.AbortTCP())
		<-sess.Done()
		checkSurvival(t, sess, true)
	})
}

// TestCloseKillsEverything: Close kills every process a server started,
// including children in other process groups, as the process table shows.
func TestCloseKillsEverything(t *testing.T) {
	srv, err := fakeapiserver.New(fakeapiserver.Config{})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = srv.Close()
		}
	})
	c := dial(t, srv, execproto.ProtocolV5, true, "sh", "-i")
	sess := session(t, srv, c)
	// Job control puts each background job in its own process group.
	require.NoError(t, c.Type("sleep 600 & sleep 601 & echo $((6*7))\r"))
	require.NoError(t, c.Expect(deadline(t, 5*time.Second), "42"))
	require.NoError(t, c.AbortTCP())
	var live []proctable.Proc
	for ctx := deadline(t, 5*time.Second); len(live) < 3; {
		live, err = sess.Live(ctx)
		require.NoError(t, err)
		require.NoError(t, ctx.Err(), "want sh and two sleeps alive, have %v", live)
	}
	require.NoError(t, srv.Close())
	closed = true
	after, err := proctable.Default.Live(deadline(t, 5*time.Second), proctable.Match{Session: sess.ID})
	require.NoError(t, err)
	assert.Empty(t, after, "Close must leave nothing alive")
}
