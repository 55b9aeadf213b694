// Package faults injects network faults into the TCP legs of a conformance
// case. It embeds Toxiproxy (github.com/Shopify/toxiproxy/v2) as a library:
// there is no toxiproxy-server process and no HTTP API, and every listener
// is on loopback.
//
// A Link is one Toxiproxy proxy in front of one upstream address. Each
// client connection becomes a session: two Toxiproxy ToxicLinks, one per
// direction, each a chain of toxics, plus the state both directions share:
//
//	                     Link "case/backend" on 127.0.0.1:port
//	         +---------------------------------------------------------+
//	client --+-> reader -> noop -> toxic -> ... -> toxic -> writer ----+--> upstream   Upstream
//	client <-+-- writer <- toxic <- ... <- toxic <- noop <- reader <---+--- upstream   Downstream
//	         |      \______________________  ______________________/   |
//	         |                             \/                          |
//	         |    session: last byte read, half_open, SO_LINGER, cut   |
//	         +---------------------------------------------------------+
//
// Toxiproxy's built-in toxics (latency, bandwidth, slicer, slow_close,
// reset_peer, timeout, limit_data) run in the chains. The last three are
// registered again under names of faults' own, their Pipe unchanged, to add
// what they lack here: SO_LINGER 0 for reset_peer added to an open
// connection, and, once they have closed a connection, reading their input
// to its end, without which Toxiproxy leaves two goroutines per connection
// that still had data coming. A Toxic names them by their usual type.
//
// Two more toxics are registered with toxics.Register and added like the
// built-ins: idle_timeout (a load balancer closing an idle connection) and
// half_open (a silent drop: nothing passes, nothing is closed). Both act on
// the two directions of a connection, whatever their stream.
//
// Faults are started by the harness on events (a prompt appeared, the
// script ended), never after a sleep: Add returns once the toxic is in
// place on every open connection.
package faults
