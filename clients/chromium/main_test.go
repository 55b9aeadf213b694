package chromium_test

import (
	"testing"

	"github.com/execconform/execconform/internal/leakguard"
)

// TestMain fails the package if a test leaves a process behind (a shell,
// or a browser's: every Chromium process carries the tags), and kills
// them all if the binary is interrupted.
func TestMain(m *testing.M) { leakguard.Main(m) }
