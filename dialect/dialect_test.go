package dialect

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The wire bytes of the built-in dialects, as the terminals they follow
// write them (Argo CD's TerminalMessage, Dashboard's and KubeSphere's).
func TestWireBytes(t *testing.T) {
	argo, err := Builtin("json-operation")
	require.NoError(t, err)
	c := argo.ClientCodec("")
	mt, p, err := c.Stdin([]byte("ls\r"))
	require.NoError(t, err)
	assert.Equal(t, websocket.TextMessage, mt)
	assert.JSONEq(t, `{"operation":"stdin","data":"ls\r"}`, string(p))
	_, p, err = c.Resize(120, 40)
	require.NoError(t, err)
	assert.JSONEq(t, `{"operation":"resize","rows":40,"cols":120}`, string(p))
	ev, err := c.Decode(websocket.TextMessage, []byte(`{"operation":"stdout","data":"$ ","rows":0,"cols":0}`))
	require.NoError(t, err)
	assert.Equal(t, []Event{{Kind: EventOutput, Data: []byte("$ ")}}, ev)
	ev, _ = c.Decode(websocket.TextMessage, []byte(`{"operation":"toast","data":"bye"}`))
	assert.Equal(t, EventOther, ev[0].Kind)

	dash, err := Builtin("json-op-sockjs")
	require.NoError(t, err)
	c = dash.ClientCodec("abc")
	_, start, err := c.Start()
	require.NoError(t, err)
	require.Len(t, start, 1)
	assert.Equal(t, `["{\"Op\":\"bind\",\"SessionID\":\"abc\"}"]`, string(start[0]))
	_, p, _ = c.Stdin([]byte("x"))
	assert.Equal(t, `["{\"Data\":\"x\",\"Op\":\"stdin\",\"SessionID\":\"abc\"}"]`, string(p))
	ev, err = c.Decode(websocket.TextMessage, []byte(`a["{\"Op\":\"stdout\",\"Data\":\"hi\"}","{\"Op\":\"toast\"}"]`))
	require.NoError(t, err)
	assert.Equal(t, []Event{{Kind: EventOutput, Data: []byte("hi")}, {Kind: EventOther, Data: []byte(`{"Op":"toast"}`)}}, ev)
	ev, err = c.Decode(websocket.TextMessage, []byte(`c[3000,"Go away!"]`))
	require.NoError(t, err)
	assert.Equal(t, []Event{{Kind: EventClose, Code: 3000, Reason: "Go away!"}}, ev)
	_, err = c.Decode(websocket.TextMessage, []byte(`x`))
	assert.Error(t, err)
}

// What a client encodes, a server of the same dialect reads back.
func TestRoundTrip(t *testing.T) {
	for _, d := range All() {
		t.Run(d.Name, func(t *testing.T) {
			c, s := d.ClientCodec("sess-1"), d.ServerCodec()
			unwrap := func(mt int, p []byte) (int, []byte) {
				if d.Transport != SockJS {
					return mt, p
				}
				var msgs []string
				require.NoError(t, jsonUnmarshal(p, &msgs))
				require.Len(t, msgs, 1)
				return websocket.TextMessage, []byte(msgs[0])
			}
			mt, p, err := c.Stdin([]byte("echo \"hi\"\r\x03\x15"))
			require.NoError(t, err)
			in, err := s.Decode(unwrap(mt, p))
			require.NoError(t, err)
			assert.Equal(t, InputStdin, in.Kind)
			assert.Equal(t, "echo \"hi\"\r\x03\x15", string(in.Data))
			mt, p, err = c.Resize(100, 30)
			if d.Resize == nil {
				assert.ErrorIs(t, err, ErrNoResize)
			} else {
				require.NoError(t, err)
				in, err = s.Decode(unwrap(mt, p))
				require.NoError(t, err)
				assert.Equal(t, Input{Kind: InputResize, Rows: 30, Cols: 100, Session: in.Session}, in)
			}
			omt, op := s.Output([]byte("42\r\n"))
			if d.Transport == SockJS {
				op = []byte(`a` + mustJSON([]string{string(op)}))
			}
			ev, err := c.Decode(omt, op)
			require.NoError(t, err)
			assert.Equal(t, []Event{{Kind: EventOutput, Data: []byte("42\r\n")}}, ev)
		})
	}
}

