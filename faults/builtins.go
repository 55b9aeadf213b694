package faults

import "github.com/Shopify/toxiproxy/v2/toxics"

// Three of Toxiproxy's built-in toxics are registered again under faults'
// own names, and a Toxic of the built-in type is added under that name.
// Each runs the built-in's own Pipe unchanged; what the adapter adds is
// noted on it. Toxiproxy keeps its own registrations: this changes nothing
// for a plain Toxiproxy server in the same process.
var adapted = map[string]string{
	"reset_peer": "faults_reset_peer",
	"timeout":    "faults_timeout",
	"limit_data": "faults_limit_data",
}

// drain reads a closed stub's input to its end. A built-in that closes its
// stub (timeout, reset_peer, limit_data) stops reading its input there, and
// the toxic before it (the chain's noop at least) would block for ever on
// its next chunk, and Toxiproxy's read loop behind it: two goroutines left
// per connection that still had data coming. The input ends when the
// connection does, which the close just started.
//
//	reader -> noop -> [closed stub] <- drain keeps reading until the noop closes its output
func drain(stub *toxics.ToxicStub) {
	for range stub.Input {
	}
}

// resetPeerToxic is Toxiproxy's reset_peer. Toxiproxy's ToxicLink.Start
// type-asserts both connections to *net.TCPConn when a *toxics.ResetToxic
// is in a chain, to set SO_LINGER 0, and faults hands it wrapped
// connections, so the built-in type would panic there. Instead this sets
// SO_LINGER 0 on both connections from the moment it attaches (so, unlike
// the plain server, also when added to an open connection), and drains:
//
//	client --> reader --> [ ... reset_peer ... ] --> writer --> upstream
//	            next chunk (or end) in its stream, then timeout ms:
//	            closes its stream; with SO_LINGER 0 that is an RST to this
//	            stream's destination, and the other stream's end resets
//	            the other side
type resetPeerToxic struct {
	toxics.ResetToxic
	binding
}

type resetState struct{ s *session }

// NewState is called by Toxiproxy when the toxic attaches to a connection.
func (t *resetPeerToxic) NewState() any {
	// Like Toxiproxy, whatever the toxicity: its draw is per run of Pipe.
	s := t.session(false)
	if s != nil {
		s.linger(+1)
	}
	return &resetState{s}
}

// Pipe is reset_peer's.
func (t *resetPeerToxic) Pipe(stub *toxics.ToxicStub) {
	t.ResetToxic.Pipe(stub)
	if stub.Closed() {
		drain(stub)
	}
}

// Cleanup is called by Toxiproxy when the toxic is removed before it
// fired: later closes are FIN again.
func (t *resetPeerToxic) Cleanup(stub *toxics.ToxicStub) {
	if st, _ := stub.State.(*resetState); st != nil && st.s != nil {
		st.s.linger(-1)
		st.s = nil
	}
}

// timeoutToxic is Toxiproxy's timeout, which drains once it has closed the
// connection, after its timeout or on removal.
type timeoutToxic struct{ toxics.TimeoutToxic }

// Pipe is timeout's.
func (t *timeoutToxic) Pipe(stub *toxics.ToxicStub) {
	t.TimeoutToxic.Pipe(stub)
	if stub.Closed() {
		drain(stub)
	}
}

// Cleanup is timeout's: removing the toxic closes the connection. The
// toxic before it is not restarted by Toxiproxy then, and keeps sending.
func (t *timeoutToxic) Cleanup(stub *toxics.ToxicStub) {
	t.TimeoutToxic.Cleanup(stub)
	go drain(stub)
}

// limitDataToxic is Toxiproxy's limit_data, which drains once it has
// closed the connection.
type limitDataToxic struct{ toxics.LimitDataToxic }

// Pipe is limit_data's.
func (t *limitDataToxic) Pipe(stub *toxics.ToxicStub) {
	t.LimitDataToxic.Pipe(stub)
	if stub.Closed() {
		drain(stub)
	}
}

func init() {
	toxics.Register(adapted["reset_peer"], new(resetPeerToxic))
	toxics.Register(adapted["timeout"], new(timeoutToxic))
	toxics.Register(adapted["limit_data"], new(limitDataToxic))
}
