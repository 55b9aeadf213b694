package fakeapiserver_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/execproto"
	"github.com/execconform/execconform/fakeapiserver"
)

// endSession runs command (no tty, v4) in pod to its end and returns its
// session once the server has finished it.
func endSession(t *testing.T, srv *fakeapiserver.Server, pod string, command ...string) *fakeapiserver.Session {
	t.Helper()
	ctx := deadline(t, 10*time.Second)
	u := strings.Replace(execURL(srv, false, command...), "/pods/fakepod/", "/pods/"+pod+"/", 1)
	d := websocket.Dialer{Subprotocols: []string{string(execproto.ProtocolV4)}, TLSClientConfig: srv.ClientTLSConfig()}
	ws, resp, err := d.DialContext(ctx, u, auth(srv))
	require.NoError(t, err)
	defer ws.Close()
	sess, err := srv.WaitSession(ctx, resp.Header.Get(fakeapiserver.SessionHeader))
	require.NoError(t, err)
	dl, _ := ctx.Deadline()
	_ = ws.SetReadDeadline(dl)
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			require.True(t, websocket.IsCloseError(err, websocket.CloseNormalClosure), "%v", err)
			break
		}
	}
	select {
	case <-sess.Finished():
	case <-ctx.Done():
		t.Fatal("the server did not finish the session")
	}
	return sess
}

func ids(ss []*fakeapiserver.Session) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

// control GETs path on the control API and decodes the body into v (if not nil).
func control(t *testing.T, srv *fakeapiserver.Server, path string, v any) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL().String()+path, nil)
	require.NoError(t, err)
	req.Header = auth(srv)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: srv.ClientTLSConfig()}}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if v != nil && resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(b, v), "%s", b)
	}
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

