package broadcast

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/auth"
)

const goodCreds = "Basic good-token-0123456789"

// fakeAuth accepts goodCreds only.
type fakeAuth struct{}

func (fakeAuth) Authenticate(creds, remote, via string) (auth.Permissions, error) {
	switch {
	case creds == goodCreds:
		return auth.FullAccess, nil
	case creds == "" || strings.HasPrefix(creds, "Basic "):
		return auth.Permissions{}, auth.ErrUnauthenticated
	default:
		return auth.Permissions{}, auth.ErrUnrecognizedScheme
	}
}

func testOptions() Options {
	return Options{
		QueueMaxBytes:    1 << 20,
		WriteTimeout:     5 * time.Second,
		PingInterval:     time.Hour,
		InitTimeout:      10 * time.Second,
		MaxMessageBytes:  256,
		MaxSubscriptions: 10,
		Log:              slog.New(slog.DiscardHandler),
		Epoch:            7,    // IDs are 7-1, 7-2, ...
		IOURing:          true, // as the server runs; see TestWritesWithoutIOURing
	}
}

// newTestHub serves a hub on a real port; the hub is closed, and then the
// server, when the test ends.
func newTestHub(t *testing.T, opts Options) (*Hub, string) {
	t.Helper()
	h := NewHub(fakeAuth{}, opts)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, h.Close(ctx))
	})
	return h, "ws" + strings.TrimPrefix(srv.URL, "http")
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	require.NoError(t, err)
	resp.Body.Close()
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	return conn
}

func readText(t *testing.T, conn *websocket.Conn) string {
	t.Helper()
	typ, msg, err := conn.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, websocket.TextMessage, typ)
	return string(msg)
}

// TestSubscribeAndPublish is the happy path through a real connection.
func TestSubscribeAndPublish(t *testing.T) {
	h, url := newTestHub(t, testOptions())
	conn := dial(t, url)

	require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(`{"events":["a"]}`)))
	assert.Equal(t, `{"type":"init","code":"UNAUTHENTICATED","message":"no credentials: send \"authentication\" as \"Basic <token>\", with a token from the tokens file"}`, readText(t, conn))

	require.NoError(t, conn.WriteMessage(websocket.TextMessage,
		[]byte(`{"authentication":"`+goodCreds+`","events":["a","<é>"]}`)))
	assert.Equal(t, `{"type":"init","code":"OK"}`, readText(t, conn))

	for i, ev := range []struct{ name, data string }{{"b", `1`}, {"a", `{"x" : 1}`}, {"<é>", `-0.50`}} {
		id, err := h.Publish(ev.name, []byte(ev.data)) // nobody is subscribed to b
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("7-%d", i+1), id)
	}
	assert.Equal(t, `{"type":"event","id":"7-2","event":"a","data":{"x" : 1}}`, readText(t, conn))
	assert.Equal(t, `{"type":"event","id":"7-3","event":"<é>","data":-0.50}`, readText(t, conn))
	assert.Equal(t, 1, h.Subscribers())
}

// TestCloseGoingAway: closing the hub sends 1001 to each subscriber and
// refuses later publishes.
func TestCloseGoingAway(t *testing.T) {
	h, url := newTestHub(t, testOptions())
	conn := dial(t, url)
	require.Eventually(t, func() bool { return h.Subscribers() == 1 }, 5*time.Second, time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- h.Close(ctx) }()

	_, _, err := conn.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, websocket.CloseGoingAway, ce.Code)
	assert.Equal(t, "going away", ce.Text)
	// Answer the close, as a browser would, so Close can finish.
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(5*time.Second))
	require.NoError(t, <-closed)
	_, err = h.Publish("a", []byte(`1`))
	assert.ErrorIs(t, err, ErrClosed)
	assert.Zero(t, h.Subscribers())
}

// closeFrames reads the raw stream until it ends and returns the code and
// reason of every close frame in it (server frames are unmasked).
func closeFrames(t *testing.T, stream []byte) [][2]any {
	t.Helper()
	var out [][2]any
	for len(stream) >= 2 {
		op := stream[0] & 0x0F
		n, hl := int(stream[1]&0x7F), 2
		switch n {
		case 126:
			n, hl = int(binary.BigEndian.Uint16(stream[2:4])), 4
		case 127:
			n, hl = int(binary.BigEndian.Uint64(stream[2:10])), 10
		}
		require.LessOrEqual(t, hl+n, len(stream), "truncated frame")
		p := stream[hl : hl+n]
		if op == opClose && len(p) >= 2 {
			out = append(out, [2]any{int(binary.BigEndian.Uint16(p)), string(p[2:])})
		}
		stream = stream[hl+n:]
	}
	return out
}

// TestOversizedMessageClose: a message over MaxMessageBytes is answered with
// exactly one close frame, 1009 (gorilla's, which carries no reason).
func TestOversizedMessageClose(t *testing.T) {
	opts := testOptions()
	opts.MaxMessageBytes = 64
	_, url := newTestHub(t, opts)
	conn := dial(t, url)
	require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 200))))

	// Read the raw stream, to see every frame the server sends.
	nc := conn.NetConn()
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	stream, err := io.ReadAll(nc)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Logf("stream ended with %v after %d bytes", err, len(stream))
	}
	assert.Equal(t, [][2]any{{websocket.CloseMessageTooBig, ""}}, closeFrames(t, stream))
}

// TestHandlerNotUpgrade: a plain request gets 426 with a JSON code.
func TestHandlerNotUpgrade(t *testing.T) {
	h := NewHub(fakeAuth{}, testOptions())
	defer func() { require.NoError(t, h.Close(context.Background())) }()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.Equal(t, http.StatusUpgradeRequired, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, "websocket", rec.Header().Get("Upgrade"))
	assert.Equal(t, `{"code":"UPGRADE_REQUIRED","message":"this is the broadcast server: subscribe with a WebSocket, or with Server-Sent Events at GET /events?event=<name>"}`+"\n",
		rec.Body.String())
}
