package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/scenarios"
)

// end performs the case's ending, on every session at once, and returns
// when it happened.
func (r *caseRun) end(ctx context.Context) (time.Time, error) {
	e := r.c.Scenario.End
	at := time.Now()
	if e.Kind == scenarios.EndTargetStop {
		// As SIGTERM: the target's stop must clean up every open session.
		r.stopTarget()
		return at, nil
	}
	err := r.eachSession(func(s *sessionRun) error {
		err := r.endSession(ctx, s, e)
		if errors.Is(err, execclient.ErrEnded) {
			r.note(s, "the client's connection ended by itself as the ending came (%s)", s.client.End())
			return nil
		}
		return err
	})
	if err != nil {
		return at, fmt.Errorf("ending %s: %w", e.Kind, err)
	}
	return at, nil
}

// endSession does ending e on session s.
func (r *caseRun) endSession(ctx context.Context, s *sessionRun, e scenarios.End) error {
	if e.Kind != scenarios.EndBackendKill && e.Kind != scenarios.EndFault {
		select {
		case <-s.client.Done():
			// The client's connection has already ended (a shell on
			// pipes ends with its stdin after a half-close, the proxy
			// relays the end, and kubectl exits with it): the ending has
			// nothing left to end; the judge still judges the shell.
			r.note(s, "the client's connection had already ended before the ending (%s)", s.client.End())
			return nil
		default:
		}
	}
	switch e.Kind {
	case scenarios.EndClientClose:
		cctx, cancel := context.WithTimeout(ctx, r.opts.Grace)
		res, cerr := s.client.Close(cctx, e.Code, "")
		cancel()
		switch {
		case cerr != nil:
			r.note(s, "the proxy did not complete the client's close handshake: %v", cerr)
		case !res.Replied:
			r.note(s, "the proxy did not answer the client's close frame")
		}
		return nil
	case scenarios.EndClientAbort:
		return s.client.AbortTCP()
	case scenarios.EndClientReset:
		return s.client.Reset()
	case scenarios.EndTypeExit:
		return s.client.Type(r.enter("exit\r"))
	case scenarios.EndFault:
		return nil // the faults were the ending
	case scenarios.EndBackendKill:
		kctx, cancel := context.WithTimeout(ctx, r.opts.Grace)
		defer cancel()
		return s.sess.Kill(kctx)
	case scenarios.EndClientOwn:
		rc, ok := s.client.(clients.Session)
		if !ok {
			return fmt.Errorf("the ending %s needs a real client", e.As)
		}
		return rc.EndAs(ctx, e.As)
	}
	return fmt.Errorf("unknown ending %q", e.Kind)
}

// judge checks the outcome of every session against the case's
// expectations, collecting every failure with its evidence.
func (r *caseRun) judge(ctx context.Context, endedAt time.Time) {
	var mu sync.Mutex
	worst := time.Duration(0)
	reaped := true
	_ = r.eachSession(func(s *sessionRun) error {
		d, ok := r.judgeSession(ctx, s, endedAt)
		mu.Lock()
		defer mu.Unlock()
		if !ok {
			reaped = false
		} else if d > worst {
			worst = d
		}
		return nil
	})
	if reaped {
		r.res.TimeToReap = worst
	}
	c := r.sessions[0].client.End()
	r.res.Client.CloseCode, r.res.Client.CloseReason = c.ServerCloseCode, c.ServerCloseReason
	r.res.Client.EndAt = r.sessions[0].client.Started().Add(c.At).Sub(r.res.Started)
	if c.Err != nil {
		r.res.Client.EndErr = c.Err.Error()
	}
	r.observe(ctx)
}

// witnessTimeout bounds a second witness's look at a session.
const witnessTimeout = 30 * time.Second

