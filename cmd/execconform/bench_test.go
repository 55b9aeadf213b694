package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBenchWritesItsReports: `execconform bench` on one small figure
// prints the table with direct and the reference proxy, and writes
// bench.json and bench.md; bad sizes are refused.
func TestBenchWritesItsReports(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"bench", "--quick", "--figures", "setup", "--setups", "3", "--out", dir}, &out, &errb)
	require.NoError(t, err, errb.String())
	assert.Contains(t, out.String(), "upgrade to first prompt p50 (3 sessions)")
	assert.Contains(t, out.String(), "direct")
	assert.Contains(t, out.String(), "reference")
	b, err := os.ReadFile(filepath.Join(dir, "bench.json"))
	require.NoError(t, err)
	var rep struct {
		Schema  string `json:"schema"`
		Targets []struct {
			Name string `json:"name"`
		} `json:"targets"`
	}
	require.NoError(t, json.Unmarshal(b, &rep))
	assert.Equal(t, "execconform-bench/1", rep.Schema)
	require.Len(t, rep.Targets, 2)
	assert.Equal(t, "reference", rep.Targets[1].Name)
	md, err := os.ReadFile(filepath.Join(dir, "bench.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "| figure | unit | direct | reference |")

	for _, bad := range [][]string{{"--drop-sizes", "0"}, {"--figures", "speed"}, {"--drop-kinds", "cable"}} {
		err := run(context.Background(), append([]string{"bench", "--out", ""}, bad...), &out, &errb)
		assert.Error(t, err, "%v", bad)
	}
}
