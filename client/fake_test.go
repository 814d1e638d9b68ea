package client

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain checks, after all the tests, that nothing leaked; each test
// also checks its own goroutines (see noLeaks).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// noLeaks fails t if goroutines started during it outlive it and its
// cleanups (registered first, so it runs last).
func noLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// fakeServer is a scripted broadcast server for protocol cases the real
// server cannot be made to produce on demand (a given close code, a reply
// cut at a given point). The real server's behaviour is tested in
// cmd/eventsrv's client tests.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server
	// script runs each connection; n counts from 1.
	script func(n int, c *fakeConn)

	mu    sync.Mutex
	conns int
	inits []fakeInit // every first message, in order
}

// fakeInit is an init as the fake server received it.
type fakeInit struct {
	Authentication string   `json:"authentication"`
	Events         []string `json:"events"`
	Since          *string  `json:"since"`
}

type fakeConn struct {
	t  *testing.T
	ws *websocket.Conn
	f  *fakeServer
}

func newFakeServer(t *testing.T, script func(n int, c *fakeConn)) *fakeServer {
	f := &fakeServer{t: t, script: script}
	up := websocket.Upgrader{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		f.mu.Lock()
		f.conns++
		n := f.conns
		f.mu.Unlock()
		f.script(n, &fakeConn{t: t, ws: ws, f: f})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// client returns a client of the fake server.
func (f *fakeServer) client(opts ...Option) *Client {
	f.t.Helper()
	u := "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/"
	c, err := New(f.srv.URL, append([]Option{WithBroadcastURL(u), WithToken("fake-token-0123456789")}, opts...)...)
	require.NoError(f.t, err)
	f.t.Cleanup(func() { c.Close() })
	return c
}

func (f *fakeServer) initsSeen() []fakeInit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeInit(nil), f.inits...)
}

// readInit reads the connection's first message, which must be an init.
func (c *fakeConn) readInit() (fakeInit, bool) {
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		return fakeInit{}, false
	}
	var in fakeInit
	require.NoError(c.t, json.Unmarshal(b, &in), string(b))
	c.f.mu.Lock()
	c.f.inits = append(c.f.inits, in)
	c.f.mu.Unlock()
	return in, true
}

// read reads one message; false when the connection ended.
func (c *fakeConn) read() (map[string]any, bool) {
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		return nil, false
	}
	var m map[string]any
	require.NoError(c.t, json.Unmarshal(b, &m))
	return m, true
}

func (c *fakeConn) send(msg string) {
	_ = c.ws.WriteMessage(websocket.TextMessage, []byte(msg))
}

// ok answers an init with position id, recovered and replayed.
func (c *fakeConn) ok(id string, recovered bool, replayed int) {
	b, _ := json.Marshal(map[string]any{"type": "init", "code": "OK", "id": id, "recovered": recovered, "replayed": replayed})
	c.send(string(b))
}

func (c *fakeConn) event(id, name, data string) {
	c.send(`{"type":"event","id":"` + id + `","event":"` + name + `","data":` + data + `}`)
}

func (c *fakeConn) close(code int, text string) {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
}

// waitClosed reads until the client closes the connection.
func (c *fakeConn) waitClosed() {
	for {
		if _, ok := c.read(); !ok {
			return
		}
	}
}
