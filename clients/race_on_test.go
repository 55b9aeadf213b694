//go:build race

package clients_test

// raceEnabled: the harness and the proxy run under the race detector.
const raceEnabled = true
