//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/proctable"
	"github.com/execconform/execconform/realapiserver"
)

// TestControlNoProxy is the control that must fail: a client straight to
// the API server, no proxy, drops its session. A tty shell survives as an
// orphan (counted by ps aux in the pod and by the process table: the
// host's, or the pod's /proc); a shell on pipes exits (stdin EOF). This is the ground truth the fake API
// server's default semantics reproduce, and it shows the check counts what
// it must.
func TestControlNoProxy(t *testing.T) {
	srv := realServer(t)
	cl := srv.Cluster()
	endings := []struct {
		name string
		end  func(c *execclient.Conn) error
	}{
		{"close-frame", func(c *execclient.Conn) error {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err := c.Close(ctx, 1000, "")
			return err
		}},
		{"tcp-fin", func(c *execclient.Conn) error { return c.AbortTCP() }},
		{"tcp-rst", func(c *execclient.Conn) error { return c.Reset() }},
	}
	for _, p := range []execproto.Protocol{execproto.ProtocolV5, execproto.ProtocolV4} {
		for _, tty := range []bool{true, false} {
			for _, e := range endings {
				t.Run(fmt.Sprintf("%s/%v/%s", p, map[bool]string{true: "tty", false: "notty"}[tty], e.name), func(t *testing.T) {
					t.Parallel()
					tag := srv.Tag()
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					defer func() { // the orphan is evidence, then it goes
						_, _ = srv.Procs().Kill(context.Background(), proctable.Match{Session: tag}, 9)
					}()
					c, err := cl.Dial(ctx, realapiserver.Mark(tag, []string{"sh", "-i"}), tty, true, p)
					require.NoError(t, err)
					enter := "\r"
					if !tty {
						enter = "\n"
					}
					require.NoError(t, c.Type("echo ready-$((6*7))"+enter))
					require.NoError(t, c.Expect(ctx, "ready-42"))
					require.NoError(t, e.end(c))

					// Three seconds (the suite's grace period) for the shell to go.
					gctx, gcancel := context.WithTimeout(ctx, 3*time.Second)
					_, live, err := srv.Procs().WaitGone(gctx, proctable.Match{Session: tag})
					gcancel()
					shells, perr := srv.PodShells(ctx, tag)
					require.NoError(t, perr)
					if tty {
						assert.Error(t, err, "a dropped tty session straight to the API server must leave its shell alive")
						assert.Len(t, shells, 1, "ps aux in the pod must count the orphaned shell")
						t.Logf("orphan, as expected: process table %v; ps aux in the pod %q", live, shells)
					} else {
						assert.NoError(t, err, "a shell on pipes ends with stdin's EOF")
						assert.Empty(t, shells)
					}
				})
			}
		}
	}
}

// TestControlNoProxySPDY is TestControlNoProxy over SPDY/3.1, as
// client-go's SPDY executor (kubectl's SPDY path) reaches the API server,
// which tunnels it to the kubelet: every ending, and a stdin half-close
// alone (client-go's end of a piped stdin, `echo ls | kubectl exec -it`)
// with the session kept open, which on a tty leaves the shell running.
func TestControlNoProxySPDY(t *testing.T) {
	srv := realServer(t)
	cl := srv.Cluster()
	endings := []struct {
		name string
		end  func(c execclient.Session) error
	}{
		{"goaway", func(c execclient.Session) error {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err := c.Close(ctx, 0, "")
			return err
		}},
		{"tcp-fin", func(c execclient.Session) error { return c.AbortTCP() }},
		{"tcp-rst", func(c execclient.Session) error { return c.Reset() }},
		{"stdin-half-close", func(c execclient.Session) error { return c.CloseStdin() }},
	}
	for _, tty := range []bool{true, false} {
		for _, e := range endings {
			t.Run(fmt.Sprintf("spdy/%v/%s", map[bool]string{true: "tty", false: "notty"}[tty], e.name), func(t *testing.T) {
				t.Parallel()
				tag := srv.Tag()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				defer func() { // the orphan is evidence, then it goes
					_, _ = srv.Procs().Kill(context.Background(), proctable.Match{Session: tag}, 9)
				}()
				c, err := cl.DialSPDY(ctx, realapiserver.Mark(tag, []string{"sh", "-i"}), tty, true)
				require.NoError(t, err)
				defer func() { _ = c.Reset() }()
				assert.Equal(t, execproto.SPDYProtocolV4, c.Protocol(), "the kubelet picks v4 for client-go's offer")
				enter := "\r"
				if !tty {
					enter = "\n"
				}
				require.NoError(t, c.Type("echo ready-$((6*7))"+enter))
				require.NoError(t, c.Expect(ctx, "ready-42"))
				require.NoError(t, e.end(c))

				gctx, gcancel := context.WithTimeout(ctx, 3*time.Second)
				_, live, err := srv.Procs().WaitGone(gctx, proctable.Match{Session: tag})
				gcancel()
				shells, perr := srv.PodShells(ctx, tag)
				require.NoError(t, perr)
				if tty {
					assert.Error(t, err, "a tty shell must outlive its client's end over SPDY too (%s)", e.name)
					assert.Len(t, shells, 1, "ps aux in the pod must count the shell")
					t.Logf("alive, as on WebSocket: process table %v; ps aux in the pod %q", live, shells)
				} else {
					assert.NoError(t, err, "a shell on pipes ends with stdin's EOF")
					assert.Empty(t, shells)
				}
				if e.name == "stdin-half-close" {
					// The session is still open: the status comes when the
					// shell ends (on pipes, at once).
					sctx, scancel := context.WithTimeout(ctx, time.Second)
					st, ok, serr := c.Status(sctx)
					scancel()
					t.Logf("after the half-close: status %+v (ok %v, err %v)", st, ok, serr)
				}
			})
		}
	}
}

