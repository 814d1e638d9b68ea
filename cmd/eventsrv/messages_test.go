package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every error answer and refused reply carries a message for people that
// says what was wrong and what to do, and never any part of a token.
func TestErrorMessages(t *testing.T) {
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret, "TOKENS_RELOAD_INTERVAL": "20ms"})
	scoped := "scoped-token-0123456789abcdef"
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+scoped+" publish=orders.* subscribe=orders.*\n"))
	s.waitLog(`msg="tokens file reloaded"`)
	broadcastHTTP := "http" + strings.TrimPrefix(strings.TrimSuffix(s.wsURL, "/"), "ws")

	type answer struct{ Code, Message string }
	httpCases := []struct {
		name, method, url, auth, body string
		status                        int
		code, message                 string
	}{
		{"event missing", "POST", s.listenURL + "/event", "Basic " + testToken, `{"name":"a"}`,
			400, "INVALID_BODY", `"event" is missing`},
		{"forbidden names the event", "POST", s.listenURL + "/event", "Basic " + scoped, `{"event":"users.new"}`,
			403, "FORBIDDEN", `may not publish "users.new"`},
		{"no credentials", "POST", s.listenURL + "/event", "", `{"event":"a"}`,
			403, "UNAUTHENTICATED", `send the Authorization header as "Basic <token>"`},
		{"unknown token", "POST", s.listenURL + "/event", "Basic " + strings.Repeat("z", 20), `{"event":"a"}`,
			403, "UNAUTHENTICATED", "not in the tokens file"},
		{"no scheme", "POST", s.listenURL + "/event", testToken, `{"event":"a"}`,
			403, "AUTH_UNRECOGNIZED_SCHEME", `must be "Basic"`},
		{"POST to the broadcast port", "POST", broadcastHTTP + "/event", "Basic " + testToken, `{"event":"a"}`,
			426, "UPGRADE_REQUIRED", "publish with POST /event on the listen server"},
		{"SSE on the listen port", "GET", s.listenURL + "/events?event=a", "Basic " + testToken, ``,
			404, "NOT_FOUND", "Server-Sent Events are served by the broadcast server"},
		{"Basic token in ?token=", "GET", broadcastHTTP + "/events?event=a&token=" + testToken, "", ``,
			403, "UNAUTHENTICATED", "?token= takes a JWT only"},
		{"not an admin", "GET", s.listenURL + "/admin/status", "Basic " + testToken, ``,
			403, "FORBIDDEN", "not an admin"},
	}
	for _, tc := range httpCases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tc.url, strings.NewReader(tc.body))
			require.NoError(t, err)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			status, body := s.roundTripRaw(req)
			assert.Equal(t, tc.status, status)
			var a answer
			require.NoError(t, json.Unmarshal([]byte(body), &a), body)
			assert.Equal(t, tc.code, a.Code)
			assert.Contains(t, a.Message, tc.message)
			assert.NotContains(t, a.Message, testToken[:8], "a message holds part of a token")
		})
	}

	t.Run("WebSocket to the listen port", func(t *testing.T) {
		_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.listenURL, "http")+"/", nil)
		require.Error(t, err)
		require.NotNil(t, resp)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
		assert.Contains(t, string(body), "WebSocket subscribers connect to the broadcast server")
	})

	replyCases := []struct {
		name, msg, code, message string
	}{
		{"since not a string", `{"authentication":"Basic ` + testToken + `","events":["a"],"since":5}`,
			"INVALID_SYNTAX", `"since" must be a string`},
		{"forbidden names the event", `{"authentication":"Basic ` + scoped + `","events":["orders.1","users.1"]}`,
			"FORBIDDEN", `may not subscribe to "users.1"`},
		{"bad token", `{"authentication":"Basic ` + strings.Repeat("z", 20) + `","events":["a"]}`,
			"UNAUTHENTICATED", "not in the tokens file"},
		{"events missing", `{"authentication":"Basic ` + testToken + `"}`,
			"INVALID_EVENTS_MISSING", `"events" must be an array of event names`},
	}
	for _, tc := range replyCases {
		t.Run("init: "+tc.name, func(t *testing.T) {
			c := s.dial()
			require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(tc.msg)))
			var r struct{ Type, Code, Message string }
			raw := readRawText(t, c)
			require.NoError(t, json.Unmarshal([]byte(raw), &r), raw)
			assert.Equal(t, "init", r.Type)
			assert.Equal(t, tc.code, r.Code)
			assert.Contains(t, r.Message, tc.message)
			assert.NotContains(t, r.Message, testToken[:8])
		})
	}
}

// GET / on each server says what it serves and where the other one is.
func TestServersDescribeThemselves(t *testing.T) {
	s := startServer(t, nil)
	broadcastHTTP := "http" + strings.TrimPrefix(strings.TrimSuffix(s.wsURL, "/"), "ws")
	for url, want := range map[string][]string{
		s.listenURL + "/":   {"listen server", "POST /event", "broadcast server", "README"},
		broadcastHTTP + "/": {"broadcast server", "GET  /events", "listen server", "README"},
	} {
		resp, err := s.http.Get(url)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode, url)
		assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
		for _, w := range want {
			assert.Contains(t, string(body), w, url)
		}
	}
}

// Clients' own HTTP Basic (curl -u, requests' auth=, SetBasicAuth) is
// accepted, the token as the password or as the user.
func TestHTTPBasicAsClientsSendIt(t *testing.T) {
	s := startServer(t, nil)
	for _, userPass := range [][2]string{{"", testToken}, {testToken, ""}, {"publisher", testToken}} {
		req, err := http.NewRequest(http.MethodPost, s.listenURL+"/event", strings.NewReader(`{"event":"a"}`))
		require.NoError(t, err)
		req.SetBasicAuth(userPass[0], userPass[1])
		status, body := s.roundTrip(req)
		assert.Equal(t, 200, status, "%q: %s", userPass[0], body)
	}
	req, err := http.NewRequest(http.MethodPost, s.listenURL+"/event", strings.NewReader(`{"event":"a"}`))
	require.NoError(t, err)
	req.SetBasicAuth(testToken, "not-the-token")
	status, _ := s.roundTrip(req)
	assert.Equal(t, 403, status, "a user with a wrong password is not tried as the token")
}

// Without CORS_ALLOWED_ORIGINS, a page of another origin cannot read the
// answers; the server says so in its log, with the setting to use. A page
// of the server's own origin needs no CORS and is not mentioned.
func TestCORSHintWhenUnset(t *testing.T) {
	s := startServer(t, nil)
	broadcastHTTP := "http" + strings.TrimPrefix(strings.TrimSuffix(s.wsURL, "/"), "ws")
	own := "http://" + strings.TrimPrefix(broadcastHTTP, "http://")
	for _, origin := range []string{own, "http://localhost:8000"} {
		req, err := http.NewRequest(http.MethodGet, broadcastHTTP+"/events?event=a", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		_, _ = s.roundTripRaw(req) // 403 without credentials: the hint comes anyway
	}
	s.waitLog(`hint="set CORS_ALLOWED_ORIGINS=http://localhost:8000"`)
	assert.NotContains(t, s.logs.String(), "CORS_ALLOWED_ORIGINS="+own)
}
