package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Subscribers that vanish in the middle of a burst are removed cleanly and
// the others receive everything.
func TestSubscribersClosingDuringBurst(t *testing.T) {
	s := startServer(t, nil)
	const leavers, events = 40, 300
	stayer := s.subscribe("burst")
	conns := make([]*websocket.Conn, leavers)
	for i := range conns {
		conns[i] = s.subscribe("burst")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range events {
			body := fmt.Sprintf(`{"event":"burst","data":%d}`, i)
			status, resp := s.post("Basic "+testToken, body)
			assert.Equal(t, 200, status, resp)
		}
	}()
	for i, c := range conns {
		switch i % 3 {
		case 0: // abrupt: TCP close without a close frame
			c.NetConn().Close()
		case 1: // polite close frame
			_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
			c.Close()
		default: // read a little, then vanish
			_, _, _ = c.ReadMessage()
			c.Close()
		}
	}
	for i := range events {
		require.Equal(t, eventJSON("burst", fmt.Sprint(i)), readEvent(t, stayer))
	}
	wg.Wait()
	// Every leaver was removed from the hub.
	require.Eventually(t, func() bool {
		return strings.Count(s.logs.String(), `msg="subscriber closed"`) >= leavers
	}, 10*time.Second, 10*time.Millisecond)
}

// A subscriber that stops reading is cut off with 1008 "slow consumer" once
// its queue bound is passed, and the others do not notice: a healthy
// subscriber receives every event while the stalled one's socket is full
// and its queue grows.
//
// The publisher waits for the healthy subscriber to receive each event
// before it posts the next. An earlier version posted flat out under a
// 64 KiB bound and failed without -race: traced, the flusher had lost its
// CPU for 2.5-3.5 ms (on 2 cores, beside the test's own publisher and
// reader), and 64 KiB is about 3 ms of publishing flat out, so both
// subscribers passed the bound together while every write to the stalled
// one was still going through in full. That measured the scheduler, not
// isolation; this test measures isolation: were the stalled subscriber to
// hold up the others, the healthy one would stop receiving, and the test
// would fail.
func TestSlowConsumerIsCutOff(t *testing.T) {
	s := startServer(t, map[string]string{"MAX_BODY_BYTES": "20000", "QUEUE_MAX_BYTES": "262144"})
	slow := s.subscribeSmall("flood")
	healthy := s.subscribe("flood")

	data := `"` + strings.Repeat("x", 16000) + `"`
	for i := 0; !strings.Contains(s.logs.String(), `reason="slow consumer"`); i++ {
		require.Less(t, i, 20000, "the slow subscriber was never cut off")
		s.publish("flood", data)
		require.Equal(t, eventJSON("flood", data), readEvent(t, healthy), "the healthy subscriber, event %d", i)
	}
	assert.Equal(t, 1, strings.Count(s.logs.String(), `msg="subscriber cut off"`), "only the slow one is cut off")
	s.publish("flood", "1")
	require.Equal(t, eventJSON("flood", "1"), readEvent(t, healthy))
	ce := readClose(t, slow)
	assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
	assert.Equal(t, "slow consumer", ce.Text)
}

func TestPingTimeoutDropsSilentPeer(t *testing.T) {
	s := startServer(t, map[string]string{"PING_INTERVAL": "100ms"})
	c := s.subscribe("a")
	// Do not read (so no pong is sent) until the server has given up.
	s.waitLog(`reason="ping timeout"`)
	c.SetPingHandler(func(string) error { return nil }) // stay silent while draining
	ce := readClose(t, c)
	assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
	assert.Equal(t, "ping timeout", ce.Text)
}

func TestPingsKeepAnAnsweringPeer(t *testing.T) {
	// 200ms: a loaded machine (CI running other packages' tests beside
	// this one) may delay a pong by more than 75 ms, which cut an
	// answering peer off at 50ms.
	s := startServer(t, map[string]string{"PING_INTERVAL": "200ms"})
	c := s.subscribe("a")
	pings := make(chan struct{}, 100)
	c.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() { _, _, _ = c.ReadMessage() }()
	for range 10 { // ten intervals: far past the 300 ms silence limit
		select {
		case <-pings:
		case <-time.After(5 * time.Second):
			t.Fatal("no ping")
		}
	}
	s.publish("a", `1`) // still subscribed: the read above returns it
	assert.NotContains(t, s.logs.String(), "ping timeout")
}