// TestControlStdinClose is what a real cluster does with a stdin
// half-close straight from the client (the v5 CLOSE signal [255, 0], as
// client-go's WebSocket executor sends when its stdin reader ends; over
// SPDY the stdin stream's FIN, TestControlNoProxySPDY): does the shell
// survive it, does input written after it still reach the shell, and does
// the shell survive the client's drop after it. This sets the level of
// stdin/half-closed-then-drop: a proxy that forwarded the half-close can
// no longer end a tty's shell.
func TestControlStdinClose(t *testing.T) {
	srv := realServer(t)
	cl := srv.Cluster()
	for _, tty := range []bool{true, false} {
		t.Run(fmt.Sprintf("v5/%s", map[bool]string{true: "tty", false: "notty"}[tty]), func(t *testing.T) {
			t.Parallel()
			tag := srv.Tag()
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			defer func() { _, _ = srv.Procs().Kill(context.Background(), proctable.Match{Session: tag}, 9) }()
			c, err := cl.Dial(ctx, realapiserver.Mark(tag, []string{"sh", "-i"}), tty, true, execproto.ProtocolV5)
			require.NoError(t, err)
			defer func() { _ = c.Reset() }()
			enter := "\r"
			if !tty {
				enter = "\n"
			}
			require.NoError(t, c.Type("echo ready-$((6*7))"+enter))
			require.NoError(t, c.Expect(ctx, "ready-42"))
			require.NoError(t, c.CloseStdin())

			gctx, gcancel := context.WithTimeout(ctx, 3*time.Second)
			_, live, err := srv.Procs().WaitGone(gctx, proctable.Match{Session: tag})
			gcancel()
			if !tty {
				assert.NoError(t, err, "a shell on pipes ends with stdin's EOF")
				return
			}
			require.Error(t, err, "a tty shell survives its stdin's half-close")
			t.Logf("after the v5 CLOSE of stdin: alive (%v)", live)

			// Input after the half-close: the exit a proxy would type.
			terr := c.Type("exit" + enter)
			gctx, gcancel = context.WithTimeout(ctx, 3*time.Second)
			_, live, err = srv.Procs().WaitGone(gctx, proctable.Match{Session: tag})
			gcancel()
			assert.Error(t, err, "input after the half-close does not reach the shell (write: %v)", terr)
			t.Logf("exit typed after the CLOSE (write error %v): still alive %v", terr, live)

			// The client drops: the shell is an orphan.
			require.NoError(t, c.AbortTCP())
			gctx, gcancel = context.WithTimeout(ctx, 3*time.Second)
			_, live, err = srv.Procs().WaitGone(gctx, proctable.Match{Session: tag})
			gcancel()
			shells, perr := srv.PodShells(ctx, tag)
			require.NoError(t, perr)
			assert.Error(t, err, "the drop after a stdin half-close leaves the tty shell alive")
			assert.Len(t, shells, 1, "ps aux in the pod counts it")
			t.Logf("after the drop: process table %v; ps aux in the pod %q", live, shells)
		})
	}
}
