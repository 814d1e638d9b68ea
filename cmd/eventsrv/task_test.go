package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readTaskEvent reads the next task.<id> event: its name and data.
func readTaskEvent(t *testing.T, c *websocket.Conn) (name string, data map[string]any) {
	t.Helper()
	var m struct {
		Event string
		Data  map[string]any
	}
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, raw, err := c.ReadMessage()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &m), string(raw))
	return m.Event, m.Data
}

// A task stream publishes task.<id> as its lines arrive, and "done" when
// the body ends; the answer names the task.
func TestTaskStream(t *testing.T) {
	s := startServer(t, nil)
	c := s.subscribe("task.*")
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, s.listenURL+"/task", pr)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Basic "+testToken)
	answered := make(chan string, 1)
	go func() {
		status, body := s.roundTrip(req)
		answered <- fmt.Sprint(status, " ", body)
	}()

	fmt.Fprintln(pw, "Rebuild the index")
	name, data := readTaskEvent(t, c)
	require.Regexp(t, `^task\.[0-9a-f]{12}$`, name)
	assert.Equal(t, map[string]any{"title": "Rebuild the index", "state": "running", "message": ""}, data)

	fmt.Fprint(pw, "reading rows\r\n\n") // a CRLF line, then a blank one, which says nothing
	_, data = readTaskEvent(t, c)
	assert.Equal(t, "reading rows", data["message"])
	fmt.Fprintln(pw, `{"progress":0.5,"message":"half way"}`)
	_, data = readTaskEvent(t, c)
	assert.Equal(t, map[string]any{"title": "Rebuild the index", "state": "running", "progress": 0.5, "message": "half way"}, data)
	fmt.Fprintln(pw, `{"progress":7}`)
	_, data = readTaskEvent(t, c)
	assert.Equal(t, 1.0, data["progress"], "clamped to 1")
	require.NoError(t, pw.Close())

	last, data := readTaskEvent(t, c)
	assert.Equal(t, name, last)
	assert.Equal(t, "done", data["state"])
	assert.Equal(t, `200 {"code":"OK","id":"`+strings.TrimPrefix(name, "task.")+`","event":"`+name+`","state":"done"}`, <-answered)
}

// A producer whose connection breaks before the end of its body fails
// its task with "producer disconnected".
func TestTaskStreamProducerDisconnected(t *testing.T) {
	s := startServer(t, nil)
	c := s.subscribe("task.*")
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.listenURL, "http://"))
	require.NoError(t, err)
	fmt.Fprintf(conn, "POST /task HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\nTransfer-Encoding: chunked\r\n\r\n", testToken)
	line := "Nightly export\n"
	fmt.Fprintf(conn, "%x\r\n%s\r\n", len(line), line)
	_, data := readTaskEvent(t, c)
	assert.Equal(t, "running", data["state"])
	require.NoError(t, conn.Close()) // killed

	_, data = readTaskEvent(t, c)
	assert.Equal(t, map[string]any{"title": "Nightly export", "state": "failed", "message": "producer disconnected"}, data)
}

func TestTaskStreamErrors(t *testing.T) {
	s := startServer(t, nil)
	for _, tc := range []struct {
		name, method, auth, body string
		status                   int
		answer                   string
	}{
		{"empty", "POST", "Basic " + testToken, "", 400, `{"code":"INVALID_BODY"}`},
		{"no token", "POST", "", "t\n", 403, `{"code":"UNAUTHENTICATED"}`},
		{"GET", "GET", "Basic " + testToken, "", 405, `{"code":"METHOD_NOT_ALLOWED"}`},
		{"line too long", "POST", "Basic " + testToken, "t\n" + strings.Repeat("x", 64<<10+1) + "\n", 400, `{"code":"INVALID_BODY"}`},
		{"not UTF-8", "POST", "Basic " + testToken, "t\n\xff\n", 400, `{"code":"INVALID_BODY"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.do(tc.method, "/task", tc.auth, tc.body)
			assert.Equal(t, tc.status, status)
			assert.Equal(t, tc.answer, body)
		})
	}
	// A line may end the task itself.
	c := s.subscribe("task.*")
	status, body := s.do("POST", "/task", "Basic "+testToken, "t\n{\"state\":\"failed\",\"message\":\"exit 3\"}\nignored\n")
	assert.Equal(t, 200, status)
	assert.Contains(t, body, `"state":"failed"`)
	readTaskEvent(t, c)
	_, data := readTaskEvent(t, c)
	assert.Equal(t, map[string]any{"title": "t", "state": "failed", "message": "exit 3"}, data)
}
