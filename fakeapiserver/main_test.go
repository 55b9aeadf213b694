package fakeapiserver_test

import (
	"testing"

	"github.com/execconform/execconform/internal/leakguard"
)

// TestMain fails the package if a test leaves a process behind, and kills
// every shell the tests started if the binary is interrupted.
func TestMain(m *testing.M) { leakguard.Main(m) }
