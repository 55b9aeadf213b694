package chromium_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients/chromium"
	"github.com/execconform/execconform/scenarios"
)

func TestExplore(t *testing.T) {
	d := newDialer(t, chromium.Options{})
	fake := newFake(t)
	req := request(fake.URL(), fake.Token(), true, scenarios.End{Kind: scenarios.EndTypeExit}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	s, err := d.Dial(ctx, req)
	require.NoError(t, err)
	defer s.Release()
	t.Logf("open: %v, protocol %s", time.Since(start), s.Protocol())
	require.NoError(t, s.Type("echo $((40+2))\r"))
	require.NoError(t, s.Expect(ctx, "42"))
	require.NoError(t, s.Type("exit\r"))
	<-s.Done()
	t.Logf("end: %s", s.End())
	bs := backendSession(t, fake, req)
	t.Logf("rec: %+v", bs.Recorder().Close())
}
