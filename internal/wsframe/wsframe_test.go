package wsframe_test

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/internal/wsframe"
)

// TestOneFrame: every size class of the length field (RFC 6455 section
// 5.2) gives exactly one final, masked frame, header and payload, whose
// unmasked payload is the message.
func TestOneFrame(t *testing.T) {
	for _, n := range []int{0, 125, 126, 4096, 65535, 65536, 1 << 20} {
		payload := bytes.Repeat([]byte{byte(n), 'x'}, n/2+1)[:n]
		var buf bytes.Buffer
		require.NoError(t, wsframe.WriteClientFrame(&buf, websocket.BinaryMessage, payload))
		b := buf.Bytes()
		assert.Equal(t, byte(0x80|websocket.BinaryMessage), b[0], "FIN and opcode, size %d", n)
		require.NotZero(t, b[1]&0x80, "masked, size %d", n)
		length, hdr := uint64(b[1]&0x7f), 2
		switch length {
		case 126:
			length, hdr = uint64(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			length, hdr = binary.BigEndian.Uint64(b[2:]), 10
		}
		require.Equal(t, uint64(n), length, "length field, size %d", n)
		key := b[hdr : hdr+4]
		body := b[hdr+4:]
		require.Len(t, body, n, "nothing after the one frame, size %d", n)
		for i := range body {
			body[i] ^= key[i&3]
		}
		assert.Equal(t, payload, body, "size %d", n)
	}
}

// TestGorillaReadsIt: a gorilla server reads what WriteClientFrame wrote,
// on a connection gorilla also writes to.
func TestGorillaReadsIt(t *testing.T) {
	msgs := make(chan []byte, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_, m, err := c.ReadMessage()
			if err != nil {
				return
			}
			msgs <- m
		}
	}))
	defer srv.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.NoError(t, err)
	defer c.Close()
	big := bytes.Repeat([]byte("paste "), 20000)
	require.NoError(t, wsframe.WriteClientFrame(c.NetConn(), websocket.BinaryMessage, big))
	require.NoError(t, c.WriteMessage(websocket.BinaryMessage, []byte("small")))
	assert.Equal(t, big, <-msgs)
	assert.Equal(t, []byte("small"), <-msgs)
}
