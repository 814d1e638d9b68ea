package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPublishCodes(t *testing.T) {
	s := startServer(t, map[string]string{"MAX_BODY_BYTES": "1024", "QUEUE_MAX_BYTES": "65536"})
	good := "Basic " + testToken
	cases := []struct {
		name, method, path, auth, body string
		status                         int
		want                           string
	}{
		{"ok", "POST", "/event", good, `{"event":"a","data":{"x":1}}`, 200, `{"code":"OK","id":"ID"}`},
		{"ok without data", "POST", "/event", good, `{"event":"a"}`, 200, `{"code":"OK","id":"ID"}`},
		{"no header", "POST", "/event", "", `{"event":"a"}`, 403, `{"code":"UNAUTHENTICATED"}`},
		{"scheme only", "POST", "/event", "Basic", `{"event":"a"}`, 403, `{"code":"UNAUTHENTICATED"}`},
		{"empty token", "POST", "/event", "Basic    ", `{"event":"a"}`, 403, `{"code":"UNAUTHENTICATED"}`},
		{"unknown token", "POST", "/event", "Basic nottherighttoken-0123456789", `{"event":"a"}`, 403, `{"code":"UNAUTHENTICATED"}`},
		{"short token", "POST", "/event", "Basic test-token", `{"event":"a"}`, 403, `{"code":"UNAUTHENTICATED"}`},
		{"token prefix", "POST", "/event", "Basic " + testToken[:20], `{"event":"a"}`, 403, `{"code":"UNAUTHENTICATED"}`},
		{"bearer", "POST", "/event", "Bearer " + testToken, `{"event":"a"}`, 403, `{"code":"AUTH_UNRECOGNIZED_SCHEME"}`},
		{"lower-case scheme", "POST", "/event", "basic " + testToken, `{"event":"a"}`, 403, `{"code":"AUTH_UNRECOGNIZED_SCHEME"}`},
		{"no scheme", "POST", "/event", testToken, `{"event":"a"}`, 403, `{"code":"AUTH_UNRECOGNIZED_SCHEME"}`},
		{"auth before body", "POST", "/event", "", `not json`, 403, `{"code":"UNAUTHENTICATED"}`},
		{"not json", "POST", "/event", good, `not json`, 400, `{"code":"INVALID_BODY"}`},
		{"empty body", "POST", "/event", good, ``, 400, `{"code":"INVALID_BODY"}`},
		{"array", "POST", "/event", good, `[]`, 400, `{"code":"INVALID_BODY"}`},
		{"null", "POST", "/event", good, `null`, 400, `{"code":"INVALID_BODY"}`},
		{"string", "POST", "/event", good, `"event"`, 400, `{"code":"INVALID_BODY"}`},
		{"no event", "POST", "/event", good, `{"data":1}`, 400, `{"code":"INVALID_BODY"}`},
		{"event not string", "POST", "/event", good, `{"event":1}`, 400, `{"code":"INVALID_BODY"}`},
		{"event null", "POST", "/event", good, `{"event":null}`, 400, `{"code":"INVALID_BODY"}`},
		{"event empty", "POST", "/event", good, `{"event":""}`, 400, `{"code":"INVALID_BODY"}`},
		{"key case", "POST", "/event", good, `{"EVENT":"a"}`, 400, `{"code":"INVALID_BODY"}`},
		{"trailing garbage", "POST", "/event", good, `{"event":"a"} x`, 400, `{"code":"INVALID_BODY"}`},
		{"invalid utf-8", "POST", "/event", good, "{\"event\":\"a\xff\"}", 400, `{"code":"INVALID_BODY"}`},
		{"too large", "POST", "/event", good, `{"event":"a","data":"` + strings.Repeat("x", 1100) + `"}`, 413, `{"code":"PAYLOAD_TOO_LARGE"}`},
		{"get", "GET", "/event", good, ``, 405, `{"code":"METHOD_NOT_ALLOWED"}`},
		{"put", "PUT", "/event", good, `{"event":"a"}`, 405, `{"code":"METHOD_NOT_ALLOWED"}`},
		{"unknown path", "POST", "/eventz", good, `{"event":"a"}`, 404, `{"code":"NOT_FOUND"}`},
		{"healthz", "GET", "/healthz", "", ``, 200, `{"status":"ok"}`},
		{"healthz post", "POST", "/healthz", "", ``, 405, `{"code":"METHOD_NOT_ALLOWED"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, s.listenURL+tc.path, strings.NewReader(tc.body))
			require.NoError(t, err)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := s.http.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.want, anyID(plainBody(t, body)))
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			if tc.status == 405 {
				assert.NotEmpty(t, resp.Header.Get("Allow"))
			}
		})
	}
	if !t.Failed() {
		assert.Contains(t, s.logs.String(), `msg="authentication refused"`)
	}
}

func TestBroadcastHealthAndPlainHTTP(t *testing.T) {
	s := startServer(t, nil)
	base := "http" + strings.TrimPrefix(strings.TrimSuffix(s.wsURL, "/"), "ws")
	for path, want := range map[string]struct {
		status int
		body   string
	}{
		"/healthz": {200, `{"status":"ok"}`},
		"/any":     {426, `{"code":"UPGRADE_REQUIRED"}`},
	} {
		resp, err := s.http.Get(base + path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, want.status, resp.StatusCode, path)
		assert.Equal(t, want.body, plainBody(t, body), path)
	}
}
