package faults

import "github.com/Shopify/toxiproxy/v2/toxics"

// HalfOpenToxic silently drops everything in both directions from the
// moment it is added, and closes nothing: no FIN and no RST reaches either
// side, even when one of them closes. That is Azure's load balancer
// dropping an idle flow without TCP reset, or a pulled cable.
//
//	client --> reader -x  (read and dropped)      [ chain ] --> writer --> upstream
//	client <-- writer <-- [ chain ]      (read and dropped)  x- reader <-- upstream
//	             a peer's FIN or RST is held in its reader, not passed on
//
// Data the link had already read when it was added is delivered: only what
// the readers read from then on is dropped. Both directions are dropped
// whatever its stream: the readers of both consult the state that the two
// directions of a connection share.
// Removing the toxic lets traffic and any held FIN or RST through again;
// closing the link closes both connections as usual.
//
// The link still reads, so the kernel still acknowledges: a sender's
// writes keep succeeding, and TCP keepalive or TCP_USER_TIMEOUT on either
// side cannot notice the fault; only traffic that expects an answer (a
// WebSocket ping) can. Added before a connection is made, it lets the
// connection be made and then carries nothing.
//
// Outside a faults.Link (in a plain Toxiproxy server) it only passes data.
type HalfOpenToxic struct {
	binding
}

type halfOpenState struct{ s *session }

// NewState is called by Toxiproxy, synchronously from Link.Add, when the
// toxic attaches to a connection: the drop starts here, before Add returns.
func (t *HalfOpenToxic) NewState() any {
	s := t.session(true)
	if s != nil {
		s.silence(+1)
	}
	return &halfOpenState{s}
}

// Pipe passes on what reaches it, which the link read before the toxic
// was added.
func (t *HalfOpenToxic) Pipe(stub *toxics.ToxicStub) {
	new(toxics.NoopToxic).Pipe(stub)
}

// Cleanup is called by Toxiproxy when the toxic is removed.
func (t *HalfOpenToxic) Cleanup(stub *toxics.ToxicStub) {
	if st, _ := stub.State.(*halfOpenState); st != nil && st.s != nil {
		st.s.silence(-1)
		st.s = nil
	}
}

func init() {
	toxics.Register(TypeHalfOpen, new(HalfOpenToxic))
}
