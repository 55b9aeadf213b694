package janitor

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/proctable"
)

func TestParseParent(t *testing.T) {
	p, err := parseParent("1234:5678")
	require.NoError(t, err)
	assert.Equal(t, parent{1234, 5678}, p)
	for _, bad := range []string{"", "1234", "1234:", ":5678", "x:1", "1:x", "1:5678", "-3:1"} {
		_, err := parseParent(bad)
		assert.Error(t, err, "%q", bad)
	}
}

// TestLiveParentIsLeftAlone: EOF on the pipe while the parent lives (it
// exec'd, say) kills nothing: clean waits for the parent's exit until its
// bound, then gives up.
func TestLiveParentIsLeftAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start, err := readProc(os.Getppid())
	require.NoError(t, err)
	res := clean(ctx, parent{os.Getppid(), start.StartTime}, proctable.NewTable(settle))
	assert.False(t, res.failed())
	assert.Empty(t, res.killed)
	assert.Empty(t, res.dirs)
	assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded, "clean returned before its bound")
}

func TestEnvironHasNoTags(t *testing.T) {
	t.Setenv(proctable.SessionEnv, "s")
	t.Setenv(proctable.ServerPIDEnv, "1")
	t.Setenv(Env, "1:1")
	for _, kv := range environ() {
		assert.NotRegexp(t, `^(EXECCONFORM_SESSION|EXECCONFORM_SERVER_PID|EXECCONFORM_JANITOR|GOMAXPROCS)=`, kv)
	}
}

// TestLineShowsNoCommandLine: what the janitor prints names no process:
// a proxy's command line may hold a token.
func TestLineShowsNoCommandLine(t *testing.T) {
	p := proctable.Proc{PID: 7, Cmdline: []string{"myproxy", "--token", "s3cret"}}
	r := result{
		killed:  []proctable.Proc{p},
		killErr: fmt.Errorf("proctable: still live after 10s: %s: %w", p, context.DeadlineExceeded),
	}
	assert.Equal(t, "killed 1 process(es) it started, removed 0 temporary directories; could not kill them all within 10s (`execconform reap --check` lists what is left)", r.String())
}