// TestRetentionKeepsLiveAndRecentSessions: past KeepEnded the sessions
// that ended first are dropped (in a batch, down to 3/4 of the bound);
// a live session never is; WaitSessions still counts every session the
// server registered.
func TestRetentionKeepsLiveAndRecentSessions(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{Insecure: true, KeepEnded: 4, KeepEndedFor: -1})
	live := dial(t, srv, execproto.ProtocolV5, true, "sh", "-i")
	liveSess := session(t, srv, live)
	var ended []*fakeapiserver.Session
	for range 10 {
		ended = append(ended, endSession(t, srv, "fakepod", "sh", "-c", "echo hello"))
	}
	// Ended 5 of 4: down to 3; 7: down to 3; 9: down to 3; 10th: 4.
	want := append([]*fakeapiserver.Session{liveSess}, ended[6:]...)
	assert.Equal(t, ids(want), ids(srv.Sessions()))
	total, dropped := srv.Kept()
	assert.EqualValues(t, 11, total)
	assert.EqualValues(t, 6, dropped)
	_, ok := srv.Session(ended[0].ID)
	assert.False(t, ok, "the first ended session is dropped")
	_, ok = srv.Session(liveSess.ID)
	assert.True(t, ok, "the live session is kept")

	all, err := srv.WaitSessions(deadline(t, 5*time.Second), 11)
	require.NoError(t, err, "WaitSessions counts every session registered, not the kept ones")
	assert.Len(t, all, 5)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = srv.WaitSessions(short, 12)
	assert.Error(t, err, "there is no 12th session")
	got, err := srv.WaitFor(deadline(t, 5*time.Second), func(s *fakeapiserver.Session) bool { return s.TTY })
	require.NoError(t, err)
	assert.Equal(t, liveSess.ID, got.ID)

	var list []fakeapiserver.SessionInfo
	resp := control(t, srv, "/execconform/v1/sessions", &list)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "11", resp.Header.Get(fakeapiserver.TotalHeader))
	assert.Equal(t, "6", resp.Header.Get(fakeapiserver.DroppedHeader))
	assert.Empty(t, resp.Header.Get(fakeapiserver.NextHeader))
	require.Len(t, list, 5)
	assert.Equal(t, liveSess.ID, list[0].ID)
	assert.EqualValues(t, 1, list[0].Seq)
	assert.NotEmpty(t, list[0].Live, "the live shell, from the list's one scan")
	assert.Equal(t, liveSess.PID(), list[0].Live[0].PID)
	assert.Equal(t, ended[9].ID, list[4].ID)
	assert.EqualValues(t, 11, list[4].Seq)
	assert.True(t, list[4].Exited)

	resp = control(t, srv, "/execconform/v1/sessions/"+ended[0].ID, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	body, _ := io.ReadAll(resp.Body)
	assert.Contains(t, string(body), "at most 4 ended sessions", "a dropped session's 404 says what the server keeps")
	resp = control(t, srv, "/execconform/v1/sessions/"+ended[9].ID, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// TestRetentionKeepsAHeldPod: the sessions of a held pod are kept past
// the bound until the hold is released (a case holds its pod while it
// judges them).
func TestRetentionKeepsAHeldPod(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{Insecure: true, KeepEnded: 1, KeepEndedFor: -1})
	release := srv.Hold("held")
	var held []*fakeapiserver.Session
	for range 3 {
		held = append(held, endSession(t, srv, "held", "sh", "-c", "echo hello"))
		endSession(t, srv, "other", "sh", "-c", "echo hello")
	}
	kept := ids(srv.Sessions())
	assert.Len(t, kept, 4, "the held pod's 3 and the other pod's last: %v", kept)
	for _, s := range held {
		assert.Contains(t, kept, s.ID)
	}
	release()
	release() // twice is once
	last := endSession(t, srv, "other", "sh", "-c", "echo hello")
	assert.Equal(t, []string{last.ID}, ids(srv.Sessions()), "released, the held pod's sessions go")
}

// TestRetentionKeepsASessionWithALiveChild: a session whose shell exited
// but left a background child is live: it stays past the bound until the
// child is gone.
func TestRetentionKeepsASessionWithALiveChild(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{Insecure: true, KeepEnded: 1, KeepEndedFor: -1})
	bg := endSession(t, srv, "fakepod", "sh", "-c", "sleep 60 >/dev/null 2>&1 &")
	for range 3 {
		endSession(t, srv, "fakepod", "sh", "-c", "echo hello")
	}
	_, ok := srv.Session(bg.ID)
	require.True(t, ok, "the session with a live child is kept")
	live, err := bg.Live(deadline(t, 5*time.Second))
	require.NoError(t, err)
	require.NotEmpty(t, live, "its sleep is alive")
	require.NoError(t, bg.Kill(deadline(t, 5*time.Second)))
	last := endSession(t, srv, "fakepod", "sh", "-c", "echo hello")
	assert.Equal(t, []string{last.ID}, ids(srv.Sessions()), "its child gone, it is dropped with the others")
}

// TestSessionListPages: ?limit= cuts the list and NextHeader says the
// ?after= of the next page; bad values are refused.
func TestSessionListPages(t *testing.T) {
	srv := startServer(t, fakeapiserver.Config{Insecure: true})
	var want []string
	for range 5 {
		want = append(want, endSession(t, srv, "fakepod", "sh", "-c", "echo hello").ID)
	}
	var got []string
	after := "0"
	pages := 0
	for after != "" {
		var page []fakeapiserver.SessionInfo
		resp := control(t, srv, "/execconform/v1/sessions?limit=2&after="+after, &page)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "5", resp.Header.Get(fakeapiserver.TotalHeader))
		assert.LessOrEqual(t, len(page), 2)
		for _, s := range page {
			got = append(got, s.ID)
		}
		pages++
		after = resp.Header.Get(fakeapiserver.NextHeader)
		if after != "" {
			assert.Equal(t, strconv.FormatInt(page[len(page)-1].Seq, 10), after)
		}
	}
	assert.Equal(t, want, got)
	assert.Equal(t, 3, pages)

	resp := control(t, srv, "/execconform/v1/sessions?after=5", nil)
	body, _ := io.ReadAll(resp.Body)
	assert.JSONEq(t, "[]", string(body), "an empty page is an empty list")
	for _, q := range []string{"limit=x", "after=-1", "limit=1.5"} {
		resp := control(t, srv, "/execconform/v1/sessions?"+q, nil)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}
}
