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
func Control(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, Size); serr != nil {
			return
		}
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, Size)
	})
	if err != nil {
		return err
	}
	return serr
}

// SendControl returns a Control function that sets only SO_SNDBUF, to n
// bytes.
func SendControl(n int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, n)
		}); err != nil {
			return err
		}
		return serr
	}
}
