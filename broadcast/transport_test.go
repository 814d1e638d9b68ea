package broadcast

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// subscribe dials url and subscribes to events a and b.
func subscribe(t *testing.T, dialer *websocket.Dialer, url string) *websocket.Conn {
	t.Helper()
	conn, resp, err := dialer.Dial(url, nil)
	require.NoError(t, err)
	resp.Body.Close()
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(`{"authentication":"`+goodCreds+`","events":["a","b"]}`)))
	require.Equal(t, `{"type":"init","code":"OK"}`, readText(t, conn))
	return conn
}

// TestTLSSubscriber: a TLS connection cannot be written without blocking,
// so its subscriber has no raw socket and is written by a goroutine of its
// own; it gets every event like any other.
func TestTLSSubscriber(t *testing.T) {
	h := NewHub(fakeAuth{}, testOptions())
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, h.Close(ctx))
	})
	dialer := &websocket.Dialer{TLSClientConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}
	conn := subscribe(t, dialer, "wss"+strings.TrimPrefix(srv.URL, "https"))

	subs := h.snapshot()
	require.Len(t, subs, 1)
	require.Nil(t, subs[0].raw, "TLS: no raw socket")
	require.IsType(t, &tls.Conn{}, subs[0].nc.(*lockedConn).Conn)

	for i := range 50 {
		_, err := h.Publish([]string{"a", "b"}[i%2], []byte(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	for i := range 50 {
		want := fmt.Sprintf(`{"type":"event","id":"7-%d","event":"%s","data":%d}`, i+1, []string{"a", "b"}[i%2], i)
		require.Equal(t, want, readText(t, conn))
	}
}

// TestIdleSubscribersHaveNoGoroutine: on plain TCP an idle subscriber
// costs no goroutine: the poller watches its socket, and the flushers
// write to it.
func TestIdleSubscribersHaveNoGoroutine(t *testing.T) {
	h, url := newTestHub(t, testOptions())
	if runtime.GOOS != "linux" {
		t.Skip("no socket poller on this platform")
	}
	require.NotNil(t, h.poll, "Linux has epoll")
	before := runtime.NumGoroutine()
	const n = 30
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = subscribe(t, websocket.DefaultDialer, url)
	}
	_, err := h.Publish("a", []byte(`1`))
	require.NoError(t, err)
	for _, conn := range conns {
		require.Equal(t, `{"type":"event","id":"7-1","event":"a","data":1}`, readText(t, conn))
	}
	require.Eventually(t, func() bool { return runtime.NumGoroutine() < before+n/3 }, 5*time.Second, 5*time.Millisecond,
		"%d subscribers, %d goroutines more than before them", n, runtime.NumGoroutine()-before)
}

// TestNewSubscriberRawSocket: a TCP connection is written by the flushers
// through its raw socket; a connection without one (TLS, a pipe) is not.
func TestNewSubscriberRawSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	server := <-accepted
	require.NotNil(t, server)
	defer server.Close()

	h := &Hub{opts: testOptions()}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("User-Agent", "test/1")

	tcp := newLockedConn(server)
	require.NotNil(t, tcp.rc, "a TCP connection has a raw socket")
	c := h.newSubscriber(req, nil, tcp, nil)
	require.Same(t, tcp, c.raw)
	require.Equal(t, "test/1", c.userAgent)
	require.Equal(t, -1, c.fd, "not polled yet")
	require.NotZero(t, c.id)

	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	pipe := newLockedConn(p1)
	require.Nil(t, pipe.rc)
	c2 := h.newSubscriber(req, nil, pipe, nil)
	require.Nil(t, c2.raw)
	require.Greater(t, c2.id, c.id, "IDs increase")
}

func TestTrimUserAgent(t *testing.T) {
	exact := strings.Repeat("u", maxHeaderValue)
	assert.Equal(t, exact, trimHeader(exact))
	assert.Equal(t, exact, trimHeader(exact+"v"))
	assert.Equal(t, "", trimHeader(""))
	// Cut inside a two-byte rune: the half rune goes, the rest stays.
	split := strings.Repeat("u", maxHeaderValue-1) + "é"
	got := trimHeader(split)
	assert.True(t, utf8.ValidString(got))
	assert.Equal(t, strings.Repeat("u", maxHeaderValue-1), got)
}

// TestPollerForgetsClosedSubscribers: a subscriber's socket leaves the
// poller with it, so that the poller holds no client that is gone.
func TestPollerForgetsClosedSubscribers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no socket poller on this platform")
	}
	h, url := newTestHub(t, testOptions())
	require.NotNil(t, h.poll)
	polled := func() int {
		h.poll.mu.Lock()
		defer h.poll.mu.Unlock()
		return len(h.poll.conns)
	}
	conns := make([]*websocket.Conn, 3)
	for i := range conns {
		conns[i] = subscribe(t, websocket.DefaultDialer, url)
	}
	require.Equal(t, 3, polled())
	for _, conn := range conns {
		require.NoError(t, conn.Close())
	}
	require.Eventually(t, func() bool { return h.Subscribers() == 0 }, 5*time.Second, time.Millisecond)
	require.Zero(t, polled())
}
