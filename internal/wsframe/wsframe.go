// Package wsframe writes a whole WebSocket message as one client frame.
//
// gorilla/websocket cuts a client's message into continuation frames at
// its write buffer's size (4 KiB by default, for WriteMessage and prepared
// messages alike). The API server (wsstream, on golang.org/x/net/websocket)
// reads every frame as a message of its own, so a fragmented stdin message
// reaches the process garbled, and browsers send one frame per message.
// Rather than give every connection a buffer the size of the largest
// message, the suite's client and the reference proxy write large messages
// with WriteClientFrame, from the one goroutine that writes the connection.
package wsframe

import (
	"crypto/rand"
	"encoding/binary"
	"io"
)

// WriteClientFrame writes payload as one final, masked frame of opcode
// (RFC 6455 section 5.2; 1 text, 2 binary) to w, in one Write.
func WriteClientFrame(w io.Writer, opcode int, payload []byte) error {
	buf := make([]byte, 0, 14+len(payload))
	buf = append(buf, 0x80|byte(opcode&0x0f)) // FIN
	switch n := len(payload); {
	case n <= 125:
		buf = append(buf, 0x80|byte(n)) // MASK
	case n <= 0xffff:
		buf = append(buf, 0x80|126)
		buf = binary.BigEndian.AppendUint16(buf, uint16(n))
	default:
		buf = append(buf, 0x80|127)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	var key [4]byte
	if _, err := rand.Read(key[:]); err != nil {
		return err
	}
	buf = append(buf, key[:]...)
	start := len(buf)
	buf = append(buf, payload...)
	for i := range payload {
		buf[start+i] ^= key[i&3]
	}
	_, err := w.Write(buf)
	return err
}
