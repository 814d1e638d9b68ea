package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain serves the reference server when the -versus driver starts this
// test binary as it (serveEnv), as it starts the real tool.
func TestMain(m *testing.M) {
	if mode := os.Getenv(serveEnv); mode != "" {
		os.Exit(serve(mode, os.Getenv, os.Stderr))
	}
	os.Exit(m.Run())
}

// minimalUnderTest is the reference server in this process, for tests of
// its protocol; the -versus tests run it as a process of its own.
type minimalUnderTest struct {
	m         *minimal
	listen    *httptest.Server
	broadcast *httptest.Server
}

func startMinimal(t *testing.T) *minimalUnderTest {
	t.Helper()
	m := newMinimal(testToken)
	s := &minimalUnderTest{
		m:         m,
		listen:    httptest.NewServer(m.listenHandler()),
		broadcast: httptest.NewServer(m.broadcastHandler()),
	}
	t.Cleanup(func() {
		s.listen.Close()
		m.closeAll()
		s.broadcast.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.wait(ctx)
		require.NoError(t, ctx.Err(), "every connection ends after closeAll")
	})
	return s
}

// dial opens a WebSocket to the server's broadcast side.
func (s *minimalUnderTest) dial(t *testing.T) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(wsURL(s.broadcast), nil)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// post sends body to path with the test token and returns the status and
// answer.
func (s *minimalUnderTest) post(t *testing.T, path, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.listen.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	return resp.StatusCode, string(raw)
}

// readText reads one text message within a few seconds.
func readText(t *testing.T, conn *websocket.Conn) string {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	kind, msg, err := conn.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, websocket.TextMessage, kind)
	return string(msg)
}

// send writes one text message.
func send(t *testing.T, conn *websocket.Conn, msg string) {
	t.Helper()
	require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(msg)))
}

func TestMinimalInit(t *testing.T) {
	s := startMinimal(t)
	conn := s.dial(t)
	send(t, conn, `{"authentication":"Basic wrong","events":["bench"]}`)
	assert.Equal(t, `{"type":"init","code":"UNAUTHENTICATED"}`, readText(t, conn))
	send(t, conn, `{"authentication":"Basic `+testToken+`"}`)
	assert.Equal(t, `{"type":"init","code":"INVALID_EVENTS_MISSING"}`, readText(t, conn))
	send(t, conn, `not json`)
	assert.Equal(t, `{"type":"init","code":"INVALID_SYNTAX"}`, readText(t, conn))
	send(t, conn, `{"type":"subscribe","events":["x"]}`)
	assert.Equal(t, `{"type":"error","code":"INVALID_TYPE"}`, readText(t, conn))
	send(t, conn, `{"authentication":"Basic `+testToken+`","events":["bench"]}`)
	assert.Equal(t, `{"type":"init","code":"OK"}`, readText(t, conn), "byte for byte eventsrv's answer")
}

func TestMinimalFanOut(t *testing.T) {
	s := startMinimal(t)
	bench, other := s.dial(t), s.dial(t)
	send(t, bench, `{"authentication":"Basic `+testToken+`","events":["bench","a<b"]}`)
	send(t, other, `{"authentication":"Basic `+testToken+`","events":["other"]}`)
	require.Equal(t, `{"type":"init","code":"OK"}`, readText(t, bench))
	require.Equal(t, `{"type":"init","code":"OK"}`, readText(t, other))

	// data is relayed as sent, spaces and escapes included.
	const data = `{"a": 1 , "s":"<&>\u00e9"}`
	status, answer := s.post(t, "/event", "Basic "+testToken, `{"event":"bench","data":`+data+`}`)
	require.Equal(t, http.StatusOK, status, answer)
	var ok struct{ Code, ID string }
	require.NoError(t, json.Unmarshal([]byte(answer), &ok))
	assert.Regexp(t, `^\{"code":"OK","id":"\d+-1"\}\n$`, answer, "eventsrv's answer, with a final newline")
	assert.Equal(t, `{"type":"event","id":"`+ok.ID+`","event":"bench","data":`+data+`}`, readText(t, bench))

	// A batch fans out in array order; absent data is null; a name is not
	// HTML-escaped.
	status, answer = s.post(t, "/events", "Basic "+testToken,
		`[{"event":"bench","data":1},{"event":"other","data":[2]},{"event":"a<b"}]`)
	require.Equal(t, http.StatusOK, status, answer)
	var batch struct {
		Code string
		IDs  []string
	}
	require.NoError(t, json.Unmarshal([]byte(answer), &batch))
	require.Len(t, batch.IDs, 3)
	assert.Equal(t, "OK", batch.Code)
	assert.Equal(t, `{"type":"event","id":"`+batch.IDs[0]+`","event":"bench","data":1}`, readText(t, bench))
	assert.Equal(t, `{"type":"event","id":"`+batch.IDs[2]+`","event":"a<b","data":null}`, readText(t, bench))
	// The other subscriber got only its own name's event: the first frame
	// after its OK is the batch's second event.
	assert.Equal(t, `{"type":"event","id":"`+batch.IDs[1]+`","event":"other","data":[2]}`, readText(t, other))

	for _, tc := range []struct {
		path, auth, body string
		status           int
		code             string
	}{
		{"/event", "", `{"event":"bench"}`, http.StatusForbidden, "UNAUTHENTICATED"},
		{"/event", "Basic wrong", `{"event":"bench"}`, http.StatusForbidden, "UNAUTHENTICATED"},
		{"/event", "Basic " + testToken, `{"data":1}`, http.StatusBadRequest, "INVALID_BODY"},
		{"/event", "Basic " + testToken, `{"event":""}`, http.StatusBadRequest, "INVALID_BODY"},
		{"/event", "Basic " + testToken, `nope`, http.StatusBadRequest, "INVALID_BODY"},
		{"/events", "Basic " + testToken, `[]`, http.StatusBadRequest, "INVALID_BODY"},
		{"/events", "Basic " + testToken, `[{"event":"bench"},{"data":1}]`, http.StatusBadRequest, "INVALID_BODY"},
		{"/events", "Basic " + testToken, `{"event":"bench"}`, http.StatusBadRequest, "INVALID_BODY"},
	} {
		status, answer := s.post(t, tc.path, tc.auth, tc.body)
		assert.Equal(t, tc.status, status, "%s %s", tc.path, tc.body)
		assert.Equal(t, `{"code":"`+tc.code+`"}`+"\n", answer, "%s %s", tc.path, tc.body)
	}
	// A refused batch published nothing: the next frame is a new event.
	status, answer = s.post(t, "/event", "Basic "+testToken, `{"event":"bench","data":"last"}`)
	require.Equal(t, http.StatusOK, status, answer)
	assert.Contains(t, readText(t, bench), `"data":"last"}`)
}

