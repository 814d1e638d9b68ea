package listen

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/auth"
)

const goodCreds = "Basic good-token-0123456789"

// fakeAuth accepts goodCreds, refuses other "Basic ..." credentials and
// empty ones as unauthenticated, and any other scheme as unrecognized. It
// records every call.
type fakeAuth struct {
	mu    sync.Mutex
	calls []authCall
}

type authCall struct{ creds, remote, via string }

func (a *fakeAuth) Authenticate(creds, remote, via string) (auth.Permissions, error) {
	a.mu.Lock()
	a.calls = append(a.calls, authCall{creds, remote, via})
	a.mu.Unlock()
	switch {
	case creds == goodCreds:
		return auth.FullAccess, nil
	case creds == "" || strings.HasPrefix(creds, "Basic "):
		return auth.Permissions{}, auth.ErrUnauthenticated
	default:
		return auth.Permissions{}, auth.ErrUnrecognizedScheme
	}
}

func (a *fakeAuth) Calls() []authCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]authCall(nil), a.calls...)
}

// fakePublisher records every event it is given (copying the data, whose
// bytes it checks exactly) and returns err.
type fakePublisher struct {
	err error

	mu     sync.Mutex
	events []published
}

type published struct{ name, data string }

// Publish records the event; its ID is "1-<number of events so far>".
func (p *fakePublisher) Publish(event string, data json.RawMessage) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, published{event, string(data)})
	if p.err != nil {
		return "", p.err
	}
	return "1-" + strconv.Itoa(len(p.events)), nil
}

func (p *fakePublisher) Events() []published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]published(nil), p.events...)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newTestServer serves NewHandler on a real port until the test ends.
func newTestServer(t *testing.T, a Authenticator, pub Publisher, maxBody int64) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewHandler(a, pub, Options{MaxBodyBytes: maxBody, Log: discardLogger()}))
	t.Cleanup(srv.Close)
	return srv
}

