package realapiserver

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePodList(t *testing.T) {
	out := "S 42 (sh) S 1 42 42 34816 42 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0\n" +
		"C sh\x01-i\x01-s\x01execconform:e2e-1-2\x01\n" +
		"E EXECCONFORM_SESSION=e2e-1-2\x01EXECCONFORM_SERVER_PID=9\x01\n" +
		"S 43 (sleep) Z 42 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 778 0 0\n" +
		"C \n" +
		"E \n" +
		"END\n"
	procs, err := parsePodList(out)
	require.NoError(t, err)
	require.Len(t, procs, 2)
	assert.Equal(t, 42, procs[0].PID)
	assert.Equal(t, "e2e-1-2", procs[0].Session)
	assert.Equal(t, 9, procs[0].ServerPID)
	assert.Equal(t, []string{"sh", "-i", "-s", "execconform:e2e-1-2"}, procs[0].Cmdline)
	assert.True(t, procs[0].Live())
	assert.False(t, procs[1].Live(), "a zombie is not alive")

	_, err = parsePodList(out[:len(out)-4])
	assert.ErrorContains(t, err, "cut short", "a list that did not run to its end must not read as 'no processes'")
	_, err = parsePodList("S 42 (sh\nC \nE \nEND\n")
	assert.Error(t, err, "a malformed stat line")
}
