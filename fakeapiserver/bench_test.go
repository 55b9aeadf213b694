package fakeapiserver_test

// Benchmarks for the numbers the project reports:
//
//	go test -run '^$' -bench SessionSetup -benchtime 200x ./fakeapiserver/
//	go test -run '^$' -bench RecorderFlood -benchtime 3x ./fakeapiserver/
//	go test -run '^$' -bench SessionRetention -benchtime 10000x ./fakeapiserver/
//	go test -run '^$' -bench FeedParser ./fakeapiserver/   (fuzz_internal_test.go)

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
)

// expectAny waits until any of substrs appears in c's output.
func expectAny(ctx context.Context, c *execclient.Conn, substrs ...string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(substrs))
	for _, s := range substrs {
		go func() { errs <- c.Expect(ctx, s) }()
	}
	var all []error
	for range substrs {
		err := <-errs
		if err == nil {
			return nil
		}
		all = append(all, err)
		if !errors.Is(err, context.Canceled) {
			cancel()
		}
	}
	return errors.Join(all...)
}

// setupOnce opens one tty `sh -i` session on v5, measures the time from
// the start of the dial to the shell's first prompt, then ends the session
// with `exit` and waits until the process table shows none of its
// processes. Only the first part is timed when b is non-nil.
func setupOnce(tb testing.TB, b *testing.B, srv *fakeapiserver.Server) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := execclient.Options{
		Protocols: []execproto.Protocol{execproto.ProtocolV5},
		Header:    auth(srv),
		TLSConfig: srv.ClientTLSConfig(),
	}
	start := time.Now()
	c, err := execclient.Dial(ctx, execURL(srv, true, "sh", "-i"), opts)
	require.NoError(tb, err)
	err = expectAny(ctx, c, "# ", "$ ")
	took := time.Since(start)
	if b != nil {
		b.StopTimer()
		defer b.StartTimer()
	}
	if err != nil {
		_ = c.Reset()
		require.NoError(tb, err)
	}
	sess, err := srv.WaitSession(ctx, c.Response().Header.Get(fakeapiserver.SessionHeader))
	require.NoError(tb, err)
	require.NoError(tb, c.Type("exit\r"))
	select {
	case <-c.Done():
	case <-ctx.Done():
		_ = c.Reset()
		tb.Fatal("the session did not end after exit")
	}
	_, live, err := sess.WaitGone(ctx)
	require.NoError(tb, err, "left running: %v", live)
	select {
	case <-sess.Finished():
	case <-ctx.Done():
		tb.Fatal("the server did not finish the session")
	}
	return took
}

// percentile is the nearest-rank percentile of sorted durations, in ms.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// BenchmarkSessionSetup: time from the start of the WebSocket dial (TCP,
// TLS, upgrade) to the first prompt of a tty `sh -i` on v5, sessions one
// after the other. ns/op counts the same span; p50-ms and p99-ms are its
// percentiles over the b.N sessions.
func BenchmarkSessionSetup(b *testing.B) {
	srv := startServer(b, fakeapiserver.Config{})
	var took []time.Duration
	for b.Loop() {
		took = append(took, setupOnce(b, b, srv))
	}
	slices.Sort(took)
	b.ReportMetric(percentile(took, 0.50), "p50-ms")
	b.ReportMetric(percentile(took, 0.99), "p99-ms")
	b.ReportMetric(float64(len(took)), "sessions")
}

// TestSessionSetupEndsClean runs a few sessions through the benchmark's
// path, so that it stays correct (and leaves nothing running) in plain
// test runs.
func TestSessionSetupEndsClean(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	for range 3 {
		d := setupOnce(t, nil, srv)
		require.Positive(t, d)
	}
	for _, s := range srv.Sessions() {
		info, err := s.Info(context.Background())
		require.NoError(t, err)
		require.True(t, info.Exited, "session %s", s.ID)
		require.Empty(t, info.Live)
	}
}

// heapPeak samples runtime/metrics on a ticker until stopped and keeps the
// peaks: heap objects (live and not yet swept) and the live heap marked by
// the last GC. The ticker only measures; nothing waits on it.
type heapPeak struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	objs uint64
	live uint64
}

func startHeapPeak(every time.Duration) *heapPeak {
	h := &heapPeak{stop: make(chan struct{}), done: make(chan struct{})}
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	read := func() {
		metrics.Read(samples)
		h.mu.Lock()
		h.objs = max(h.objs, samples[0].Value.Uint64())
		h.live = max(h.live, samples[1].Value.Uint64())
		h.mu.Unlock()
	}
	read()
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				read()
			case <-h.stop:
				read()
				return
			}
		}
	}()
	return h
}

func (h *heapPeak) end() (objs, live uint64) {
	close(h.stop)
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.objs, h.live
}

// floodClient runs one flood session and returns the stdout bytes read.
type floodClient func(ctx context.Context, tb testing.TB, srv *fakeapiserver.Server, url string) (stdout int64, sessionID string)

