package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const jwtSecret = "test-jwt-secret-0123456789abcdefghij"

// mint runs `eventsrv jwt` with args and returns the token.
func mint(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"eventsrv", "jwt"}, args...),
		mapEnv(map[string]string{"JWT_SECRET": jwtSecret}), &out, io.Discard)
	require.NoError(t, err)
	return strings.TrimSpace(out.String())
}

func TestBearerTokens(t *testing.T) {
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret})
	assert.Contains(t, s.logs.String(), "JWT_SECRET=(set)")
	assert.NotContains(t, s.logs.String(), jwtSecret)

	reader := mint(t, "-sub", "browser-1", "-subscribe", "job.*", "-ttl", "1m")
	writer := mint(t, "-sub", "backend", "-publish", "job.1", "-ttl", "1m")
	c := s.dial()
	require.Equal(t, `{"type":"init","code":"FORBIDDEN"}`, sendInit(t, c, initMsg("Bearer "+reader, "other")))
	require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Bearer "+reader, "job.1")))
	status, body := s.post("Bearer "+writer, `{"event":"job.1","data":"done"}`)
	require.Equal(t, 200, status, body)
	require.Equal(t, eventJSON("job.1", `"done"`), readEvent(t, c))

	status, body = s.post("Bearer "+reader, `{"event":"job.1"}`)
	assert.Equal(t, 403, status)
	assert.Equal(t, `{"code":"FORBIDDEN"}`, body)
	status, body = s.post("Bearer "+writer+"x", `{"event":"job.1"}`)
	assert.Equal(t, 403, status)
	assert.Equal(t, `{"code":"UNAUTHENTICATED"}`, body)
	// A Bearer token is no admin.
	status, _ = s.do("GET", "/admin/status", "Bearer "+writer, "")
	assert.Equal(t, 403, status)
	assert.NotContains(t, s.logs.String(), reader)
	assert.NotContains(t, s.logs.String(), writer)
}

func TestBearerWithoutJWTIsAnUnknownScheme(t *testing.T) {
	s := startServer(t, nil)
	status, body := s.post("Bearer whatever", `{"event":"a"}`)
	assert.Equal(t, 403, status)
	assert.Equal(t, `{"code":"AUTH_UNRECOGNIZED_SCHEME"}`, body)
}

func TestExpiredTokenClosesTheConnection(t *testing.T) {
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret})
	short := mint(t, "-subscribe", "*", "-ttl", "1s")
	c := s.dial()
	require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Bearer "+short, "a")))
	ce := readClose(t, c)
	assert.Equal(t, 4001, ce.Code)
	assert.Equal(t, "token expired", ce.Text)
	s.waitLog(`reason="token expired"`)
}

func TestJWTCommandAndSettings(t *testing.T) {
	err := run(context.Background(), []string{"eventsrv", "jwt", "-sub", "x"}, mapEnv(nil), io.Discard, io.Discard)
	assert.ErrorContains(t, err, "JWT_SECRET")
	err = run(context.Background(), []string{"eventsrv", "jwt", "-subscribe", "a*b"},
		mapEnv(map[string]string{"JWT_SECRET": jwtSecret}), io.Discard, io.Discard)
	assert.ErrorContains(t, err, "bad event pattern")
	err = run(context.Background(), []string{"eventsrv"}, mapEnv(map[string]string{"JWT_SECRET": "short"}), io.Discard, io.Discard)
	assert.ErrorContains(t, err, "JWT_SECRET")
	err = run(context.Background(), []string{"eventsrv"}, mapEnv(map[string]string{
		"JWT_SECRET": jwtSecret, "JWT_PUBLIC_KEY_FILE": "key.pem"}), io.Discard, io.Discard)
	assert.ErrorContains(t, err, "not both")
}

// JWT_AUDIENCE and JWT_ISSUER: a token for another audience or from
// another issuer is refused; eventsrv jwt, run with the same settings,
// mints one the server accepts.
func TestJWTAudienceAndIssuer(t *testing.T) {
	env := map[string]string{"JWT_SECRET": jwtSecret, "JWT_AUDIENCE": "eventsrv", "JWT_ISSUER": "https://auth.example"}
	s := startServer(t, env)
	mintWith := func(vars map[string]string) string {
		var out bytes.Buffer
		err := run(context.Background(), []string{"eventsrv", "jwt", "-publish", "a", "-ttl", "1m"}, mapEnv(vars), &out, io.Discard)
		require.NoError(t, err)
		return strings.TrimSpace(out.String())
	}
	status, body := s.post("Bearer "+mintWith(env), `{"event":"a"}`)
	assert.Equal(t, 200, status, body)
	for name, vars := range map[string]map[string]string{
		"no aud or iss": {"JWT_SECRET": jwtSecret},
		"other aud":     {"JWT_SECRET": jwtSecret, "JWT_AUDIENCE": "billing", "JWT_ISSUER": "https://auth.example"},
		"other iss":     {"JWT_SECRET": jwtSecret, "JWT_AUDIENCE": "eventsrv", "JWT_ISSUER": "https://evil.example"},
	} {
		status, body := s.post("Bearer "+mintWith(vars), `{"event":"a"}`)
		assert.Equal(t, 403, status, name)
		assert.Equal(t, `{"code":"UNAUTHENTICATED"}`, body, name)
	}
}