// observe fills the result's Observed from the first session.
func (r *caseRun) observe(ctx context.Context) {
	s := r.sessions[0]
	cr := s.sess.Recorder().Close()
	o := &r.res.Observed
	o.LiveProcesses = len(r.res.Live)
	o.CloseFirstBy, o.BackendTCP = cr.FirstBy, cr.TCP
	if cr.ClientSent {
		o.TargetCloseCode = cr.ClientCode
	}
	if cr.ServerSent {
		o.ServerCloseCode = cr.ServerCode
	}
	o.ClientCloseCode = r.res.Client.CloseCode
	// The client has ended (or will not send more) by now: a short wait.
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	st, ok, err := s.client.Status(sctx)
	switch {
	case err != nil && !ok:
		o.Status = "none (connection still open)"
	case !ok:
		o.Status = "none"
	case err != nil:
		o.Status = "unparsable: " + err.Error()
	default:
		o.Status = describeStatus(st)
	}
}

// describeStatus names a status: "success", "exit N", or its message.
func describeStatus(st execproto.Status) string {
	if st.Status == "Success" {
		return "success"
	}
	if code, known := st.ExitCode(); known {
		return fmt.Sprintf("exit %d", code)
	}
	return st.Message
}

// judgeSession judges one session; it returns its time to reap and
// whether its processes were all gone.
func (r *caseRun) judgeSession(ctx context.Context, s *sessionRun, endedAt time.Time) (time.Duration, bool) {
	want := r.c.Want
	info := r.c.Level == scenarios.INFO
	grace := r.grace()
	var reap time.Duration
	reaped := false

	// 1. Processes, from the process table. Where survivors are only
	// reported (INFO, AnyLive), a third of the grace period shows them.
	window := grace
	if info || want.AnyLive {
		window = grace / 3
	}
	gctx, cancel := context.WithTimeout(ctx, window)
	_, live, err := s.sess.WaitGone(gctx)
	cancel()
	if err == nil {
		reap, reaped = time.Since(endedAt), true
	} else {
		var names []string
		for _, p := range live {
			names = append(names, p.String())
		}
		r.mu.Lock()
		r.res.Live = append(r.res.Live, live...)
		r.mu.Unlock()
		if len(live) == 0 || !errors.Is(err, context.DeadlineExceeded) {
			r.fail(s, CheckProcessTable, "could not read the process table: %v", err)
		} else if len(live) > want.LiveProcesses || info {
			msg := fmt.Sprintf("%d of the session's processes still alive %s after the ending: %s", len(live), window, strings.Join(names, "; "))
			if info || want.AnyLive {
				r.note(s, "%s", msg)
			} else {
				r.failInput(s, CheckLive, endedAt, "%s", msg)
			}
		}
	}

	// 1b. A second witness (ps aux in a real pod) must agree.
	if w, ok := s.sess.(Witness); ok {
		// A witness may be slow (an exec through a real API server): it
		// gets a bound of its own, not the grace period.
		wctx, cancel := context.WithTimeout(ctx, witnessTimeout)
		wr, err := w.Witness(wctx, live)
		cancel()
		r.mu.Lock()
		r.res.Observed.WitnessLive += wr.Live
		r.mu.Unlock()
		switch {
		case err != nil:
			r.fail(s, CheckWitness, "the second witness failed: %v", err)
		case wr.Disagreement != "":
			r.fail(s, CheckWitness, "the witnesses disagree: %s (%s)", wr.Disagreement, wr.Evidence)
		case wr.Live > 0:
			r.note(s, "%s", wr.Evidence)
		}
	}

	// 2. The backend connection and its close handshake. Behind a
	// dialect the proxy's executor (client-go's) cannot start a close
	// handshake: the clean end is the API server's, once the exit has
	// ended the shell, and it crosses the backend leg's injected latency
	// before the proxy can answer it.
	bwait := grace
	if r.c.Dialect != nil {
		bwait += r.legLatency(scenarios.BackendLeg)
	}
	bctx, cancel := context.WithTimeout(ctx, bwait)
	select {
	case <-s.sess.Done():
	case <-bctx.Done():
		if want.BackendCloseHandshake {
			r.failInput(s, CheckBackendOpen, endedAt, "the proxy kept the backend connection open %s after the ending", bwait)
		}
	}
	cancel()
	if want.ReleaseWithin > 0 {
		rctx, cancel := context.WithDeadline(ctx, endedAt.Add(want.ReleaseWithin))
		select {
		case <-s.sess.Done():
		case <-rctx.Done():
			r.failInput(s, CheckBackendHeld, endedAt, "the proxy still held the backend connection %s after the ending, with the shell beyond the exit's reach: it must let go of it (a translating terminal: cancel its executor's context)", want.ReleaseWithin)
		}
		cancel()
	}
	cr := s.sess.Recorder().Close()
	if want.BackendCloseHandshake {
		// Over SPDY there is no close handshake: a clean end is the
		// backend's own (its status, GOAWAY and TCP close, once the exit
		// has ended the shell) or the proxy's GOAWAY, with no RST; the
		// process table has judged the rest.
		switch {
		case r.backendSPDY(s):
		case !cr.ClientSent && r.c.Dialect != nil && cr.ServerSent:
			// Behind a dialect the server's close, once the exit has
			// ended the shell, is the clean end: client-go's executors
			// cannot start a close handshake, and its WebSocket executor
			// drops TCP once it has the status.
		case !cr.ClientSent:
			r.failInput(s, CheckBackendNoClose, endedAt, "the backend received no close frame from the proxy")
		case want.BackendCloseCode != 0 && cr.ClientCode != want.BackendCloseCode:
			r.fail(s, CheckBackendCloseCode, "the proxy closed the backend with code %d, want %d", cr.ClientCode, want.BackendCloseCode)
		}
		if cr.TCP == fakeapiserver.TCPReset && !r.legFaulted(scenarios.BackendLeg) {
			// A close with unread data in the receive buffer is a RST, which
			// can make the server's kernel drop what it had not read yet:
			// the exit and the close frame themselves, at times.
			after := ""
			if cr.ClientSent {
				after = " after its close frame"
			}
			r.fail(s, CheckBackendReset, "the proxy reset the backend connection%s (unread data in its receive buffer: it must read the backend until its TCP close)", after)
		}
	}

	// 3. Framing: the API server (wsstream, golang.org/x/net/websocket)
	// reads every frame as a message, so a stdin message cut into
	// continuation frames reaches the process garbled (each continuation's
	// first byte taken as a channel).
	for _, e := range s.sess.Recorder().Snapshot().ProtocolErrors {
		if e == fakeapiserver.ErrFragmented {
			r.fail(s, CheckFragmented, "the proxy fragmented a message to the backend (continuation frames): a real API server reads each frame as a message of its own, so the input is garbled; write each message as one frame")
			break
		}
	}

	// 3. What the client was told (by a client that can tell).
	if (want.ClientCloseCode != 0 || want.ClientClosed) && !r.clientTells() {
		if s.idx == 0 {
			r.note(s, "what the client was told is not checked: %s shows no close frames", r.c.Client)
		}
	} else if want.ClientCloseCode != 0 || want.ClientClosed {
		cctx, cancel := context.WithTimeout(ctx, grace)
		select {
		case <-s.client.Done():
			code := clientCloseCode(s.client)
			switch {
			case r.c.SPDY():
				// No close codes over SPDY: the proxy must end the
				// client's session (its streams, GOAWAY, TCP), not
				// reset it.
				if err := s.client.End().Err; errors.Is(err, syscall.ECONNRESET) {
					r.fail(s, CheckClientNoClose, "the proxy reset the client's SPDY connection instead of ending its streams and the connection (%v)", err)
				}
			case want.ClientCloseCode != 0 && code != want.ClientCloseCode:
				r.fail(s, CheckClientCloseCode, "the client got close code %d from the proxy, want %d (the backend sent %d)", code, want.ClientCloseCode, cr.ServerCode)
			case want.ClientClosed && code < 0:
				r.fail(s, CheckClientNoClose, "the proxy ended the client connection without a close frame (%v)", s.client.End().Err)
			}
		case <-cctx.Done():
			r.fail(s, CheckClientOpen, "the proxy did not close the client connection within %s after the ending", grace)
		}
		cancel()
	}
	if want.ExitCode != nil && r.c.Dialect != nil {
		if s.idx == 0 {
			r.note(s, "the exit code is not checked: dialect %s carries no exit status", r.c.Dialect.Name)
		}
	} else if want.ExitCode != nil {
		r.checkExit(ctx, s, *want.ExitCode)
	}
	return reap, reaped
}

