package main

import (
	"bufio"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sseStream is an open /events response.
type sseStream struct {
	t    *testing.T
	resp *http.Response
	br   *bufio.Reader
	// lastID is the last "id:" field read, as EventSource keeps it.
	lastID string
}

// openSSE GETs /events with query and header; it requires 200.
func (s *server) openSSE(query string, header http.Header) *sseStream {
	s.t.Helper()
	resp := s.getSSE(query, header)
	require.Equal(s.t, 200, resp.StatusCode)
	st := &sseStream{t: s.t, resp: resp, br: bufio.NewReader(resp.Body)}
	s.t.Cleanup(func() { resp.Body.Close() })
	return st
}

func (s *server) getSSE(query string, header http.Header) *http.Response {
	s.t.Helper()
	base := "http" + strings.TrimPrefix(strings.TrimSuffix(s.wsURL, "/"), "ws")
	req, err := http.NewRequest(http.MethodGet, base+"/events?"+query, nil)
	require.NoError(s.t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	// A client of its own: the stream holds its connection.
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	require.NoError(s.t, err)
	return resp
}

// next returns the next event's name and data, skipping comments, and
// the comments seen before it.
func (st *sseStream) next() (event, data string, comments []string) {
	st.t.Helper()
	var dataLines []string
	// A stream that goes quiet fails the test instead of hanging it.
	timer := time.AfterFunc(10*time.Second, func() { st.resp.Body.Close() })
	defer timer.Stop()
	for {
		line, err := st.br.ReadString('\n')
		require.NoError(st.t, err, "stream ended")
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && (event != "" || dataLines != nil):
			return event, strings.Join(dataLines, "\n"), comments
		case line == "":
		case strings.HasPrefix(line, ":"):
			comments = append(comments, line)
		case strings.HasPrefix(line, "id: "):
			st.lastID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			dataLines = append(dataLines, strings.TrimPrefix(line, "data: "))
		}
	}
}

func TestSSEDeliversEvents(t *testing.T) {
	s := startServer(t, map[string]string{"PING_INTERVAL": "100ms"})
	st := s.openSSE("event=a&event=b", http.Header{"Authorization": {"Basic " + testToken}})
	assert.Equal(t, "text/event-stream", st.resp.Header.Get("Content-Type"))
	assert.Equal(t, "no", st.resp.Header.Get("X-Accel-Buffering"))
	assert.Equal(t, "no-cache", st.resp.Header.Get("Cache-Control"))

	s.publish("a", `{"x":1}`)
	s.publish("c", `2`)
	status, _ := s.post("Basic "+testToken, "{\"event\":\"b\",\"data\":{\n  \"y\": [1,\n 2]\n}}")
	require.Equal(t, 200, status)
	event, data, _ := st.next()
	assert.Equal(t, "a", event)
	assert.Equal(t, `{"x":1}`, data)
	event, data, _ = st.next()
	assert.Equal(t, "b", event)
	assert.Equal(t, "{\n  \"y\": [1,\n 2]\n}", data, "line breaks inside the JSON survive as data lines")

	s.publish("a", `3`)
	_, data, _ = st.next()
	assert.Equal(t, `3`, data)
	s.waitLog(`transport=sse`)
}

func TestSSEPingsAreComments(t *testing.T) {
	s := startServer(t, map[string]string{"PING_INTERVAL": "50ms"})
	st := s.openSSE("event=a", http.Header{"Authorization": {"Basic " + testToken}})
	// Publish only after some pings have surely been sent: wait for them
	// in the stream itself, after the stream's position.
	line, err := st.br.ReadString('\n')
	require.NoError(t, err)
	assert.Regexp(t, `^id: [1-9][0-9]*-0\n$`, line)
	line, err = st.br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "\n", line)
	line, err = st.br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, ": ping\n", line)
	s.publish("a", `1`)
	_, data, _ := st.next()
	assert.Equal(t, "1", data)
	assert.NotContains(t, s.logs.String(), "ping timeout", "SSE subscribers are not expected to answer pings")
}

func TestSSEAuthentication(t *testing.T) {
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret})
	jwtTok := mint(t, "-sub", "browser", "-subscribe", "job.*", "-ttl", "1m")
	cases := []struct {
		name, query string
		header      http.Header
		status      int
		body        string
	}{
		{"no credentials", "event=a", nil, 403, `{"code":"UNAUTHENTICATED"}`},
		{"basic token in the query is refused", "event=a&token=" + testToken, nil, 403, `{"code":"UNAUTHENTICATED"}`},
		{"jwt, out of scope", "event=a&token=" + jwtTok, nil, 403, `{"code":"FORBIDDEN"}`},
		{"no event", "token=" + jwtTok, nil, 400, `{"code":"INVALID_EVENTS_MISSING"}`},
		{"event with a line break", "event=" + url.QueryEscape("a\nb") + "&token=" + jwtTok, nil, 400, `{"code":"INVALID_EVENTS_MISSING"}`},
		{"unknown scheme", "event=a", http.Header{"Authorization": {"Digest x"}}, 403, `{"code":"AUTH_UNRECOGNIZED_SCHEME"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.getSSE(tc.query, tc.header)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.body, plainBody(t, body))
		})
	}
	st := s.openSSE("event=job.1&token="+url.QueryEscape(jwtTok), nil)
	s.publish("job.1", `"ok"`)
	event, data, _ := st.next()
	assert.Equal(t, "job.1", event)
	assert.Equal(t, `"ok"`, data)
	assert.NotContains(t, s.logs.String(), jwtTok, "query strings are never logged")
}

func TestSSEStreamEndsWhenTokenExpires(t *testing.T) {
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret})
	short := mint(t, "-subscribe", "*", "-ttl", "1s")
	st := s.openSSE("event=a&token="+short, nil)
	rest, err := io.ReadAll(st.br) // until the server ends the stream
	require.NoError(t, err)
	assert.Contains(t, string(rest), ": close token expired")
	s.waitLog(`reason="token expired"`)
}

func TestSSECORSAndTransportInMetrics(t *testing.T) {
	s := startServer(t, map[string]string{"CORS_ALLOWED_ORIGINS": appOrigin})
	st := s.openSSE("event=a", http.Header{"Authorization": {"Basic " + testToken}, "Origin": {appOrigin}})
	assert.Equal(t, appOrigin, st.resp.Header.Get("Access-Control-Allow-Origin"))
	resp := s.getSSE("event=a", http.Header{"Authorization": {"Basic " + testToken}, "Origin": {"https://evil.example.com"}})
	resp.Body.Close()
	assert.Equal(t, 403, resp.StatusCode)
	require.Eventually(t, func() bool {
		return s.scrape()[`eventsrv_subscribers{transport="sse"}`] == 1
	}, 10*time.Second, 20*time.Millisecond)
}