// A URL built for a case reads back to the same Params on the server.
func TestURLRoundTrip(t *testing.T) {
	base, _ := url.Parse("http://127.0.0.1:8080/prefix/")
	p := Params{Namespace: "ns 1", Pod: "p/o", Container: "c-3", Command: []string{"sh", "-i"}, TTY: false, Session: "s"}
	for _, d := range All() {
		t.Run(d.Name, func(t *testing.T) {
			tmpl, raw := d.Path, d.ConnectURL(base, p)
			if d.Session != nil {
				tmpl, raw = d.Session.Path, d.SessionURL(base, p)
			}
			if d.Transport == SockJS && d.Session == nil {
				t.Skip("SockJS paths are SockJS's")
			}
			u, err := url.Parse(raw)
			require.NoError(t, err)
			r := httptest.NewRequest("GET", u.RequestURI(), nil)
			got, err := ParseRequest(tmpl, "/prefix", r)
			require.NoError(t, err)
			want := p
			want.Session = ""
			switch d.CommandMode() {
			case "shell":
				want.Command = []string{"sh"}
			case "fixed":
				want.Command = nil
			}
			if d.TTY == TTYAlways {
				got.TTY = false // not in the URL
			}
			if !strings.Contains(tmpl, "{namespace}") {
				want.Namespace = ""
			}
			if !strings.Contains(tmpl, "{pod}") {
				want.Pod = ""
			}
			assert.Equal(t, want, got)
		})
	}
	d, _ := Builtin("json-op-sockjs")
	u, _ := url.Parse(d.ConnectURL(base, p))
	assert.Regexp(t, `^/prefix/api/sockjs/[0-9]{3}/[0-9a-f]{16}/websocket$`, u.Path)
	assert.Equal(t, "ws", u.Scheme)
}

// A dialect file: a dozen lines, from a base or whole; a bad one is
// refused with its field and why.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	d, err := Load(write("argo.yaml", `
name: argocd-guestbook
base: json-operation
path: /terminal?appName=guestbook&projectName=default&namespace={namespace}&pod={pod}&container={container}&shell={shell}
`))
	require.NoError(t, err)
	assert.Equal(t, "argocd-guestbook", d.Name)
	assert.Equal(t, JSON, d.Encoding)
	assert.Equal(t, "shell", d.CommandMode())
	assert.Equal(t, TTYAlways, d.TTY)

	d, err = Load(write("mine.json", `{"name": "mine", "path": "/ws/{container}?cmd={command}&tty={tty}",
	  "encoding": "json", "stdin": {"type": "input", "payload": {"text": "{data}"}},
	  "resize": {"type": "size", "w": "{cols}", "h": "{rows}", "v": 2},
	  "output": {"when": {"type": "output"}, "data": "text"}}`))
	require.NoError(t, err)
	assert.Equal(t, TTYParam, d.TTY)
	_, p, err := d.ClientCodec("").Resize(80, 24)
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"size","w":80,"h":24,"v":2}`, string(p))
	in, err := d.ServerCodec().Decode(websocket.TextMessage, p)
	require.NoError(t, err)
	assert.Equal(t, Input{Kind: InputResize, Rows: 24, Cols: 80}, in)
	_, err = d.ServerCodec().Decode(websocket.TextMessage, []byte(`{"type":"size","w":80,"h":24,"v":3}`))
	assert.Error(t, err, "a literal that differs is not the template")

	bad := map[string]struct{ body, field, reason string }{
		"unknown field":     {`{"name":"x","path":"/{container}","encoding":"raw","colour":"red"}`, "(file)", `unknown field "colour"`},
		"no container":      {`{"name":"x","path":"/t?pod={pod}","encoding":"raw"}`, "path", "{container} is in neither"},
		"bad placeholder":   {`{"name":"x","path":"/t?c={container}&u={user}","encoding":"raw"}`, "path", "unknown placeholder {user}"},
		"no data":           {`{"name":"x","path":"/{container}","encoding":"json","stdin":{"op":"in"},"output":{"when":{"op":"out"},"data":"d"}}`, "stdin", "needs {data} exactly once"},
		"no output":         {`{"name":"x","path":"/{container}","encoding":"json","stdin":{"d":"{data}"}}`, "output.data", "needs the field"},
		"bad base":          {`{"name":"x","base":"nope"}`, "base", `"nope" is not a built-in`},
		"kubernetes":        {`{"name":"kubernetes","path":"/{container}","encoding":"raw"}`, "name", "Kubernetes subprotocols"},
		"command in path":   {`{"name":"x","path":"/{container}/{command}","encoding":"raw"}`, "path", "cannot stand in the path"},
		"raw text resize":   {`{"name":"x","path":"/{container}","encoding":"raw","resize":{"r":"{rows}","c":"{cols}"}}`, "resize", "cannot tell a resize"},
		"tty without param": {`{"name":"x","path":"/{container}","encoding":"raw","tty":"param"}`, "tty", "needs {tty}"},
		"sockjs query":      {`{"name":"x","transport":"sockjs","path":"/s?c={container}","encoding":"raw"}`, "path", "no query"},
		"not an object":     {`- a`, "(file)", "one object"},
	}
	for name, c := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := Load(write(strings.ReplaceAll(name, " ", "-")+".yaml", c.body))
			require.Error(t, err)
			var de *Error
			require.ErrorAs(t, err, &de)
			assert.Equal(t, c.field, de.Field)
			assert.Contains(t, de.Reason, c.reason)
			assert.Contains(t, err.Error(), "dialect: "+dir)
		})
	}
}

func TestLookup(t *testing.T) {
	d, err := Lookup("kubernetes")
	require.NoError(t, err)
	assert.True(t, d.IsKubernetes())
	_, err = Lookup("no-such-dialect")
	assert.ErrorContains(t, err, "neither a built-in dialect")
	assert.Equal(t, []string{"kubernetes", "json-operation", "json-op", "json-op-sockjs", "raw", "raw-binary"}, Builtins())
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
