// Package execclient emulates a client of the Kubernetes exec (and attach)
// WebSocket endpoint, the way a browser terminal or kubectl drives it: it
// offers subprotocols, frames keystrokes for the negotiated protocol, records
// what the server sends, and ends the connection in every way a real client
// can (close handshake, TCP FIN, TCP RST, or simply going silent).
//
// The conformance harness uses it on the browser side of a proxy under test:
//
//	c, err := execclient.Dial(ctx, "wss://proxy/api/v1/namespaces/ns/pods/p/exec?...", execclient.Options{
//		Protocols: []execproto.Protocol{execproto.ProtocolBase64},
//		Header:    http.Header{"Authorization": {"Bearer " + token}},
//	})
//	...
//	c.Type("echo hi\r")
//	err = c.Expect(ctx, "hi")
//	c.AbortTCP()
//	<-c.Done()
//
// # SPDY
//
// DialSPDY opens the same kind of session over SPDY/3.1, as client-go's
// remotecommand SPDY executor does, and returns a *SPDYConn. Conn and
// SPDYConn both implement Session, through which the harness drives them;
// they record output, status and the end the same way, and end TCP the
// same ways. See SPDYConn for its data path.
//
// # Concurrency
//
// Every method of Conn is safe for concurrent use. A Conn runs exactly one
// goroutine, the reader, from Dial until Done is closed. All frames the
// client originates (data messages, close frames, pong replies and the reply
// to a server close frame) are written under one mutex, so frames never
// interleave. Two frames are written by gorilla/websocket itself, outside
// that mutex, from the reader goroutine: the 1009 close when a message exceeds
// Options.MaxMessageSize and the 1002 close on a protocol violation by the
// server. gorilla serialises those with its own frame lock (WriteControl is
// documented safe to call concurrently with the other write methods), so
// they cannot corrupt a frame either.
//
// Pings from the server are answered by the reader goroutine under the write
// mutex. If an application write is blocked because the server is not
// reading, the pong waits for it, so the reader stops reading for at most
// Options.WriteTimeout.
//
// # Sockets
//
// Dial keeps the *net.TCPConn under gorilla (and under TLS for wss://, whose
// handshake Dial does itself) so that AbortTCP and Reset act on TCP directly.
// Every ending closes at the TCP level: under TLS no close_notify alert is
// sent, as when a browser tab is killed.
package execclient
