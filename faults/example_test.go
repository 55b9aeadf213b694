package faults_test

import (
	"fmt"
	"io"
	"net"

	"github.com/execconform/execconform/faults"
)

// A load balancer in front of the proxy under test closes a session once
// it has been idle. The harness adds the fault on an event (here: the
// prompt came back), never after a sleep; the close itself is the event
// the case then waits for.
func ExampleIdleTimeout() {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer backend.Close()
	go func() {
		c, err := backend.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(c, c) // echo
		_ = c.Close()
	}()

	link, err := faults.NewLink("example/client-leg", backend.Addr().String(), nil)
	if err != nil {
		panic(err)
	}
	defer link.Close()
	conn, err := net.Dial("tcp", link.Addr())
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	prompt := make([]byte, 2)
	_, _ = conn.Write([]byte("$ "))
	if _, err := io.ReadFull(conn, prompt); err != nil {
		panic(err)
	}
	if err := link.Add(faults.IdleTimeout(50, false)); err != nil {
		panic(err)
	}
	_, err = conn.Read(prompt)
	fmt.Println("client read:", err)
	fmt.Println("bytes to the client:", link.Stats().DownstreamBytes)
	// Output:
	// client read: EOF
	// bytes to the client: 2
}
