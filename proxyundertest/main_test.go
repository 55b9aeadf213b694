package proxyundertest_test

import (
	"testing"

	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/proxyundertest"
)

// TestMain fails the package if a test leaves a process behind, and kills
// every shell the tests started if the binary is interrupted.
// client-go's executors (the translating proxy's) log to klog: dropped.
func TestMain(m *testing.M) {
	proxyundertest.DiscardClientGoLogs()
	leakguard.Main(m)
}
