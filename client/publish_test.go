package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// listenServer is a fake listen server whose handler the test writes; it
// records every request's Idempotency-Key and body, and counts
// connections.
type listenServer struct {
	srv    *httptest.Server
	mu     sync.Mutex
	keys   []string
	bodies []string
	conns  atomic.Int32
}

func newListenServer(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) *listenServer {
	l := &listenServer{}
	l.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		l.mu.Lock()
		l.keys = append(l.keys, r.Header.Get("Idempotency-Key"))
		l.bodies = append(l.bodies, string(b))
		n := len(l.keys)
		l.mu.Unlock()
		h(n, w, r)
	}))
	l.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			l.conns.Add(1)
		}
	}
	l.srv.Start()
	t.Cleanup(l.srv.Close)
	return l
}

func (l *listenServer) client(t *testing.T, opts ...Option) *Client {
	c, err := New(l.srv.URL, append([]Option{WithToken("fake-token-0123456789")}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func answer(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body+"\n")
}

// Every answer code maps to its sentinel, and *Error carries the status,
// code and message; only 503 (and a proxy's 502/504) is retried.
func TestPublishErrors(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		status   int
		code     string
		sentinel error
	}{
		{403, "UNAUTHENTICATED", ErrUnauthenticated},
		{403, "AUTH_UNRECOGNIZED_SCHEME", ErrUnrecognizedScheme},
		{403, "FORBIDDEN", ErrForbidden},
		{400, "INVALID_BODY", ErrInvalidBody},
		{400, "EVENT_NAME_TOO_LONG", ErrNameTooLong},
		{400, "INVALID_IDEMPOTENCY_KEY", ErrInvalidIdempotencyKey},
		{413, "PAYLOAD_TOO_LARGE", ErrPayloadTooLarge},
		{404, "NOT_FOUND", ErrNotFound},
		{405, "METHOD_NOT_ALLOWED", ErrMethodNotAllowed},
		{426, "UPGRADE_REQUIRED", ErrUpgradeRequired},
		{503, "UNAVAILABLE", ErrUnavailable},
	} {
		t.Run(tc.code, func(t *testing.T) {
			l := newListenServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				answer(w, tc.status, `{"code":"`+tc.code+`","message":"what to do"}`)
			})
			_, err := l.client(t, WithPublishRetry(3, time.Millisecond, time.Millisecond)).Publish(t.Context(), "a", 1)
			require.ErrorIs(t, err, tc.sentinel)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, Error{Status: tc.status, Code: tc.code, Message: "what to do"}, *e)
			attempts := 1
			if tc.status == 503 {
				attempts = 3
				assert.Contains(t, err.Error(), "3 attempts")
			}
			assert.Len(t, l.keys, attempts)
		})
	}
	// An answer without a code (a proxy's page) keeps the status.
	l := newListenServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "<html>bad gateway</html>")
	})
	_, err := l.client(t, WithPublishRetry(2, time.Millisecond, time.Millisecond)).Publish(t.Context(), "a", 1)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 502, e.Status)
	assert.Equal(t, "Bad Gateway (HTTP 502): <html>bad gateway</html>", e.Error())
	assert.Len(t, l.keys, 2, "a proxy's 502 is retried")
}

// A 503 is retried after its Retry-After, with the same Idempotency-Key
// and body; the ID of the attempt that succeeds is returned.
func TestPublishRetriesUnavailableWithTheSameKey(t *testing.T) {
	noLeaks(t)
	l := newListenServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			answer(w, 503, `{"code":"UNAVAILABLE","message":"shutting down"}`)
			return
		}
		answer(w, 200, `{"code":"OK","id":"1-1"}`)
	})
	start := time.Now()
	id, err := l.client(t).Publish(t.Context(), `"quoted"`, map[string]int{"id": 1})
	require.NoError(t, err)
	assert.Equal(t, "1-1", id)
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "Retry-After was not honoured")
	require.Len(t, l.keys, 2)
	assert.Equal(t, l.keys[0], l.keys[1])
	assert.Len(t, l.keys[0], 32)
	assert.Equal(t, l.bodies[0], l.bodies[1])
	assert.Equal(t, `{"event":"\"quoted\"","data":{"id":1}}`, l.bodies[0])

	// Another call, another key.
	_, err = l.client(t).Publish(t.Context(), "a", nil)
	require.NoError(t, err)
	assert.NotEqual(t, l.keys[0], l.keys[2])
	assert.Equal(t, `{"event":"a","data":null}`, l.bodies[2])
}

