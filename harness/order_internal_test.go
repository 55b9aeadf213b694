package harness

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/scenarios"
)

// TestStartOrder: seed 0 keeps the listed order, a seed gives the same
// shuffle every time, a permutation of every case; either way the cases
// that take the whole pool start first.
func TestStartOrder(t *testing.T) {
	cases := scenarios.Cases(scenarios.All())
	listed := startOrder(cases, 0)
	a, b := startOrder(cases, 7), startOrder(cases, 7)
	assert.Equal(t, a, b, "the same seed, the same order")
	assert.NotEqual(t, listed, a)
	assert.NotEqual(t, a, startOrder(cases, 8))
	for _, order := range [][]int{listed, a} {
		sorted := slices.Clone(order)
		slices.Sort(sorted)
		for i, j := range sorted {
			require.Equal(t, i, j, "a permutation of every case")
		}
		light := 0
		for k, i := range order {
			if wholePool(cases[i]) == 0 {
				light++
				continue
			}
			assert.Zero(t, light, "whole-pool case %d (%s) starts after another case", k, cases[i].Name())
		}
		assert.Less(t, light, len(order), "no whole-pool case")
	}
	// Seed 0: the rest in the listed order.
	prev := -1
	for _, i := range listed {
		if wholePool(cases[i]) == 0 {
			assert.Greater(t, i, prev)
			prev = i
		}
	}
}

// TestPoolSessions: with a session bound a case takes its sessions from
// the budget (at most the whole budget), after its slots; without one the
// pool bounds cases only.
func TestPoolSessions(t *testing.T) {
	c := func(sessions int) scenarios.Case {
		return scenarios.Case{Scenario: &scenarios.Scenario{Name: "x", Sessions: sessions}}
	}
	p := NewPool(8, 24)
	release := p.Acquire(c(20))
	assert.False(t, p.sessions.TryAcquire(5), "a 20-session case left more than 4 of 24")
	assert.True(t, p.sessions.TryAcquire(4))
	p.sessions.Release(4)
	one := p.Acquire(c(0))
	assert.False(t, p.sessions.TryAcquire(4), "a single session took nothing")
	one()
	release()
	assert.True(t, p.sessions.TryAcquire(24), "release gave the sessions back")
	p.sessions.Release(24)

	release = p.Acquire(c(200))
	assert.False(t, p.sessions.TryAcquire(1), "a case over the bound takes all of it")
	assert.False(t, p.sem.TryAcquire(1), "and the whole pool")
	release()

	assert.Nil(t, NewPool(8, 0).sessions)
}
