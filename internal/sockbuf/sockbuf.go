// Package sockbuf bounds the kernel buffers of the suite's own sockets.
//
// Linux sizes loopback TCP buffers by autotuning, up to megabytes (the
// loopback MSS is 64 KiB). The fake API server and the fault links set a
// fixed size instead, so that how much a stalled backend path holds (what a
// proxy can write before it blocks) is small and the same on every machine;
// scenarios that need a proxy blocked in the middle of a write
// (busy/paste-in-flight) depend on that.
package sockbuf

import "syscall"

// Size is the send and receive buffer of each suite socket. The kernel
// doubles it for its bookkeeping.
const Size = 32 << 10

// Control sets SO_RCVBUF and SO_SNDBUF to Size on a socket before it
// listens or connects (the window scale is chosen then), for
// net.ListenConfig.Control and net.Dialer.Control. Accepted sockets inherit
// the listener's sizes.
func Control(_, _ string, c syscall.RawConn) error { return set(c, Size, Size) }

// SendControl returns a Control function that sets only SO_SNDBUF, to n
// bytes.
func SendControl(n int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error { return set(c, 0, n) }
}

// set sets SO_RCVBUF to rcv and SO_SNDBUF to snd, each unless 0.
func set(c syscall.RawConn, rcv, snd int) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		for _, o := range []struct{ opt, n int }{{syscall.SO_RCVBUF, rcv}, {syscall.SO_SNDBUF, snd}} {
			if o.n > 0 && serr == nil {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o.opt, o.n)
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}
