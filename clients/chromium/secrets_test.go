package chromium_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients/chromium"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/scenarios"
)

// lockedBuffer is a bytes.Buffer for several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNoSecretsInLogs: at the debug level, through a session's life (a
// refused upgrade, which makes the browser log the failure, an open, an
// ending, the release), the log holds neither the API token (plain, or
// in its bearer subprotocol) nor the front cookie.
func TestNoSecretsInLogs(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := chromium.New(chromium.Options{ExecPath: needBrowser(t), Logger: log})
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Close()) }()
	rp := newRefProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	bad := rp.request(true, own(scenarios.OwnTabClose))
	bad.Header.Set("Cookie", "execconform_front=wrong-"+frontToken)
	_, err = d.DialSession(ctx, bad)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), frontToken)

	req := rp.request(true, own(scenarios.OwnTabClose))
	req.Logger = log
	s, _ := dial(t, ctx, d, req)
	require.NoError(t, s.EndAs(ctx, scenarios.OwnTabClose))
	<-s.Done()
	s.Release()

	out := buf.String()
	require.Contains(t, out, "chromium: browser log", "the refusal was logged")
	for name, secret := range map[string]string{
		"the API token":          rp.fake.Token(),
		"the bearer subprotocol": execproto.BearerProtocol(rp.fake.Token()),
		"the front cookie":       frontToken,
	} {
		assert.NotContains(t, out, secret, "%s is in the log", name)
	}
}
