package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func TestConsoleIsServed(t *testing.T) {
	s := startServer(t, nil)
	resp, err := noRedirects.Get(s.listenURL + "/console")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMovedPermanently, resp.StatusCode)
	assert.Equal(t, "/console/", resp.Header.Get("Location"))

	resp, err = http.Get(s.listenURL + "/console/")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	assert.Contains(t, string(page), "<title>")

	status, body := s.get(s.listenURL + "/console/config.json")
	require.Equal(t, http.StatusOK, status)
	var cfg struct {
		BroadcastURL string `json:"broadcast_url"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &cfg), body)
	assert.Equal(t, s.wsURL, cfg.BroadcastURL, "the console's host, on the broadcast port")
}

func TestConsoleSettings(t *testing.T) {
	off := startServer(t, map[string]string{"CONSOLE": "off"})
	for _, path := range []string{"/console", "/console/", "/console/config.json"} {
		status, body := off.do(http.MethodGet, path, "", "")
		assert.Equal(t, http.StatusNotFound, status, path)
		assert.Equal(t, `{"code":"NOT_FOUND"}`, body, path)
	}
	proxied := startServer(t, map[string]string{"CONSOLE_BROADCAST_URL": "wss://events.example.com/"})
	_, body := proxied.get(proxied.listenURL + "/console/config.json")
	assert.JSONEq(t, `{"broadcast_url":"wss://events.example.com/"}`, body)
}

// The broadcast server trusts its own console's origin (the listen
// server's), whatever CORS_ALLOWED_ORIGINS says; other origins follow it.
func TestConsoleOriginIsTrusted(t *testing.T) {
	s := startServer(t, map[string]string{"CORS_ALLOWED_ORIGINS": "https://app.example.com"})
	listenPort := s.listenURL[strings.LastIndex(s.listenURL, ":")+1:]
	for origin, ok := range map[string]bool{
		"http://127.0.0.1:" + listenPort:    true,
		"https://app.example.com":           true,
		"http://evil.example:" + listenPort: false,
		"http://127.0.0.1:1":                false,
		"https://127.0.0.1:" + listenPort:   false,
	} {
		c, resp, err := websocket.DefaultDialer.Dial(s.wsURL, http.Header{"Origin": {origin}})
		if ok {
			require.NoError(t, err, origin)
			c.Close()
		} else {
			require.Error(t, err, origin)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, origin)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
}

func TestWhoami(t *testing.T) {
	s := startServer(t, map[string]string{"TOKENS_RELOAD_INTERVAL": "20ms"})
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+adminToken+" admin\nscoped-token-0123456789 subscribe=order.* publish=order.created\n"))
	s.waitLog(`msg="tokens file reloaded"`)
	for _, tc := range []struct {
		name, auth string
		status     int
		body       string
	}{
		{"full", "Basic " + testToken, 200, `{"publish":["*"],"subscribe":["*"],"enqueue":["*"],"work":["*"],"admin":false,"expires":null}`},
		{"admin only", "Basic " + adminToken, 200, `{"publish":[],"subscribe":[],"enqueue":[],"work":[],"admin":true,"expires":null}`},
		{"scoped", "Basic scoped-token-0123456789", 200, `{"publish":["order.created"],"subscribe":["order.*"],"enqueue":[],"work":[],"admin":false,"expires":null}`},
		{"bad", "Basic not-a-token-0123456789", 403, `{"code":"UNAUTHENTICATED"}`},
		{"none", "", 403, `{"code":"UNAUTHENTICATED"}`},
		{"bearer without JWT", "Bearer x.y.z", 403, `{"code":"AUTH_UNRECOGNIZED_SCHEME"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.do(http.MethodGet, "/whoami", tc.auth, "")
			assert.Equal(t, tc.status, status)
			if status != 200 {
				assert.Equal(t, tc.body, body)
				return
			}
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(body), &m))
			assert.Regexp(t, `^token:[0-9a-f]{8}$`, m["sub"], "a digest's prefix, not the token")
			delete(m, "sub")
			rest, _ := json.Marshal(m)
			assert.JSONEq(t, tc.body, string(rest))
			assert.NotContains(t, body, strings.TrimPrefix(tc.auth, "Basic "))
		})
	}
	status, body := s.do(http.MethodPost, "/whoami", "Basic "+testToken, "")
	assert.Equal(t, http.StatusMethodNotAllowed, status)
	assert.Equal(t, `{"code":"METHOD_NOT_ALLOWED"}`, body)
	_, raw := s.roundTripRaw(mustRequest(t, http.MethodGet, s.listenURL+"/whoami", "Basic not-a-token-0123456789"))
	assert.Contains(t, raw, "invalid token", "the console shows these words")
}

func mustRequest(t *testing.T, method, url, auth string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", auth)
	return req
}

// An admin closes a client: a WebSocket gets 4002 "closed by admin", an
// SSE stream the comment ": close closed by admin".
func TestAdminClosesAClient(t *testing.T) {
	s := startAdminServer(t)
	ws := s.subscribe("a")
	sse := s.openSSE("event=a", http.Header{"Authorization": {"Basic " + testToken}})
	clients := s.adminClients()
	require.Len(t, clients, 2)
	for _, c := range clients {
		status, body := s.do(http.MethodPost, "/admin/clients/"+strconv.FormatUint(c.ID, 10)+"/close", "Basic "+adminToken, "")
		assert.Equal(t, http.StatusOK, status)
		assert.Equal(t, `{"code":"OK"}`, body)
	}
	ce := readClose(t, ws)
	assert.Equal(t, 4002, ce.Code)
	assert.Equal(t, "closed by admin", ce.Text)
	rest, err := io.ReadAll(sse.br)
	require.NoError(t, err)
	assert.Contains(t, string(rest), ": close closed by admin\n")
	assert.Contains(t, s.logs.String(), `msg="client closed by admin"`)

	for _, tc := range []struct {
		method, path, auth string
		status             int
		body               string
	}{
		{"POST", "/admin/clients/999/close", "Basic " + adminToken, 404, `{"code":"NOT_FOUND"}`},
		{"POST", "/admin/clients/x/close", "Basic " + adminToken, 404, `{"code":"NOT_FOUND"}`},
		{"GET", "/admin/clients/1/close", "Basic " + adminToken, 405, `{"code":"METHOD_NOT_ALLOWED"}`},
		{"POST", "/admin/clients/1/close", "Basic " + testToken, 403, `{"code":"FORBIDDEN"}`},
	} {
		status, body := s.do(tc.method, tc.path, tc.auth, "")
		assert.Equal(t, tc.status, status, tc.path)
		assert.Equal(t, tc.body, body, tc.path)
	}
}

type adminClient struct {
	ID uint64 `json:"id"`
}

func (s *server) adminClients() []adminClient {
	s.t.Helper()
	status, body := s.do(http.MethodGet, "/admin/clients", "Basic "+adminToken, "")
	require.Equal(s.t, http.StatusOK, status, body)
	var list struct{ Clients []adminClient }
	require.NoError(s.t, json.Unmarshal([]byte(body), &list))
	return list.Clients
}