func TestInitTimeout(t *testing.T) {
	s := startServer(t, map[string]string{"INIT_TIMEOUT": "100ms"})
	c := s.dial()
	ce := readClose(t, c)
	assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
	assert.Equal(t, "init timeout", ce.Text)
}

func TestMessageTooBig(t *testing.T) {
	s := startServer(t, map[string]string{"MAX_MESSAGE_BYTES": "1024"})
	c := s.dial()
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(`{"events":["`+strings.Repeat("a", 2000)+`"]}`)))
	ce := readClose(t, c)
	assert.Equal(t, websocket.CloseMessageTooBig, ce.Code)
	s.requireServes()
}

func TestClientPingIsAnswered(t *testing.T) {
	s := startServer(t, nil)
	c := s.subscribe("a")
	pong := make(chan string, 1)
	c.SetPongHandler(func(data string) error { pong <- data; return nil })
	require.NoError(t, c.WriteControl(websocket.PingMessage, []byte("hello"), time.Now().Add(time.Second)))
	go func() { _, _, _ = c.ReadMessage() }()
	select {
	case got := <-pong:
		assert.Equal(t, "hello", got)
	case <-time.After(10 * time.Second):
		t.Fatal("no pong")
	}
}

// Shutdown: in-flight POSTs finish, subscribers get 1001 "going away", and
// run returns nil.
func TestGracefulShutdown(t *testing.T) {
	s := startServer(t, nil)
	c := s.subscribe("a")

	// Start a POST whose body is still to come when shutdown begins. With
	// Expect: 100-continue the server says when the handler is reading the
	// body, so the request is surely in flight before shutdown.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.listenURL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	body := `{"event":"a","data":"late"}`
	_, err = fmt.Fprintf(conn, "POST /event HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n"+
		"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n", testToken, len(body))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	reply := make([]byte, 512)
	n, err := conn.Read(reply)
	require.NoError(t, err)
	require.Contains(t, string(reply[:n]), "100 Continue")

	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	s.waitLog(`msg="shutting down"`)
	_, err = conn.Write([]byte(body))
	require.NoError(t, err)
	n, err = conn.Read(reply)
	require.NoError(t, err)
	assert.Contains(t, string(reply[:n]), "200 OK")
	// The late event still reached the subscriber, before the close.
	require.Equal(t, eventJSON("a", `"late"`), readEvent(t, c))

	ce := readClose(t, c)
	assert.Equal(t, websocket.CloseGoingAway, ce.Code)
	assert.Equal(t, "going away", ce.Text)
	require.NoError(t, <-stopped)
	s.waitLog(`msg="shutdown complete"`)
}

func TestShutdownTimeoutCutsStalledConnections(t *testing.T) {
	s := startServer(t, map[string]string{"SHUTDOWN_TIMEOUT": "200ms"})
	// A POST that never finishes its body holds the listen server's drain.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.listenURL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST /event HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n"+
		"Expect: 100-continue\r\nContent-Length: 100\r\n\r\n", testToken)
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	reply := make([]byte, 512)
	n, err := conn.Read(reply)
	require.NoError(t, err)
	require.Contains(t, string(reply[:n]), "100 Continue", "the handler is reading the body")
	s.subscribe("a")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.stop() }()
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("shutdown did not respect SHUTDOWN_TIMEOUT")
	}
	assert.Contains(t, s.logs.String(), "shutdown timeout passed")
}

// A subscriber that once needed a blocking write (here a frame larger than
// one coalesced write) keeps receiving after WRITE_TIMEOUT has passed: the
// deadline of that write must not linger and fail later writes.
func TestWriteDeadlineDoesNotOutliveItsWrite(t *testing.T) {
	s := startServer(t, map[string]string{"WRITE_TIMEOUT": "100ms"})
	c := s.subscribe("a")
	big := `"` + strings.Repeat("x", 100<<10) + `"`
	s.publish("a", big)
	require.Equal(t, eventJSON("a", big), readEvent(t, c))
	// Keep publishing until well past the deadline of that write.
	for start, i := time.Now(), 0; time.Since(start) < 500*time.Millisecond; i++ {
		s.publish("a", fmt.Sprint(i))
		require.Equal(t, eventJSON("a", fmt.Sprint(i)), readEvent(t, c))
	}
	assert.NotContains(t, s.logs.String(), "write failed")
}
