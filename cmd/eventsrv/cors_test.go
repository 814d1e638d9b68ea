package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const appOrigin = "https://app.example.com"

func TestCORSForPublishing(t *testing.T) {
	s := startServer(t, map[string]string{"CORS_ALLOWED_ORIGINS": appOrigin + ", http://localhost:3000"})
	preflight := func(origin string) *http.Response {
		req, err := http.NewRequest(http.MethodOptions, s.listenURL+"/event", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := s.http.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	resp := preflight(appOrigin)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, appOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "POST", resp.Header.Get("Access-Control-Allow-Methods"))
	assert.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), "Authorization")
	assert.Contains(t, resp.Header.Values("Vary"), "Origin")

	resp = preflight("https://evil.example.com")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))

	post := func(origin string) *http.Response {
		req, err := http.NewRequest(http.MethodPost, s.listenURL+"/event", strings.NewReader(`{"event":"a"}`))
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Authorization", "Basic "+testToken)
		resp, err := s.http.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp = post(appOrigin)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, appOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	resp = post("https://evil.example.com")
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"), "a page elsewhere cannot read the answer")
}

func TestCORSForWebSockets(t *testing.T) {
	s := startServer(t, map[string]string{"CORS_ALLOWED_ORIGINS": appOrigin})
	dial := func(origin string) (*websocket.Conn, *http.Response, error) {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		return websocket.DefaultDialer.Dial(s.wsURL, h)
	}
	_, resp, err := dial("https://evil.example.com")
	require.Error(t, err)
	require.NotNil(t, resp)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, `{"code":"FORBIDDEN_ORIGIN"}`, plainBody(t, body))
	for _, origin := range []string{appOrigin, ""} {
		c, resp, err := dial(origin)
		require.NoError(t, err, "origin %q", origin)
		resp.Body.Close()
		require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Basic "+testToken, "a")))
		c.Close()
	}
}

func TestNoCORSByDefault(t *testing.T) {
	s := startServer(t, nil)
	c, resp, err := websocket.DefaultDialer.Dial(s.wsURL, http.Header{"Origin": {"https://anywhere.example"}})
	require.NoError(t, err, "without CORS_ALLOWED_ORIGINS any origin may connect, as before")
	resp.Body.Close()
	c.Close()
	req, err := http.NewRequest(http.MethodPost, s.listenURL+"/event", strings.NewReader(`{"event":"a"}`))
	require.NoError(t, err)
	req.Header.Set("Origin", appOrigin)
	req.Header.Set("Authorization", "Basic "+testToken)
	resp, err = s.http.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))

	err = run(context.Background(), []string{"eventsrv"}, mapEnv(map[string]string{"CORS_ALLOWED_ORIGINS": "app.example.com"}),
		io.Discard, io.Discard)
	assert.ErrorContains(t, err, "CORS_ALLOWED_ORIGINS")
}