// A connection cut before the answer is retried with the same key.
func TestPublishRetriesNetworkErrors(t *testing.T) {
	noLeaks(t)
	l := newListenServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n <= 2 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		answer(w, 200, `{"code":"OK","id":"1-7","duplicate":true}`)
	})
	id, err := l.client(t, WithPublishRetry(5, time.Millisecond, 10*time.Millisecond)).PublishRaw(t.Context(), "a", json.RawMessage(` [1, 2] `))
	require.NoError(t, err)
	assert.Equal(t, "1-7", id)
	require.Len(t, l.keys, 3)
	assert.Equal(t, []string{l.keys[0], l.keys[0], l.keys[0]}, l.keys)
	assert.Equal(t, `{"event":"a","data": [1, 2] }`, l.bodies[2], "raw data is sent as it is")
}

func TestPublishGivesUp(t *testing.T) {
	noLeaks(t)
	// Nothing listens: unreachable, within the attempts.
	c, err := New("http://127.0.0.1:1", WithPublishRetry(3, time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Publish(t.Context(), "a", 1)
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.Contains(t, err.Error(), "3 attempts")

	// Or within the context, with unlimited attempts.
	c2, err := New("http://127.0.0.1:1", WithPublishRetry(0, time.Millisecond, 5*time.Millisecond))
	require.NoError(t, err)
	defer c2.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = c2.Publish(ctx, "a", 1)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, ErrUnreachable, "the last attempt's error is kept")
}

// Data that is not one JSON value is refused before anything is sent: it
// could otherwise smuggle another "event" key into the body.
func TestPublishRawRefusesInvalidData(t *testing.T) {
	noLeaks(t)
	l := newListenServer(t, func(int, http.ResponseWriter, *http.Request) { t.Error("sent") })
	c := l.client(t)
	for _, data := range []string{`1,"event":"other"`, `{`, `1 2`} {
		_, err := c.PublishRaw(t.Context(), "a", json.RawMessage(data))
		assert.ErrorIs(t, err, ErrInvalidBody, data)
	}
	_, err := c.Publish(t.Context(), "a", func() {})
	assert.ErrorContains(t, err, "encoding data")
}

// Connections are kept alive and reused, by sequential and concurrent
// publishers.
func TestPublishReusesConnections(t *testing.T) {
	noLeaks(t)
	l := newListenServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		answer(w, 200, fmt.Sprintf(`{"code":"OK","id":"1-%d"}`, n))
	})
	c := l.client(t)
	for range 50 {
		_, err := c.Publish(t.Context(), "a", 1)
		require.NoError(t, err)
	}
	assert.Equal(t, int32(1), l.conns.Load(), "sequential publishes share one connection")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				_, err := c.Publish(t.Context(), "a", 1)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	// 200 publishes over a few connections: about one per publisher, a
	// few more when net/http dials for a request that an idle connection
	// then serves (the new one is kept for later).
	assert.LessOrEqual(t, l.conns.Load(), int32(24), "8 concurrent publishers made a connection for most publishes")
}