// clientTells reports whether the case's client shows the close frame
// it got: the emulator and the clients whose spec says so.
func (r *caseRun) clientTells() bool {
	return r.c.Client == scenarios.ClientEmulator || scenarios.Specs[r.c.Client].CloseFrames
}

// clientCloseCode is the close code the client got: the WebSocket's, or
// where there is none, its dialect transport's (SockJS's c[code,reason]).
func clientCloseCode(c execclient.Session) int {
	code := c.End().ServerCloseCode
	if dc, ok := c.(interface{ DialectClose() (int, string, bool) }); ok && code < 0 {
		if dcode, _, got := dc.DialectClose(); got {
			return dcode
		}
	}
	return code
}

// backendSPDY reports whether s's backend session is SPDY: the case's
// transport for a pass-through case, the executor's choice behind a
// dialect.
func (r *caseRun) backendSPDY(s *sessionRun) bool {
	if r.c.Dialect == nil {
		return r.c.SPDY()
	}
	return s.sess.Recorder().Transport() == execproto.TransportSPDY
}

// checkExit checks the status relayed on the error channel.
func (r *caseRun) checkExit(ctx context.Context, s *sessionRun, want int) {
	sctx, cancel := context.WithTimeout(ctx, r.opts.Grace)
	defer cancel()
	st, ok, err := s.client.Status(sctx)
	switch {
	case err != nil:
		r.fail(s, CheckStatus, "no status on the error channel: %v", err)
	case !r.statusJSON():
		// Before v4 the server writes only failures, as text.
		if want != 0 && (!ok || !strings.Contains(st.Message, fmt.Sprintf("exit code %d", want))) {
			r.fail(s, CheckStatus, "the client got no failure text with exit code %d on the error channel (got %q)", want, st.Message)
		}
	case !ok:
		r.fail(s, CheckStatus, "the client got no status on the error channel, want exit code %d", want)
	default:
		code, known := st.ExitCode()
		if s.idx == 0 {
			r.res.Client.ExitCode = &code
		}
		if !known || code != want {
			r.fail(s, CheckStatus, "the client got status %+v, want exit code %d", st, want)
		}
	}
}

