package wsframe_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/internal/wsframe"
)

// TestOneFrame: gorilla (as a server) reads what WriteClientFrame wrote as
// one message, and every size class of the length field round-trips.
func TestOneFrame(t *testing.T) {
	frames := make(chan int, 10)
	msgs := make(chan []byte, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, m, err := c.ReadMessage()
			if err != nil {
				close(msgs)
				return
			}
			frames <- typ
			msgs <- m
		}
	}))
	defer srv.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.NoError(t, err)
	defer c.Close()
	for _, n := range []int{0, 125, 126, 4096, 65535, 65536, 1 << 20} {
		payload := bytes.Repeat([]byte{byte(n)}, n)
		require.NoError(t, wsframe.WriteClientFrame(c.NetConn(), websocket.BinaryMessage, payload))
		assert.Equal(t, websocket.BinaryMessage, <-frames)
		assert.Equal(t, payload, <-msgs, "size %d", n)
	}
}
