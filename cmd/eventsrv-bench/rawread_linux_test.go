package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEpollReaderTakesOverBufferedFrames: frames that gorilla read past the
// init reply before the epoll reader took the socket are accounted, not
// lost; later frames come through the epoll reader, and the server's close
// reason is reported as gorilla would.
func TestEpollReaderTakesOverBufferedFrames(t *testing.T) {
	pongs := make(chan string, 2)
	release := make(chan struct{})
	closed := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		if _, ok := fakeInit(conn); !ok {
			return
		}
		// The reply, a ping and a frame in one write: one segment,
		// which gorilla's first read takes whole.
		burst := cat(serverFrame(true, opText, []byte(`{"type":"init","code":"OK"}`)),
			serverFrame(true, opPing, []byte("early")), serverFrame(true, opText, []byte("buffered")))
		if _, err := conn.NetConn().Write(burst); err != nil {
			return
		}
		conn.SetPongHandler(func(s string) error { pongs <- s; return nil })
		// The read runs the pong handler, and ends with the client's
		// answer to our close frame.
		read := make(chan error, 1)
		go func() { _, _, err := conn.ReadMessage(); read <- err }()
		<-release
		_ = conn.WriteControl(websocket.PingMessage, []byte("late"), time.Now().Add(time.Second))
		_ = conn.WriteMessage(websocket.TextMessage, []byte("live"))
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4005, "events lost"), time.Now().Add(time.Second))
		closed <- <-read
	}))
	defer srv.Close()

	cfg := config{broadcastURLs: []string{wsURL(srv)}, token: testToken, event: "e", publishers: 1, events: 1, size: 10, timeout: 5 * time.Second}
	readers, err := newEpollReaders()
	require.NoError(t, err)
	defer readers.stop()
	s, err := connect(context.Background(), cfg, 0, newDialers(cfg)[0], nil)
	require.NoError(t, err)
	s.onFinish = func() {}
	require.NoError(t, readers.attach(s, 0, readLimit(cfg)))
	require.NotNil(t, s.raw)
	assert.Equal(t, "early", <-pongs, "gorilla answered the buffered ping")
	close(release)
	<-s.loopDone
	assert.True(t, websocket.IsCloseError(<-closed, 4005), "the epoll reader echoes the close code")
	assert.Equal(t, "late", <-pongs, "the epoll reader answers pings")
	assert.Equal(t, int64(2), s.tally.malformed, "both frames were accounted")
	assert.Contains(t, s.tally.malformedSample, "buffered")
	var ce *websocket.CloseError
	require.ErrorAs(t, s.exitErr, &ce)
	assert.Equal(t, 4005, ce.Code)
	assert.Equal(t, "events lost", ce.Text)
}