// statusJSON reports whether the case's error stream carries a JSON
// status: v4 and later over WebSocket, v4 over SPDY.
func (r *caseRun) statusJSON() bool {
	if r.c.SPDY() {
		return execproto.SPDYStatusJSON(r.c.Protocol)
	}
	return r.c.Protocol.StatusJSON()
}

// failInput is fail with what the backend received after the ending as
// the finding's evidence, and in words after the message: where an exit
// went missing, it shows.
func (r *caseRun) failInput(s *sessionRun, check string, endedAt time.Time, format string, args ...any) {
	in := r.inputAfter(s, endedAt)
	r.failWith(s, Finding{Check: check, Input: in}, "%s%s", fmt.Sprintf(format, args...), inputWords(in))
}

// inputWords says what the backend received after the ending.
func inputWords(in *BackendInput) string {
	var parts []string
	if in.Stdin != "" {
		parts = append(parts, fmt.Sprintf("stdin %q", tail(in.Stdin, maxEvidencePayload)))
	}
	for _, f := range in.Other {
		parts = append(parts, fmt.Sprintf("%s frame on channel %d %q", f.Opcode, f.Channel, tail(f.Payload, maxEvidencePayload)))
	}
	if in.StdinClosed {
		parts = append(parts, "stdin half-closed")
	}
	if in.CloseCode != 0 {
		parts = append(parts, fmt.Sprintf("close %d", in.CloseCode))
	}
	if in.GoAway {
		parts = append(parts, "GOAWAY")
	}
	if len(parts) == 0 {
		parts = append(parts, "nothing")
	}
	return fmt.Sprintf("; after the ending the backend received: %s; TCP: %s", strings.Join(parts, ", "), tcpWords(in.TCP))
}

