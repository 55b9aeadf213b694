//go:build race

package proxyundertest_test

const raceEnabled = true
