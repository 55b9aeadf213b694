package harness

import (
	"context"
	"net"
	"net/url"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFreePortNeverHandsAPortTwice: ports are held until released, so
// cases starting at once cannot get the same one (two proxies then raced
// for one port: "bind: address already in use", seen once in CI).
func TestFreePortNeverHandsAPortTwice(t *testing.T) {
	seen := map[int]bool{}
	var releases []func()
	for range 300 {
		port, release, err := freePort()
		require.NoError(t, err)
		require.False(t, seen[port], "port %d handed out twice", port)
		seen[port] = true
		releases = append(releases, release)
	}
	for _, r := range releases {
		r()
	}
	proxyPorts.Lock()
	defer proxyPorts.Unlock()
	assert.Empty(t, proxyPorts.held)
}

// TestPortTakenByAnotherProcessIsRetried: when another process listens on
// the port a proxy was given, the proxy is started again on another port
// instead of the case ending in ERROR.
func TestPortTakenByAnotherProcessIsRetried(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	require.True(t, portTaken(busyPort))

	picks := 0
	pickPort = func() (int, func(), error) {
		picks++
		if picks == 1 {
			return busyPort, func() {}, nil
		}
		return freePort()
	}
	defer func() { pickPort = freePort }()

	// The test binary stands in for a proxy (see TestMain): it exits 2 when
	// it cannot listen.
	target, err := CommandTarget(CommandConfig{Template: "EXECCONFORM_TEST_LISTEN={{.Listen}} exec " + strconv.Quote(os.Args[0])})
	require.NoError(t, err)
	backend := Backend{URL: &url.URL{Scheme: "https", Host: "127.0.0.1:1"}}
	front, stop, err := target(context.Background(), backend)
	require.NoError(t, err)
	defer stop()
	assert.Equal(t, 2, picks)
	assert.NotEqual(t, strconv.Itoa(busyPort), front.Port())
}
