// Package proctable answers "is this process still alive?" from the
// operating system's process table (/proc, what `ps aux` shows), never from
// bookkeeping kept by the code that started the process.
//
// Every process started by the fake API server carries two environment
// variables, [SessionEnv] and [ServerPIDEnv], which its descendants inherit.
// [Scan] reads them from each process's initial environment
// (/proc/PID/environ), so processes can be selected by exec session, by
// kernel session id, or found orphaned when the server that started them is
// gone.
//
// A [Table] coalesces scans: any number of goroutines waiting on it cause at
// most one scan of /proc per interval, and its scanning goroutine runs only
// while somebody waits.
//
// The package is Linux-only.
package proctable

// SessionEnv names the environment variable carrying the exec session id of
// every process the fake API server starts.
const SessionEnv = "EXECCONFORM_SESSION"

// ServerPIDEnv names the environment variable carrying the PID of the fake
// API server process that started a process.
const ServerPIDEnv = "EXECCONFORM_SERVER_PID"
