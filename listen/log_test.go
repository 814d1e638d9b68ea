package listen

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/auth"
)

// onlyA is an authenticator whose every caller may publish event "a" only.
type onlyA struct{}

func (onlyA) Authenticate(creds, _, _ string) (auth.Permissions, error) {
	if creds != goodCreds {
		return auth.Permissions{}, auth.ErrUnauthenticated
	}
	return auth.Permissions{Publish: auth.Patterns{"a"}}, nil
}

// TestHandlerLogs checks what the handler writes to the caller's logger for
// each answer: one line per refusal that the client caused or a failure,
// none for a published event or a refused credential (the authenticator
// logs those), and never the credentials.
func TestHandlerLogs(t *testing.T) {
	const maxBody = 64
	tests := []struct {
		name  string
		creds string
		req   func() *http.Request
		pub   error
		want  map[string]any // the line's fields other than time and remote; nil: no line
	}{
		{
			name: "published", creds: goodCreds,
			req: post(`{"event":"a","data":1}`),
		},
		{
			name: "unauthenticated", creds: "Basic wrong-token-0123456789",
			req: post(`{"event":"a","data":1}`),
		},
		{
			name: "too large", creds: goodCreds,
			req:  post(`{"event":"a","data":"` + strings.Repeat("x", maxBody) + `"}`),
			want: map[string]any{"level": "INFO", "msg": "event refused", "code": "PAYLOAD_TOO_LARGE", "limit": float64(maxBody)},
		},
		{
			name: "invalid body", creds: goodCreds,
			req:  post(`{"event":1}`),
			want: map[string]any{"level": "INFO", "msg": "event refused", "code": "INVALID_BODY", "reason": "*"},
		},
		{
			name: "forbidden event", creds: goodCreds,
			req:  post(`{"event":"b","data":1}`),
			want: map[string]any{"level": "INFO", "msg": "event refused", "code": "FORBIDDEN", "event": "b"},
		},
		{
			name: "body read fails", creds: goodCreds,
			req: func() *http.Request {
				return httptest.NewRequest(http.MethodPost, "/event", iotest.ErrReader(errors.New("connection reset")))
			},
			want: map[string]any{"level": "INFO", "msg": "event body read failed", "err": "connection reset"},
		},
		{
			name: "publisher fails", creds: goodCreds, pub: errors.New("hub closed"),
			req:  post(`{"event":"a","data":1}`),
			want: map[string]any{"level": "WARN", "msg": "publish failed", "err": "hub closed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			h := NewHandler(onlyA{}, &fakePublisher{err: tt.pub}, Options{MaxBodyBytes: maxBody, Log: log})
			req := tt.req()
			req.RemoteAddr = "192.0.2.7:4242"
			req.Header.Set("Authorization", tt.creds)
			h.ServeHTTP(httptest.NewRecorder(), req)

			assert.NotContains(t, buf.String(), "token-0123456789", "credentials never reach the logs")
			if tt.want == nil {
				require.Empty(t, buf.String())
				return
			}
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			require.Len(t, lines, 1, "one line: %s", buf.String())
			var got map[string]any
			require.NoError(t, json.Unmarshal([]byte(lines[0]), &got))
			delete(got, "time")
			assert.Equal(t, "192.0.2.7:4242", got["remote"])
			delete(got, "remote")
			if tt.want["reason"] == "*" { // any reason, as long as there is one
				assert.NotEmpty(t, got["reason"])
				got["reason"] = "*"
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

// post returns a function making a POST /event request with body.
func post(body string) func() *http.Request {
	return func() *http.Request {
		return httptest.NewRequest(http.MethodPost, "/event", strings.NewReader(body))
	}
}

// TestHandlerWithoutLogger checks that Options.Log may be left nil: the
// lines are then dropped, not a nil logger called.
func TestHandlerWithoutLogger(t *testing.T) {
	h := NewHandler(onlyA{}, &fakePublisher{err: errors.New("hub closed")}, Options{MaxBodyBytes: 64})
	for _, body := range []string{`{"event":"a"}`, `{"event":"b"}`, `{`, strings.Repeat(" ", 65)} {
		req := httptest.NewRequest(http.MethodPost, "/event", strings.NewReader(body))
		req.Header.Set("Authorization", goodCreds)
		rec := httptest.NewRecorder()
		require.NotPanics(t, func() { h.ServeHTTP(rec, req) }, "%q", body)
		require.NotEqual(t, http.StatusOK, rec.Code)
	}
}

// TestEventNameBound: MaxEventNameBytes admits names of exactly that many
// bytes and refuses longer ones with EVENT_NAME_TOO_LONG, saying so in the
// log; 0 admits any length.
func TestEventNameBound(t *testing.T) {
	for _, tc := range []struct {
		limit, length int
		want          Code
	}{
		{8, 8, CodeOK},
		{8, 9, CodeNameTooLong},
		{8, 1, CodeOK},
		{0, 200, CodeOK},
	} {
		var buf bytes.Buffer
		log := slog.New(slog.NewJSONHandler(&buf, nil))
		pub := &fakePublisher{}
		h := NewHandler(fullAccess{}, pub, Options{MaxBodyBytes: 1 << 10, MaxEventNameBytes: tc.limit, Log: log})
		name := strings.Repeat("n", tc.length)
		req := httptest.NewRequest(http.MethodPost, "/event", strings.NewReader(`{"event":"`+name+`","data":1}`))
		req.Header.Set("Authorization", goodCreds)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		var answer struct{ Code Code }
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &answer))
		assert.Equal(t, tc.want, answer.Code, "limit %d, name of %d bytes", tc.limit, tc.length)
		assert.Equal(t, statusOf[tc.want], rec.Code)
		if tc.want == CodeOK {
			assert.Equal(t, []published{{name, "1"}}, pub.Events())
			assert.Empty(t, buf.String())
			continue
		}
		assert.Empty(t, pub.Events())
		var line map[string]any
		require.NoError(t, json.Unmarshal(buf.Bytes(), &line))
		assert.Equal(t, "event refused", line["msg"])
		assert.Equal(t, string(CodeNameTooLong), line["code"])
		assert.Equal(t, float64(tc.length), line["length"])
		assert.Equal(t, float64(tc.limit), line["limit"])
	}
}

// fullAccess is an authenticator whose every caller may do anything.
type fullAccess struct{}

func (fullAccess) Authenticate(string, string, string) (auth.Permissions, error) {
	return auth.FullAccess, nil
}

// TestLogName: a log line shows at most logNameBytes of an event name,
// cut on a character boundary, with "…" where it was cut.
func TestLogName(t *testing.T) {
	exact := strings.Repeat("n", logNameBytes)
	assert.Equal(t, exact, logName(exact))
	assert.Equal(t, exact+"…", logName(exact+"x"))
	assert.Equal(t, "", logName(""))
	split := strings.Repeat("n", logNameBytes-1) + "é"
	assert.Equal(t, strings.Repeat("n", logNameBytes-1)+"…", logName(split))
}
