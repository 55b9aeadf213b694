package sockbuf_test

import (
	"context"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/internal/sockbuf"
)

// buffers reads SO_RCVBUF and SO_SNDBUF of c (Linux reports twice what was
// set: the kernel's bookkeeping).
func buffers(t *testing.T, c syscall.Conn) (rcv, snd int) {
	t.Helper()
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, raw.Control(func(fd uintptr) {
		rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		snd, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	}))
	return rcv, snd
}

func TestControl(t *testing.T) {
	ln, err := (&net.ListenConfig{Control: sockbuf.Control}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := (&net.Dialer{Control: sockbuf.SendControl(sockbuf.Size)}).Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	a, err := ln.Accept()
	require.NoError(t, err)
	defer a.Close()

	rcv, snd := buffers(t, a.(*net.TCPConn)) // inherited from the listener
	assert.Equal(t, 2*sockbuf.Size, rcv)
	assert.Equal(t, 2*sockbuf.Size, snd)
	rcv, snd = buffers(t, c.(*net.TCPConn))
	assert.Equal(t, 2*sockbuf.Size, snd)
	assert.NotEqual(t, 2*sockbuf.Size, rcv, "SendControl leaves the receive buffer alone")
}
