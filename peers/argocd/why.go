package argocd

// why is from server/application/terminal.go and websocket.go of Argo CD
// v3.2.12, checked against the run.
const why = `Argo CD's session is ` + "`startProcess`" + `: client-go's fallback executor run with
` + "`StreamWithContext(context.Background(), ...)`" + `, the ` + "`terminalSession`" + ` as its stdin, stdout and size queue.
Nothing but the shell's end ends that call: the request's context is not passed to it, and no code path cancels it.
What it does when the browser goes is in ` + "`terminalSession.Read`" + `: on any read error of the WebSocket (a close frame,
a TCP FIN or RST, a timeout) it returns ` + "`EndOfTransmission`" + ` ("\x04", ^D) with the error, so the executor writes
one ^D on stdin and then, its stdin at an end, half-closes it (the v5 CLOSE signal for stdin, the
` + "`binary frame on channel 255`" + ` in the evidence). That is a good idea half done:

- **At an idle prompt** ^D is EOF to the shell, which exits; the status and the close reach the backend cleanly. So every
  ending of an idle session passes: the client's close 1000 and 1001, TCP FIN and RST, the idle timeouts, the reset and
  downed client leg, the 200 sessions dropped, the shutdown of 20 sessions.
- **With a foreground program or half a line** the ^D does not end the shell: ` + "`sleep 600`" + ` and ` + "`yes`" + ` do not read stdin
  (` + "`busy/foreground-sleep`" + `, ` + "`lb/client-leg/idle-timeout-busy`" + `, ` + "`busy/stdout-flood`" + `,
  ` + "`lb/client-leg/bandwidth-flood`" + `), ` + "`cat`" + ` behind a paste reads the ^D as the end of a line, not EOF
  (` + "`busy/paste-in-flight`" + `), and after a half-typed line a ^D only hands the line to the shell
  (` + "`shell/half-typed-line`" + `). The shell and its program stay alive, and since the executor's context is never
  cancelled Argo CD keeps the backend connection open as long as they live (` + "`busy/ignores-interrupt`" + `: still held
  15 s after the ending). Its keepalive pings every 5 s (` + "`StartKeepalives`" + `) only write to the browser: a failed ping
  ends the ping loop, not the session, and no read deadline or pong handler notices a half-open browser
  (` + "`lb/client-leg/half-open`" + `, INFO: no keepalive bound is declared for a peer).
- **When the backend ends** (the user types ` + "`exit`" + `, the process is killed, the backend leg is reset or down),
  ` + "`ServeHTTP`" + ` calls ` + "`session.Close()`" + `, gorilla's ` + "`Conn.Close`" + `, which closes the TCP connection
  without a close frame: the browser sees 1006 where the suite wants the backend's 1000 relayed (or, for a dead backend
  leg, a close frame of the proxy's own). After an executor error it also calls ` + "`http.Error`" + ` on the hijacked
  connection (the "response.WriteHeader on hijacked connection" log lines).

What Argo CD's maintainers should change: pass a context to ` + "`StreamWithContext`" + ` that is cancelled when the WebSocket
read fails (the request's context with a cancel called from ` + "`Read`" + `'s error path), after writing the exit a shell
obeys in every state (^C to end the foreground program and clear the line, then ` + "`exit\\r`" + ` or ^D), so that a session whose shell does not obey is still let go; keep the ^D for the idle case.
Close the browser's WebSocket with a close frame (` + "`WriteControl(CloseMessage, 1000)`" + ` when the exec ended
cleanly, 1011 when the executor failed) before ` + "`Conn.Close`" + `, and do not call ` + "`http.Error`" + ` after the upgrade.
Give the pings a purpose: a pong handler that extends a read deadline, so that a browser that vanished without a FIN
ends its session instead of holding a shell until the TCP retransmissions give up.`