func TestBroadcastURL(t *testing.T) {
	for _, tc := range []struct{ listen, opt, want string }{
		{"http://localhost:8080", "", "ws://localhost:8081/"},
		{"localhost:8080", "", "ws://localhost:8081/"},
		{"https://events.example.com", "", "wss://events.example.com:8081/"},
		{"https://events.example.com/", "", "wss://events.example.com:8081/"},
		{"http://10.0.0.7:12000", "", "ws://10.0.0.7:12001/"},
		{"https://[::1]:11000/relay/", "", "wss://[::1]:11001/relay/"},
		{"http://localhost:8080", "https://events.example.com", "wss://events.example.com/"},
		{"http://localhost:8080", "ws://127.0.0.1:9/x", "ws://127.0.0.1:9/x"},
		{"http://localhost:8080", "127.0.0.1:9", "ws://127.0.0.1:9/"},
	} {
		var opts []Option
		if tc.opt != "" {
			opts = append(opts, WithBroadcastURL(tc.opt))
		}
		c, err := New(tc.listen, opts...)
		require.NoError(t, err, tc.listen)
		assert.Equal(t, tc.want, c.BroadcastURL(), "%s %s", tc.listen, tc.opt)
	}
	for _, bad := range []string{"", "ftp://x", "http://"} {
		_, err := New(bad)
		assert.Error(t, err, bad)
	}
	_, err := New("http://localhost:8080", WithBroadcastURL("ftp://x"))
	assert.Error(t, err)
	c, err := New("http://localhost:8080/base/")
	require.NoError(t, err)
	assert.Equal(t, "http://localhost:8080/base/event", c.eventURL)
}

// jwt makes an unsigned token with these claims: the client reads exp
// without verifying.
func jwt(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256"}`)) + "." + enc([]byte(claims)) + ".sig"
}

func TestJWTRefreshTiming(t *testing.T) {
	now := time.Now()
	exp, ok := jwtExpiry(jwt(fmt.Sprintf(`{"exp":%d}`, now.Add(time.Hour).Unix())))
	require.True(t, ok)
	assert.Equal(t, now.Add(time.Hour).Unix(), exp.Unix())
	for _, bad := range []string{"x", "a.b", "a.!!.c", jwt(`{}`), jwt(`{"exp":"soon"}`)} {
		_, ok := jwtExpiry(bad)
		assert.False(t, ok, bad)
	}

	// A quarter of the lifetime left, at most a minute.
	var c credentials
	c.set(jwt(fmt.Sprintf(`{"exp":%d}`, now.Add(time.Hour).Unix())), now)
	assert.InDelta(t, float64(time.Minute), float64(c.exp.Sub(c.refreshAt)), float64(time.Millisecond))
	c.set(jwt(fmt.Sprintf(`{"exp":%.3f}`, float64(now.Add(2*time.Second).UnixMilli())/1000)), now)
	assert.InDelta(t, float64(500*time.Millisecond), float64(c.exp.Sub(c.refreshAt)), float64(2*time.Millisecond))

	// header refreshes when due, once for concurrent callers, and keeps a
	// still-valid token when the refresh fails.
	var calls atomic.Int32
	fail := atomic.Bool{}
	c = credentials{scheme: "Bearer", refresh: func(context.Context) (string, error) {
		calls.Add(1)
		if fail.Load() {
			return "", io.ErrUnexpectedEOF
		}
		return jwt(fmt.Sprintf(`{"exp":%d,"n":%d}`, time.Now().Add(time.Hour).Unix(), calls.Load())), nil
	}}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			h, err := c.header(t.Context(), "")
			assert.NoError(t, err)
			assert.True(t, strings.HasPrefix(h, "Bearer "))
		})
	}
	wg.Wait()
	assert.Equal(t, int32(1), calls.Load())
	tok := c.token
	fail.Store(true)
	got, err := c.current(t.Context(), tok) // stale: must be replaced, and cannot
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Empty(t, got)
	c.refreshAt = time.Now().Add(-time.Second) // due, but still valid
	got, err = c.current(t.Context(), "")
	assert.NoError(t, err)
	assert.Equal(t, tok, got)
}
