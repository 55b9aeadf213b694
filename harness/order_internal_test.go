package harness

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/execconform/execconform/scenarios"
)

// TestStartOrder: seed 0 keeps the listed order; a seed gives the same
// shuffle every time, a permutation of every case, with the cases that
// take the whole pool last.
func TestStartOrder(t *testing.T) {
	cases := scenarios.Cases(scenarios.All())
	listed := startOrder(cases, 0)
	for i, j := range listed {
		assert.Equal(t, i, j)
	}
	a, b := startOrder(cases, 7), startOrder(cases, 7)
	assert.Equal(t, a, b, "the same seed, the same order")
	assert.NotEqual(t, listed, a)
	assert.NotEqual(t, a, startOrder(cases, 8))
	sorted := slices.Clone(a)
	slices.Sort(sorted)
	assert.Equal(t, listed, sorted, "a permutation of every case")
	heavy := 0
	for k, i := range a {
		if wholePool(cases[i]) == 1 {
			heavy++
			continue
		}
		assert.Zero(t, heavy, "case %d (%s) starts after a whole-pool case", k, cases[i].Name())
	}
	assert.Positive(t, heavy)
}
