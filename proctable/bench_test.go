package proctable

import (
	"testing"
)

// BenchmarkScan measures a full scan of /proc in steady state: the command
// lines and tags of unchanged processes come from the cache.
func BenchmarkScan(b *testing.B) {
	benchmarkScan(b, func() *imageCache { return &cache })
}

// BenchmarkScanCold measures a full scan that reads every process's
// cmdline and environ, as the first scan does.
func BenchmarkScanCold(b *testing.B) {
	benchmarkScan(b, func() *imageCache { return new(imageCache) })
}

func benchmarkScan(b *testing.B, cache func() *imageCache) {
	var n int
	for b.Loop() {
		procs, err := scan(procRoot, cache())
		if err != nil {
			b.Fatal(err)
		}
		n = len(procs)
	}
	b.ReportMetric(float64(n), "procs")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/proc")
}
