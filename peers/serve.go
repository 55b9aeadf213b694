package peers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/execconform/execconform/harness"
)

// releaseBound bounds how long stop waits for the peer's code to let go of
// the connections stop closed under it.
const releaseBound = 5 * time.Second

// server is one case's instance of a peer: serve runs it on a listener
// until the listener is closed; close, if set, releases what serve's
// server holds besides the listener.
type server struct {
	serve func(net.Listener) error
	close func()
}

// ServeHandler is a target that serves the handler build makes for each
// case on an http.Server of its own (no timeouts, as the peers' servers
// have none), stopped as the peers are (see listenerTarget): for a peer
// built in another module (peers/argocd).
func ServeHandler(build func(b harness.Backend) (http.Handler, error)) harness.Target {
	return listenerTarget(func(b harness.Backend) (server, error) {
		h, err := build(b)
		if err != nil {
			return server{}, err
		}
		srv := &http.Server{Handler: h}
		return server{serve: srv.Serve, close: func() { _ = srv.Close() }}, nil
	})
}

// listenerTarget starts the server that build makes on a new loopback
// listener per case. The peers are programs that users stop with SIGTERM
// and that have no shutdown path of their own (kubectl proxy does not catch
// the signal: the process exits and the kernel closes its sockets), so stop
// does what their exit does: it closes the listener and every connection
// the server accepted, hijacked upgrade tunnels included, then waits
// (bounded) until the peer's code has closed each of them too, which is
// when its copy goroutines are done and its backend connections closed.
func listenerTarget(build func(b harness.Backend) (server, error)) harness.Target {
	return func(ctx context.Context, b harness.Backend) (*url.URL, func(), error) {
		srv, err := build(b)
		if err != nil {
			return nil, nil, err
		}
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("peers: listen: %w", err)
		}
		ln := &trackingListener{Listener: raw, conns: map[*trackedConn]struct{}{}}
		served := make(chan struct{})
		go func() {
			defer close(served)
			_ = srv.serve(ln) // returns when the listener is closed
		}()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				_ = ln.Close()
				<-served
				if srv.close != nil {
					srv.close()
				}
				ln.closeAll(releaseBound)
			})
		}
		return &url.URL{Scheme: "http", Host: raw.Addr().String()}, stop, nil
	}
}

// trackingListener records every connection it accepts, so that they can
// all be closed (hijacked ones too: an http.Server forgets those).
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, released: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// closeAll closes every accepted connection under its owner, then waits
// at most bound until every owner (the http.Server, or the handler that
// hijacked it) has closed it as well.
func (l *trackingListener) closeAll(bound time.Duration) {
	l.mu.Lock()
	l.closed = true
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Conn.Close()
	}
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	for _, c := range conns {
		select {
		case <-c.released:
		case <-deadline.C:
			return
		}
	}
}

// trackedConn is an accepted connection; released is closed when its
// owner closes it.
type trackedConn struct {
	net.Conn
	once     sync.Once
	released chan struct{}
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.released) })
	if errors.Is(err, net.ErrClosed) {
		return nil // stop closed it first
	}
	return err
}

// ReadFrom and WriteTo keep the copy paths of the underlying *net.TCPConn
// (io.Copy uses them), so the peer copies as it does on a bare socket.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *trackedConn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.Conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{c.Conn})
}

// CloseWrite keeps the half-close of the underlying *net.TCPConn:
// httputil.ReverseProxy's upgrade copier half-closes the side whose peer
// has stopped sending, when that side can (kube-rbac-proxy's tunnel).
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