// floodExecclient reads with the project's client emulator, which decodes
// and keeps every message (the first execclient.MaxFrames whole).
func floodExecclient(ctx context.Context, tb testing.TB, srv *fakeapiserver.Server, url string) (int64, string) {
	c, err := execclient.Dial(ctx, url, execclient.Options{
		Protocols: []execproto.Protocol{execproto.ProtocolV4},
		Header:    auth(srv),
		TLSConfig: srv.ClientTLSConfig(),
	})
	require.NoError(tb, err)
	st, ok, err := c.Status(ctx)
	require.NoError(tb, err)
	require.True(tb, ok)
	require.Equal(tb, execproto.StatusSuccess, st.Status)
	select {
	case <-c.Done():
	case <-ctx.Done():
		_ = c.Reset()
		tb.Fatal("the session did not end")
	}
	return c.OutputTotal(), c.Response().Header.Get(fakeapiserver.SessionHeader)
}

// floodDiscard reads with a bare gorilla client that streams every message
// to io.Discard, so that the heap measured is the server's and the
// recorder's.
func floodDiscard(ctx context.Context, tb testing.TB, srv *fakeapiserver.Server, url string) (int64, string) {
	d := websocket.Dialer{TLSClientConfig: srv.ClientTLSConfig(), Subprotocols: []string{string(execproto.ProtocolV4)}}
	ws, resp, err := d.DialContext(ctx, url, auth(srv))
	require.NoError(tb, err)
	defer ws.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = ws.SetReadDeadline(dl)
	}
	var stdout int64
	var status []byte
	ch := make([]byte, 1)
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			require.True(tb, websocket.IsCloseError(err, websocket.CloseNormalClosure), "%v", err)
			break
		}
		if _, err := io.ReadFull(r, ch); err != nil {
			continue // the empty opening message has its channel byte; nothing else is empty
		}
		switch ch[0] {
		case execproto.StreamStdout:
			n, err := io.Copy(io.Discard, r)
			require.NoError(tb, err)
			stdout += n
		case execproto.StreamError:
			status, err = io.ReadAll(r)
			require.NoError(tb, err)
		}
	}
	require.JSONEq(tb, `{"metadata":{},"status":"Success"}`, string(status))
	return stdout, resp.Header.Get(fakeapiserver.SessionHeader)
}

// BenchmarkRecorderFlood: a non-tty v4 session whose command writes 50 MiB
// to stdout, read whole by the client, with the recorder on every frame.
// MB/s is over the whole session (dial to close). peak-heap-MB is the
// highest "/memory/classes/heap/objects:bytes" and peak-live-MB the
// highest "/gc/heap/live:bytes", sampled every millisecond: client and
// server share the process, hence the two clients (execclient keeps the
// first 1000 messages whole; discard keeps nothing). frames-recorded,
// -dropped and -total are the recorder's counts for the last session.
func BenchmarkRecorderFlood(b *testing.B) {
	const size = 50 << 20
	clients := []struct {
		name string
		run  floodClient
	}{{"execclient", floodExecclient}, {"discard", floodDiscard}}
	for _, insecure := range []bool{true, false} {
		for _, cl := range clients {
			name := "tls/" + cl.name
			if insecure {
				name = "plain/" + cl.name
			}
			b.Run(name, func(b *testing.B) {
				srv := startServer(b, fakeapiserver.Config{Insecure: insecure})
				url := execURL(srv, false, "sh", "-c", fmt.Sprintf("head -c %d /dev/zero", size))
				runtime.GC()
				var peakObjs, peakLive uint64
				var rec fakeapiserver.Record
				b.SetBytes(size)
				b.ReportAllocs()
				for b.Loop() {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					h := startHeapPeak(time.Millisecond)
					got, id := cl.run(ctx, b, srv, url)
					objs, live := h.end()
					peakObjs, peakLive = max(peakObjs, objs), max(peakLive, live)
					b.StopTimer()
					require.EqualValues(b, size, got)
					sess, err := srv.WaitSession(ctx, id)
					require.NoError(b, err)
					select {
					case <-sess.Finished():
					case <-ctx.Done():
						b.Fatal("the server did not finish the session")
					}
					rec = sess.Recorder().Snapshot()
					cancel()
					runtime.GC() // each session starts from the same heap
					b.StartTimer()
				}
				b.ReportMetric(float64(peakObjs)/(1<<20), "peak-heap-MB")
				b.ReportMetric(float64(peakLive)/(1<<20), "peak-live-MB")
				b.ReportMetric(float64(len(rec.Frames)), "frames-recorded")
				b.ReportMetric(float64(rec.FramesDropped), "frames-dropped")
				b.ReportMetric(float64(rec.Stats[fakeapiserver.FromServer].Frames+rec.Stats[fakeapiserver.FromClient].Frames), "frames-total")
			})
		}
	}
}