func TestMinimalCoalescesQueuedFrames(t *testing.T) {
	s := startMinimal(t)
	conn := s.dial(t)
	send(t, conn, `{"authentication":"Basic `+testToken+`","events":["bench"]}`)
	require.Equal(t, `{"type":"init","code":"OK"}`, readText(t, conn))
	s.m.mu.Lock()
	require.Len(t, s.m.clients, 1)
	var c *minimalClient
	for c = range s.m.clients {
	}
	s.m.mu.Unlock()

	// Holding the buffered connection's lock stops the writer at its
	// first frame, so that the other 49 are queued behind it.
	writes := c.out.writes.Load()
	c.out.mu.Lock()
	events := make([]minimalEvent, 50)
	for i := range events {
		name := "bench"
		events[i] = minimalEvent{Event: &name, Data: json.RawMessage(fmt.Sprint(i))}
	}
	ids := s.m.publish(events)
	c.out.mu.Unlock()
	for i := range events {
		assert.Equal(t, fmt.Sprintf(`{"type":"event","id":"%s","event":"bench","data":%d}`, ids[i], i), readText(t, conn))
	}
	assert.Equal(t, writes+1, c.out.writes.Load(), "50 queued frames leave in one write")
}

func TestMinimalSlowConsumer(t *testing.T) {
	s := startMinimal(t)
	conn := s.dial(t)
	send(t, conn, `{"authentication":"Basic `+testToken+`","events":["bench"]}`)
	require.Equal(t, `{"type":"init","code":"OK"}`, readText(t, conn))
	s.m.mu.Lock()
	var c *minimalClient
	for c = range s.m.clients {
	}
	s.m.mu.Unlock()

	// With the writer held, one frame more than the queue holds (plus the
	// one the writer took) closes the subscriber.
	c.out.mu.Lock()
	name := "bench"
	event := []minimalEvent{{Event: &name, Data: json.RawMessage("1")}}
	s.m.publish(event)
	require.Eventually(t, func() bool { return len(c.send) == 0 }, 5*time.Second, time.Millisecond,
		"the writer takes the first frame and waits to write it")
	for range minimalQueue + 1 {
		s.m.publish(event)
	}
	s.m.mu.Lock()
	assert.Empty(t, s.m.clients, "dropped, never waited for")
	s.m.mu.Unlock()
	c.out.mu.Unlock()
	received := 0
	for {
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, _, err := conn.ReadMessage()
		if err != nil {
			require.True(t, websocket.IsCloseError(err, websocket.ClosePolicyViolation), "closed with 1008: %v", err)
			assert.Contains(t, err.Error(), "slow consumer")
			break
		}
		received++
	}
	assert.Equal(t, minimalQueue+1, received, "what was queued is sent before the close")
}

func TestServeRefusesBadSetup(t *testing.T) {
	env := map[string]string{"BIND_ADDRESS": "127.0.0.1", "LISTEN_PORT": "0", "BROADCAST_PORT": "0", "TOKENS_FILE": t.TempDir() + "/missing"}
	getenv := func(k string) string { return env[k] }
	var stderr bytes.Buffer
	assert.Equal(t, 2, serve("other", getenv, &stderr))
	assert.Contains(t, stderr.String(), `the only server is "minimal"`)

	stderr.Reset()
	assert.Equal(t, 1, serve(versusMinimal, getenv, &stderr))
	assert.Regexp(t, regexp.MustCompile(`^minimal: TOKENS_FILE: .*no such file`), stderr.String())
}
