//go:build race

package clientgo_test

// raceEnabled: the client processes are this race-built test binary too.
const raceEnabled = true
