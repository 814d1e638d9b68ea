package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// postKeyed posts an event with Idempotency-Key headers (one per key).
func (s *server) postKeyed(body string, keys ...string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.listenURL+"/event", strings.NewReader(body))
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Basic "+testToken)
	for _, k := range keys {
		req.Header.Add("Idempotency-Key", k)
	}
	return s.roundTrip(req)
}

// One instance honours Idempotency-Key: a retry with the key is answered
// with the first ID and "duplicate":true, and is delivered once.
func TestIdempotencyKeyOnOneInstance(t *testing.T) {
	s := startServer(t, nil)
	c := s.subscribe("a")
	status, first := s.postKeyed(`{"event":"a","data":1}`, "retry-me")
	require.Equal(t, http.StatusOK, status, first)
	id := okAnswer.FindStringSubmatch(first)
	require.NotNil(t, id, first)

	status, again := s.postKeyed(`{"event":"a","data":2}`, "retry-me")
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, `{"code":"OK","id":"`+id[1]+`","duplicate":true}`, again)

	s.publish("a", `3`) // no key: published
	assert.Equal(t, eventJSON("a", `1`), readEvent(t, c))
	assert.Equal(t, eventJSON("a", `3`), readEvent(t, c), "the retry was not delivered")
}

func TestIdempotencyKeyErrors(t *testing.T) {
	s := startServer(t, nil)
	for _, tc := range []struct {
		name string
		keys []string
	}{
		{"empty", []string{""}},
		{"too long", []string{strings.Repeat("k", 257)}},
		{"repeated", []string{"a", "b"}},
		{"space", []string{"a b"}},
		{"not ASCII", []string{"clé"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.postKeyed(`{"event":"a","data":1}`, tc.keys...)
			assert.Equal(t, http.StatusBadRequest, status)
			assert.Equal(t, `{"code":"INVALID_IDEMPOTENCY_KEY"}`, body)
		})
	}
	status, body := s.postKeyed(`{"event":"a","data":1}`, strings.Repeat("k", 256))
	assert.Equal(t, http.StatusOK, status, body)
}
