package broadcast

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// initialized dials url and sends a successful init for event a.
func initialized(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	conn := dial(t, url)
	send(t, conn, `{"authentication":"`+goodCreds+`","events":["a"]}`)
	require.Equal(t, `{"type":"init","code":"OK"}`, readText(t, conn))
	return conn
}

// rawStream reads what the server sends until it ends.
func rawStream(t *testing.T, conn *websocket.Conn) []byte {
	t.Helper()
	nc := conn.NetConn()
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	stream, err := io.ReadAll(nc)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Logf("stream ended with %v after %d bytes", err, len(stream))
	}
	return stream
}

// TestPingsAnswered: every ping gets a pong with its payload, also two
// pings that arrive in one read.
func TestPingsAnswered(t *testing.T) {
	_, url := newTestHub(t, testOptions())
	conn := initialized(t, url)
	pongs := make(chan string, 3)
	conn.SetPongHandler(func(p string) error { pongs <- p; return nil })

	key := [4]byte{1, 2, 3, 4}
	both := append(maskedFrame(0x89, key, []byte("first ping")), maskedFrame(0x89, key, []byte("2nd"))...)
	_, err := conn.NetConn().Write(both)
	require.NoError(t, err)
	require.NoError(t, conn.WriteControl(websocket.PingMessage, []byte("third"), time.Now().Add(5*time.Second)))

	ended := make(chan error, 1)
	go func() { // pongs are seen while reading
		_, _, err := conn.ReadMessage()
		ended <- err
	}()
	for _, want := range []string{"first ping", "2nd", "third"} {
		select {
		case got := <-pongs:
			assert.Equal(t, want, got)
		case err := <-ended:
			t.Fatalf("the connection ended before the pong for %q: %v", want, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no pong for %q", want)
		}
	}
}

// TestPeerCloseCodes: a peer's close with a code it may send ends the
// connection normally; one with a code it may not send is a protocol
// error (1002).
func TestPeerCloseCodes(t *testing.T) {
	_, url := newTestHub(t, testOptions())
	for _, tc := range []struct {
		code      int
		wantClose [2]any
	}{
		{1003, [2]any{closeNormal, "closed by peer"}},
		{1000, [2]any{closeNormal, "closed by peer"}},
		{4999, [2]any{closeNormal, "closed by peer"}},
		{1005, [2]any{closeProtocolError, "protocol error"}},
		{1004, [2]any{closeProtocolError, "protocol error"}},
	} {
		conn := initialized(t, url)
		body := append(binary.BigEndian.AppendUint16(nil, uint16(tc.code)), "bye"...)
		_, err := conn.NetConn().Write(maskedFrame(0x88, [4]byte{5, 6, 7, 8}, body))
		require.NoError(t, err)
		closes := closeFrames(t, rawStream(t, conn))
		assert.Equal(t, [][2]any{tc.wantClose}, closes, "peer's close %d", tc.code)
	}
}