// shortSession runs one non-tty v4 session of `sh -c 'echo hello'` with a
// bare gorilla client on a plain-HTTP server and reads until the server's
// close.
func shortSession(ctx context.Context, tb testing.TB, srv *fakeapiserver.Server, url string) {
	d := websocket.Dialer{Subprotocols: []string{string(execproto.ProtocolV4)}}
	ws, _, err := d.DialContext(ctx, url, auth(srv))
	require.NoError(tb, err)
	defer ws.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = ws.SetReadDeadline(dl)
	}
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			require.True(tb, websocket.IsCloseError(err, websocket.CloseNormalClosure), "%v", err)
			return
		}
	}
}

// listSessions GETs the control API's list and returns the body's size.
func listSessions(tb testing.TB, srv *fakeapiserver.Server, query string) (int, time.Duration) {
	req, err := http.NewRequest(http.MethodGet, srv.URL().String()+"/execconform/v1/sessions"+query, nil)
	require.NoError(tb, err)
	req.Header = auth(srv)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	require.NoError(tb, err)
	took := time.Since(start)
	require.Equal(tb, http.StatusOK, resp.StatusCode)
	return int(n), took
}

// BenchmarkSessionRetention: b.N short sessions (`sh -c 'echo hello'`,
// v4, plain HTTP, two at a time) through one server, then what the server
// keeps of them: kept-sessions, heap-kept-MB (the live heap after a GC,
// less the live heap before the first session), list-KB and list-ms (one
// GET /execconform/v1/sessions with nothing in its query). Run it as
//
//	go test -run '^$' -bench SessionRetention -benchtime 10000x ./fakeapiserver/
func BenchmarkSessionRetention(b *testing.B) {
	srv := startServer(b, fakeapiserver.Config{Insecure: true})
	url := execURL(srv, false, "sh", "-c", "echo hello")
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const workers = 2
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				shortSession(ctx, b, srv, url)
				cancel()
			}
		}()
	}
	for b.Loop() {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	all, err := srv.WaitSessions(ctx, b.N)
	require.NoError(b, err)
	for _, s := range all {
		select {
		case <-s.Finished():
		case <-ctx.Done():
			b.Fatal("a session did not finish")
		}
	}
	size, took := listSessions(b, srv, "")
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(len(srv.Sessions())), "kept-sessions")
	b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/(1<<20), "heap-kept-MB")
	b.ReportMetric(float64(size)/1024, "list-KB")
	b.ReportMetric(float64(took)/float64(time.Millisecond), "list-ms")
}

// spdySetupOnce is setupOnce over SPDY (v4, client-go's order of streams):
// from the start of the dial (TCP, TLS, upgrade, the streams) to the first
// prompt of a tty `sh -i` on the stdout stream; then exit, and the wait
// until the process table shows none of the session's processes.
func spdySetupOnce(tb testing.TB, b *testing.B, srv *fakeapiserver.Server) time.Duration {
	start := time.Now()
	c := spdyDial(tb, srv, execproto.SPDYProtocolV4, true, "sh", "-i")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c.mu.Lock()
		out := c.out.String()
		c.mu.Unlock()
		if strings.Contains(out, "# ") || strings.Contains(out, "$ ") {
			break
		}
		select {
		case <-c.got:
		case <-ctx.Done():
			tb.Fatalf("no prompt over SPDY; got %q", out)
		}
	}
	took := time.Since(start)
	if b != nil {
		b.StopTimer()
		defer b.StartTimer()
	}
	sess := spdySession(tb, srv, c)
	c.typ(tb, "exit\r")
	_ = c.status(tb)
	_, live, err := sess.WaitGone(ctx)
	require.NoError(tb, err, "left running: %v", live)
	select {
	case <-sess.Finished():
	case <-ctx.Done():
		tb.Fatal("the server did not finish the session")
	}
	_ = c.conn.Close()
	_ = c.raw.Close()
	return took
}

// BenchmarkSessionSetupTransport compares the set-up time of a tty `sh -i`
// session over WebSocket (v5) and over SPDY (v4), over TLS on loopback,
// sessions one after the other:
//
//	go test -run '^$' -bench SessionSetupTransport -benchtime 200x ./fakeapiserver/
func BenchmarkSessionSetupTransport(b *testing.B) {
	for _, tr := range execproto.Transports {
		b.Run(string(tr), func(b *testing.B) {
			srv := startServer(b, fakeapiserver.Config{})
			once := setupOnce
			if tr == execproto.TransportSPDY {
				once = spdySetupOnce
			}
			var took []time.Duration
			for b.Loop() {
				took = append(took, once(b, b, srv))
			}
			slices.Sort(took)
			b.ReportMetric(percentile(took, 0.50), "p50-ms")
			b.ReportMetric(percentile(took, 0.99), "p99-ms")
			b.ReportMetric(float64(len(took)), "sessions")
		})
	}
}

// TestSPDYSessionSetupEndsClean runs a few sessions through the SPDY
// benchmark's path, so that it stays correct in plain test runs.
func TestSPDYSessionSetupEndsClean(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{})
	for range 3 {
		spdySetupOnce(t, nil, srv)
	}
}