// The bounds of inputEvidence: the last frames, the end of each payload.
const (
	maxEvidenceFrames  = 6
	maxEvidencePayload = 48
)

// tail keeps the last n bytes of s, marking the cut.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func tcpWords(s string) string {
	switch s {
	case fakeapiserver.TCPOpen:
		return "still open"
	case fakeapiserver.TCPEOF:
		return "closed by the proxy without a close handshake (FIN)"
	case fakeapiserver.TCPReset:
		return "reset by the proxy"
	case fakeapiserver.TCPAfterClose:
		return "closed after the close handshake"
	}
	return s
}

// grace is how long the outcome may take: the grace period, plus the
// target's keepalive bound for cases that only a keepalive can end.
func (r *caseRun) grace() time.Duration {
	if r.c.Want.KeepaliveBound {
		return r.opts.KeepaliveBound + r.opts.Grace
	}
	return r.opts.Grace
}

func (r *caseRun) stopTarget() {
	r.stopOnce.Do(func() {
		if r.stop != nil {
			r.stop()
		}
	})
}

// cleanup releases the case's clients, target and backend (which kills
// every process the case started).
func (r *caseRun) cleanup() {
	for _, s := range r.sessions {
		if s.client == nil {
			continue
		}
		if rc, ok := s.client.(clients.Session); ok {
			rc.Release() // a real client's process or tab: gone before the target stops
			continue
		}
		select {
		case <-s.client.Done():
		default:
			_ = s.client.Reset()
		}
	}
	if r.trace != nil {
		rec := r.trace.Snapshot()
		r.leg(scenarios.ClientLeg).Record = &rec
	}
	if len(r.sessions) > 0 && r.sessions[0].sess != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if info, err := r.sessions[0].sess.Info(ctx); err == nil {
			rec := info.Record
			info.Record = fakeapiserver.Record{}
			r.res.Backend = &info
			r.leg(scenarios.BackendLeg).Record = &rec
		}
		cancel()
	}
	r.stopTarget()
	out := r.hooks.out.String()
	r.res.TargetPanic = targetPanic(out)
	if out != "" && (len(r.res.Failures) > 0 || r.c.Level == scenarios.INFO) {
		r.res.TargetOutput = out
	}
	r.closeLegs()
	if r.server != nil {
		if err := r.server.Close(); err != nil {
			r.res.Failures = append(r.res.Failures, "suite: "+err.Error())
			r.res.Findings = append(r.res.Findings, Finding{Check: CheckSuite, Session: -1, Message: "suite: " + err.Error()})
		}
	}
}

// leg is the result's view of leg l, made on first use.
func (r *caseRun) leg(l scenarios.Leg) *LegView {
	if r.res.Legs == nil {
		r.res.Legs = map[scenarios.Leg]*LegView{}
	}
	if r.res.Legs[l] == nil {
		r.res.Legs[l] = &LegView{}
	}
	return r.res.Legs[l]
}

// legFaulted reports whether the case puts a fault on leg (then how its
// TCP connection ends is the fault's doing, not the proxy's).
// legLatency is the latency the case's faults add on leg, both ways.
func (r *caseRun) legLatency(leg scenarios.Leg) time.Duration {
	var d time.Duration
	for _, f := range r.c.Scenario.Faults {
		if f.Leg != leg || f.Toxic != "latency" {
			continue
		}
		if ms, ok := f.Attributes["latency"].(int); ok {
			d += time.Duration(ms) * time.Millisecond
		}
	}
	return d
}

func (r *caseRun) legFaulted(leg scenarios.Leg) bool {
	for _, f := range r.c.Scenario.Faults {
		if f.Leg == leg {
			return true
		}
	}
	return false
}
