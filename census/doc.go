// Package census counts the orphaned shells of a live cluster from
// outside: for every running container it may exec into, one exec reads
// the container's process table from /proc with a script that needs only
// sh and cat (stat or ls, when present, add the times of the ttys), and
// the dump is parsed, grouped into exec'd process trees and judged by
// documented rules (docs/census.md). It does not rely on ps, on a proxy or
// on any bookkeeping: what the kernel shows is the evidence.
//
//	kubeconfig ──> list pods ──> per container, bounded in time and in number:
//	    exec `sh -c DumpScript` ──> ParseDump ──> Trees ──> Rules.Judge ──> PodResult
//	                                                                 └──> Report (table, JSON, Markdown)
//	--reap: exec `sh -c ReapScript HUP pid:start...` (re-checked in the pod), then KILL, then a fresh dump
//
// The pure part (ParseDump, Trees, Rules) is tested over recorded dumps in
// testdata/; the cluster part (Cluster, Census, Reap) against the fake API
// server in a normal go test and against a real cluster in e2e/census_test.go.
package census
