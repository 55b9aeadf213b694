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
