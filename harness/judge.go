package harness

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/scenarios"
)

// end performs the case's ending and returns when it happened.
func (r *caseRun) end(ctx context.Context) (time.Time, error) {
	e := r.c.Scenario.End
	at := time.Now()
	var err error
	switch e.Kind {
	case scenarios.EndClientClose:
		cctx, cancel := context.WithTimeout(ctx, r.opts.Grace)
		res, cerr := r.client.Close(cctx, e.Code, "")
		cancel()
		switch {
		case cerr != nil:
			r.note("the proxy did not complete the client's close handshake: %v", cerr)
		case !res.Replied:
			r.note("the proxy did not answer the client's close frame")
		}
	case scenarios.EndClientAbort:
		err = r.client.AbortTCP()
	case scenarios.EndClientReset:
		err = r.client.Reset()
	case scenarios.EndTypeExit:
		err = r.client.Type(r.enter("exit\r"))
	case scenarios.EndBackendKill:
		kctx, cancel := context.WithTimeout(ctx, r.opts.Grace)
		err = r.sess.Kill(kctx)
		cancel()
	default:
		err = fmt.Errorf("unknown ending %q", e.Kind)
	}
	if err != nil {
		return at, fmt.Errorf("ending %s: %w", e.Kind, err)
	}
	return at, nil
}

// judge checks the outcome against the case's expectations, collecting
// every failure with its evidence.
func (r *caseRun) judge(ctx context.Context, endedAt time.Time) {
	want := r.c.Want
	info := r.c.Level == scenarios.INFO

	// 1. Processes, from the process table.
	gctx, cancel := context.WithTimeout(ctx, r.opts.Grace)
	_, live, err := r.sess.WaitGone(gctx)
	cancel()
	if err == nil {
		r.res.TimeToReap = time.Since(endedAt)
	} else {
		for _, p := range live {
			r.res.Live = append(r.res.Live, p.String())
		}
		if len(live) == 0 {
			r.fail("could not read the process table: %v", err)
		} else if len(live) > want.LiveProcesses || info {
			msg := fmt.Sprintf("%d of the session's processes still alive %s after the ending: %s", len(live), r.opts.Grace, strings.Join(r.res.Live, "; "))
			if info {
				r.note("%s", msg)
			} else {
				r.fail("%s%s", msg, r.inputEvidence(endedAt))
			}
		}
	}

	// 2. The backend connection and its close handshake.
	bctx, cancel := context.WithTimeout(ctx, r.opts.Grace)
	select {
	case <-r.sess.Done():
	case <-bctx.Done():
		if want.BackendCloseHandshake {
			r.fail("the proxy kept the backend connection open %s after the ending", r.opts.Grace)
		}
	}
	cancel()
	cr := r.sess.Recorder().Close()
	if want.BackendCloseHandshake {
		switch {
		case !cr.ClientSent:
			r.fail("the backend received no close frame from the proxy (TCP: %s)", tcpWords(cr.TCP))
		case want.BackendCloseCode != 0 && cr.ClientCode != want.BackendCloseCode:
			r.fail("the proxy closed the backend with code %d, want %d", cr.ClientCode, want.BackendCloseCode)
		}
	}

	// 3. What the client was told.
	if want.ClientCloseCode != 0 {
		cctx, cancel := context.WithTimeout(ctx, r.opts.Grace)
		select {
		case <-r.client.Done():
			if code := r.client.End().ServerCloseCode; code != want.ClientCloseCode {
				r.fail("the client got close code %d from the proxy, want %d (the backend sent %d)", code, want.ClientCloseCode, cr.ServerCode)
			}
		case <-cctx.Done():
			r.fail("the proxy did not close the client connection within %s after the backend ended", r.opts.Grace)
		}
		cancel()
	}
	if want.ExitCode != nil {
		r.checkExit(ctx, *want.ExitCode)
	}
	end := r.client.End()
	r.res.Client.CloseCode, r.res.Client.CloseReason = end.ServerCloseCode, end.ServerCloseReason
	if end.Err != nil {
		r.res.Client.EndErr = end.Err.Error()
	}
}

// checkExit checks the status relayed on the error channel.
func (r *caseRun) checkExit(ctx context.Context, want int) {
	sctx, cancel := context.WithTimeout(ctx, r.opts.Grace)
	defer cancel()
	st, ok, err := r.client.Status(sctx)
	switch {
	case err != nil:
		r.fail("no status on the error channel: %v", err)
	case !r.c.Protocol.StatusJSON():
		// Before v4 the server writes only failures, as text.
		if want != 0 && (!ok || !strings.Contains(st.Message, fmt.Sprintf("exit code %d", want))) {
			r.fail("the client got no failure text with exit code %d on the error channel (got %q)", want, st.Message)
		}
	case !ok:
		r.fail("the client got no status on the error channel, want exit code %d", want)
	default:
		code, known := st.ExitCode()
		r.res.Client.ExitCode = &code
		if !known || code != want {
			r.fail("the client got status %+v, want exit code %d", st, want)
		}
	}
}

// inputEvidence describes what the backend received from the proxy after
// the ending: where an exit went missing, it shows.
func (r *caseRun) inputEvidence(endedAt time.Time) string {
	rec := r.sess.Recorder().Snapshot()
	since := endedAt.Sub(r.sess.Started)
	var parts []string
	for _, f := range rec.Frames {
		if f.Dir != fakeapiserver.FromClient || f.At < since {
			continue
		}
		switch {
		case f.Opcode == "close":
			parts = append(parts, fmt.Sprintf("close %d", f.CloseCode))
		case f.Channel == int(execproto.StreamStdin):
			parts = append(parts, fmt.Sprintf("stdin %q", f.Payload))
		case f.Channel >= 0:
			parts = append(parts, fmt.Sprintf("%s frame on channel %d %q", f.Opcode, f.Channel, f.Payload))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "nothing")
	}
	return fmt.Sprintf("; after the ending the backend received: %s; TCP: %s", strings.Join(parts, ", "), tcpWords(rec.Close.TCP))
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

// cleanup releases the case's client, target and backend (which kills
// every process the case started).
func (r *caseRun) cleanup() {
	if r.client != nil {
		select {
		case <-r.client.Done():
		default:
			_ = r.client.AbortTCP()
		}
	}
	if r.sess != nil && (len(r.res.Failures) > 0 || r.c.Level == scenarios.INFO) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if info, err := r.sess.Info(ctx); err == nil {
			r.res.Backend = &info
		}
		cancel()
	}
	if r.stop != nil {
		r.stop()
	}
	if r.fake != nil {
		if err := r.fake.Close(); err != nil {
			r.res.Failures = append(r.res.Failures, "suite: "+err.Error())
		}
	}
}