func TestHandler(t *testing.T) {
	const maxBody = 64
	okBody := `{"event":"a","data":{"x" : 1}}`
	atLimit := `{"event":"a","data":"` + strings.Repeat("x", maxBody-len(`{"event":"a","data":""}`)) + `"}`
	require.Len(t, atLimit, maxBody)

	tests := []struct {
		name       string
		method     string
		path       string
		creds      string
		body       string
		pubErr     error
		wantStatus int
		wantCode   Code
		wantMsg    string // what the message must contain; errors only
		wantAllow  string
		wantAuth   bool        // whether the authenticator is consulted
		wantPub    []published // nil: the publisher is not called
	}{
		{
			name: "ok", method: http.MethodPost, path: "/event", creds: goodCreds, body: okBody,
			wantStatus: 200, wantCode: CodeOK, wantAuth: true,
			wantPub: []published{{"a", `{"x" : 1}`}},
		},
		{
			name: "ok without data", method: http.MethodPost, path: "/event", creds: goodCreds, body: `{"event":"b"}`,
			wantStatus: 200, wantCode: CodeOK, wantAuth: true,
			wantPub: []published{{"b", `null`}},
		},
		{
			name: "ok at the body limit", method: http.MethodPost, path: "/event", creds: goodCreds, body: atLimit,
			wantStatus: 200, wantCode: CodeOK, wantAuth: true,
			wantPub: []published{{"a", atLimit[len(`{"event":"a","data":`) : len(atLimit)-1]}},
		},
		{
			name: "no credentials", method: http.MethodPost, path: "/event", body: okBody,
			wantStatus: 403, wantCode: CodeUnauthenticated, wantMsg: "no credentials: send the Authorization header as", wantAuth: true,
		},
		{
			name: "unknown token", method: http.MethodPost, path: "/event", creds: "Basic wrong-token-0123456789", body: okBody,
			wantStatus: 403, wantCode: CodeUnauthenticated, wantMsg: "the token is not accepted", wantAuth: true,
		},
		{
			name: "unrecognized scheme", method: http.MethodPost, path: "/event", creds: "Bearer x", body: okBody,
			wantStatus: 403, wantCode: CodeAuthUnrecognizedScheme, wantMsg: "Bearer JWTs are not enabled", wantAuth: true,
		},
		{
			name: "invalid body", method: http.MethodPost, path: "/event", creds: goodCreds, body: `{"event":1}`,
			wantStatus: 400, wantCode: CodeInvalidBody, wantMsg: "\"event\" is not a string; send {\"event\":\"<name>\",\"data\":<any JSON>}", wantAuth: true,
		},
		{
			name: "empty body", method: http.MethodPost, path: "/event", creds: goodCreds, body: ``,
			wantStatus: 400, wantCode: CodeInvalidBody, wantMsg: "the body is not a JSON object", wantAuth: true,
		},
		{
			name: "auth before body: bad body, no credentials", method: http.MethodPost, path: "/event", body: `not json`,
			wantStatus: 403, wantCode: CodeUnauthenticated, wantMsg: "no credentials", wantAuth: true,
		},
		{
			name: "auth before body: bad body, unknown scheme", method: http.MethodPost, path: "/event", creds: "Token x", body: `not json`,
			wantStatus: 403, wantCode: CodeAuthUnrecognizedScheme, wantMsg: "the scheme must be", wantAuth: true,
		},
		{
			name: "auth before size: large body, no credentials", method: http.MethodPost, path: "/event", body: atLimit + " ",
			wantStatus: 403, wantCode: CodeUnauthenticated, wantMsg: "no credentials", wantAuth: true,
		},
		{
			name: "payload too large", method: http.MethodPost, path: "/event", creds: goodCreds, body: atLimit + " ",
			wantStatus: 413, wantCode: CodePayloadTooLarge, wantMsg: "the body is over 64 bytes (MAX_BODY_BYTES)", wantAuth: true,
		},
		{
			name: "payload far too large", method: http.MethodPost, path: "/event", creds: goodCreds, body: strings.Repeat("x", 100*maxBody),
			wantStatus: 413, wantCode: CodePayloadTooLarge, wantMsg: "the body is over 64 bytes (MAX_BODY_BYTES)", wantAuth: true,
		},
		{
			name: "publisher unavailable", method: http.MethodPost, path: "/event", creds: goodCreds, body: okBody,
			pubErr:     errors.New("hub closed"),
			wantStatus: 503, wantCode: CodeUnavailable, wantMsg: "the server is shutting down", wantAuth: true,
			wantPub: []published{{"a", `{"x" : 1}`}},
		},
		{
			name: "GET", method: http.MethodGet, path: "/event", creds: goodCreds,
			wantStatus: 405, wantCode: CodeMethodNotAllowed, wantMsg: "publish with POST /event", wantAllow: "POST",
		},
		{
			name: "PUT", method: http.MethodPut, path: "/event", creds: goodCreds, body: okBody,
			wantStatus: 405, wantCode: CodeMethodNotAllowed, wantMsg: "publish with POST /event", wantAllow: "POST",
		},
		{
			name: "DELETE without credentials", method: http.MethodDelete, path: "/event",
			wantStatus: 405, wantCode: CodeMethodNotAllowed, wantMsg: "publish with POST /event", wantAllow: "POST",
		},
		{
			name: "unknown path", method: http.MethodPost, path: "/eventz", creds: goodCreds, body: okBody,
			wantStatus: 404, wantCode: CodeNotFound, wantMsg: "no such path",
		},
		{
			name: "trailing slash", method: http.MethodPost, path: "/event/", creds: goodCreds, body: okBody,
			wantStatus: 404, wantCode: CodeNotFound, wantMsg: "no such path",
		},
		{
			name: "root", method: http.MethodGet, path: "/",
			wantStatus: 404, wantCode: CodeNotFound, wantMsg: "no such path",
		},
		{
			name: "path is case-sensitive", method: http.MethodPost, path: "/EVENT", creds: goodCreds, body: okBody,
			wantStatus: 404, wantCode: CodeNotFound, wantMsg: "no such path",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &fakeAuth{}
			pub := &fakePublisher{err: tt.pubErr}
			srv := newTestServer(t, a, pub, maxBody)

			req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			require.NoError(t, err)
			if tt.creds != "" {
				req.Header.Set("Authorization", tt.creds)
			}
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)

			assert.Equal(t, tt.wantStatus, resp.StatusCode)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			if tt.wantCode == CodeOK {
				assert.Equal(t, `{"code":"OK","id":"1-1"}`+"\n", string(body))
			} else {
				var answer struct{ Code, Message string }
				require.NoError(t, json.Unmarshal(body, &answer), "%s", body)
				assert.Equal(t, string(tt.wantCode), answer.Code)
				assert.Contains(t, answer.Message, tt.wantMsg)
				assert.Equal(t, `{"code":"`+answer.Code+`","message":`, string(body[:len(answer.Code)+21]), "code first, then message")
			}
			assert.Equal(t, tt.wantAllow, resp.Header.Get("Allow"))
			assert.Equal(t, tt.wantPub, pub.Events())

			calls := a.Calls()
			if !tt.wantAuth {
				assert.Empty(t, calls)
				return
			}
			require.Len(t, calls, 1)
			assert.Equal(t, tt.creds, calls[0].creds)
			assert.Equal(t, "http", calls[0].via)
			host, _, err := net.SplitHostPort(calls[0].remote)
			require.NoError(t, err, "remote %q", calls[0].remote)
			assert.Equal(t, "127.0.0.1", host)
		})
	}
}

func TestHandlerHead(t *testing.T) {
	a, pub := &fakeAuth{}, &fakePublisher{}
	srv := newTestServer(t, a, pub, 64)
	resp, err := srv.Client().Head(srv.URL + "/event")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, "POST", resp.Header.Get("Allow"))
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Empty(t, a.Calls())
}

// TestHandlerSequence sends several events on one connection and checks
// that the publisher sees each, in order, with its exact bytes.
func TestHandlerSequence(t *testing.T) {
	a, pub := &fakeAuth{}, &fakePublisher{}
	srv := newTestServer(t, a, pub, 1<<10)
	bodies := []string{
		`{"event":"a","data":1e3}`,
		`{"event":"b","data":"\u00e9\n"}`,
		`{"event":"c","data":{ "k" : [ 1 , 2 ] }}`,
		`{"event":"é","data":-0.50}`,
	}
	for _, b := range bodies {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/event", strings.NewReader(b))
		require.NoError(t, err)
		req.Header.Set("Authorization", goodCreds)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	assert.Equal(t, []published{
		{"a", `1e3`},
		{"b", `"\u00e9\n"`},
		{"c", `{ "k" : [ 1 , 2 ] }`},
		{"é", `-0.50`},
	}, pub.Events())
}

// TestHandlerUncleanPath: unclean paths get a JSON code, not a redirect.
func TestHandlerUncleanPath(t *testing.T) {
	a, pub := &fakeAuth{}, &fakePublisher{}
	srv := newTestServer(t, a, pub, 64)
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, path := range []string{"//event", "/x/../event", "/./event"} {
		t.Run(path, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(`{"event":"a"}`))
			require.NoError(t, err)
			req.Header.Set("Authorization", goodCreds)
			resp, err := client.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.Regexp(t, `^\{"code":"[A-Z_]+","message":"[^"]+"\}\n$`, string(body))
		})
	}
}
