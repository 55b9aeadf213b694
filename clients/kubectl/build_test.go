package kubectl_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/clients/kubectl"
)

// TestBuildOnceAtATime: two builds into an empty cache at once build
// once (the second waits for the lock and finds the first's binary),
// and leave no temporary file. The go build cache is warm after
// newDialer, so the build is a link (about 10 s here).
func TestBuildOnceAtATime(t *testing.T) {
	newDialer(t) // the go build cache warm, or a skip without go
	cache := t.TempDir()
	var wg sync.WaitGroup
	var paths [2]string
	var errs [2]error
	var outs [2]lockedBuffer
	for i := range 2 {
		wg.Go(func() {
			paths[i], errs[i] = kubectl.Build(deadline(t, 5*time.Minute), kubectl.BuildOptions{CacheDir: cache, Output: &outs[i]})
		})
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	assert.Equal(t, paths[0], paths[1])
	assert.Equal(t, filepath.Join(cache, "kubectl-"+kubectl.ModuleVersion, "kubectl"), paths[0])
	built := 0
	for i := range outs {
		if outs[i].contains("kubectl: built ") {
			built++
		}
	}
	assert.Equal(t, 1, built, "built once: %q, %q", outs[0].String(), outs[1].String())
	entries, err := os.ReadDir(filepath.Dir(paths[0]))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{".lock", "kubectl", "kubectl.stamp"}, names)

}

type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

func (l *lockedBuffer) contains(s string) bool {
	return strings.Contains(l.String(), s)
}
