package faults

import (
	"time"

	"github.com/Shopify/toxiproxy/v2/toxics"
)

// IdleTimeoutToxic closes a connection that carried no data in either
// direction for Timeout milliseconds, as AWS ELB/ALB (60 s), nginx's
// proxy_read_timeout, HAProxy's timeout tunnel and GCP's backend timeout
// do. Until then it passes data unchanged. Pings and pongs are data here,
// so they keep the connection open, as they do through a real balancer.
//
//	client --> reader --> [ ... idle_timeout ... ] --> writer --> upstream
//	client <-- writer <-- [ ...                  ] <-- reader <-- upstream
//	             every byte either reader reads restarts the clock;
//	             Timeout ms of silence: close both connections,
//	             FIN both ways, or RST both ways if Reset
//
// It watches both directions whatever its stream: they share the
// connection's state, which the link's readers stamp with the time of the
// last byte read from either side. The clock starts no earlier than when the toxic was added, so
// adding it to a connection that was already idle does not close it at
// once. It is measured from bytes read by the link, before any other toxic
// (so a latency toxic does not stretch it).
//
// Outside a faults.Link (in a plain Toxiproxy server, where it has no
// session) it only passes data.
type IdleTimeoutToxic struct {
	Timeout int64 `json:"timeout"` // milliseconds; 0 never closes
	Reset   bool  `json:"reset"`   // close with RST (SO_LINGER 0) instead of FIN
	binding
}

type idleState struct {
	s     *session
	since time.Time // when the toxic attached to the session
}

// NewState is called by Toxiproxy when the toxic attaches to one direction
// of a connection.
func (t *IdleTimeoutToxic) NewState() any {
	return &idleState{s: t.session(true), since: time.Now()}
}

// Pipe passes data through, like Toxiproxy's noop toxic, and closes the
// session once it has been idle for Timeout, even while a chunk waits for
// a slow destination.
func (t *IdleTimeoutToxic) Pipe(stub *toxics.ToxicStub) {
	st, _ := stub.State.(*idleState)
	timeout := time.Duration(t.Timeout) * time.Millisecond
	var timer *time.Timer
	var expired <-chan time.Time // nil: never
	if st != nil && st.s != nil && timeout > 0 {
		timer = time.NewTimer(st.left(timeout))
		defer timer.Stop()
		expired = timer.C
	}
	check := func() {
		if st.s.closed() { // by another toxic, Down or Close
			expired = nil
			return
		}
		if left := st.left(timeout); left > 0 {
			timer.Reset(left)
			return
		}
		st.s.link.log.Info("faults: idle_timeout", "conn", st.s.id, "idle", time.Since(st.last()), "reset", t.Reset)
		st.s.close(t.Reset, "idle_timeout")
		expired = nil
	}
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			for sent := false; !sent; {
				select {
				case stub.Output <- c:
					sent = true
				case <-expired:
					check()
				}
			}
		case <-expired:
			check()
		}
	}
}

func (st *idleState) last() time.Time {
	last := st.s.lastActivity()
	if last.Before(st.since) {
		return st.since
	}
	return last
}

// left is how long until the session has been idle for timeout.
func (st *idleState) left(timeout time.Duration) time.Duration {
	return timeout - time.Since(st.last())
}

func init() {
	toxics.Register(TypeIdleTimeout, new(IdleTimeoutToxic))
}
