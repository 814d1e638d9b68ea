package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const adminToken = "admin-token-0123456789abcdef"

func startAdminServer(t *testing.T) *server {
	s := startServer(t, map[string]string{"TOKENS_RELOAD_INTERVAL": "20ms"})
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+adminToken+" admin\n"))
	s.waitLog(`msg="tokens file reloaded"`)
	return s
}

func TestAdminEndpointsRefuseNonAdmins(t *testing.T) {
	s := startAdminServer(t)
	cases := []struct {
		name, method, path, auth string
		status                   int
		body                     string
	}{
		{"no token", "GET", "/admin/status", "", 403, `{"code":"UNAUTHENTICATED"}`},
		{"wrong token", "GET", "/admin/clients", "Basic wrong-token-0123456789", 403, `{"code":"UNAUTHENTICATED"}`},
		{"bearer", "GET", "/admin/clients", "Bearer " + adminToken, 403, `{"code":"AUTH_UNRECOGNIZED_SCHEME"}`},
		{"publisher token", "GET", "/admin/status", "Basic " + testToken, 403, `{"code":"FORBIDDEN"}`},
		{"publisher token, clients", "GET", "/admin/clients", "Basic " + testToken, 403, `{"code":"FORBIDDEN"}`},
		{"post", "POST", "/admin/status", "Basic " + adminToken, 405, `{"code":"METHOD_NOT_ALLOWED"}`},
		{"unknown", "GET", "/admin/tokens", "Basic " + adminToken, 404, `{"code":"NOT_FOUND"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.do(tc.method, tc.path, tc.auth, "")
			assert.Equal(t, tc.status, status)
			assert.Equal(t, tc.body, body)
		})
	}
}

func TestAdminStatusAndClients(t *testing.T) {
	s := startAdminServer(t)
	d := websocket.Dialer{}
	c, resp, err := d.Dial(s.wsURL, http.Header{"User-Agent": {"dashboard/1.0"}})
	require.NoError(t, err)
	resp.Body.Close()
	defer c.Close()
	require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Basic "+testToken, "b", "a")))
	s.publish("a", `1`)
	require.Equal(t, eventJSON("a", "1"), readEvent(t, c))
	other := s.subscribe("c")

	status, body := s.do("GET", "/admin/status", "Basic "+adminToken, "")
	require.Equal(t, 200, status, body)
	var st struct {
		Version       string    `json:"version"`
		Started       time.Time `json:"started"`
		UptimeSeconds int64     `json:"uptime_seconds"`
		Subscribers   int       `json:"subscribers"`
		Connections   uint64    `json:"connections_total"`
		Published     uint64    `json:"events_published"`
		Deliveries    uint64    `json:"deliveries"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	assert.NotEmpty(t, st.Version)
	assert.WithinDuration(t, time.Now(), st.Started, time.Minute)
	assert.Equal(t, 2, st.Subscribers)
	assert.Equal(t, uint64(2), st.Connections)
	assert.Equal(t, uint64(1), st.Published)
	assert.Equal(t, uint64(1), st.Deliveries)

	status, body = s.do("GET", "/admin/clients", "Basic "+adminToken, "")
	require.Equal(t, 200, status, body)
	assert.NotContains(t, body, testToken)
	assert.NotContains(t, body, adminToken)
	var list struct {
		Clients []struct {
			ID             uint64    `json:"id"`
			Remote         string    `json:"remote"`
			UserAgent      string    `json:"user_agent"`
			Transport      string    `json:"transport"`
			Subscriptions  []string  `json:"subscriptions"`
			MessagesSent   uint64    `json:"messages_sent"`
			QueueDepth     int       `json:"queue_depth"`
			ConnectedSince time.Time `json:"connected_since"`
		} `json:"clients"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list.Clients, 2)
	first, second := list.Clients[0], list.Clients[1]
	assert.Less(t, first.ID, second.ID)
	assert.Equal(t, c.LocalAddr().String(), first.Remote)
	assert.Equal(t, "dashboard/1.0", first.UserAgent)
	assert.Equal(t, "websocket", first.Transport)
	assert.Equal(t, []string{"a", "b"}, first.Subscriptions)
	assert.GreaterOrEqual(t, first.MessagesSent, uint64(2), "the init reply and the event")
	assert.Equal(t, 0, first.QueueDepth)
	assert.WithinDuration(t, time.Now(), first.ConnectedSince, time.Minute)
	assert.Equal(t, other.LocalAddr().String(), second.Remote)
	assert.Equal(t, []string{"c"}, second.Subscriptions)
}
