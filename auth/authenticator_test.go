package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeTokens accepts exactly the tokens it holds.
type fakeTokens map[string]bool

func (f fakeTokens) Lookup(token string) (Permissions, bool) { return FullAccess, f[token] }

const (
	goodToken   = "good-token-0123456789abcdef"
	secretToken = "SECRET-never-log-me-0123456789"
)

func TestAuthenticate(t *testing.T) {
	tests := []struct {
		name       string
		creds      string
		wantErr    error
		wantReason string // "" when nothing is logged
	}{
		{name: "accepted", creds: "Basic " + goodToken},
		{name: "accepted with spaces", creds: "Basic   " + goodToken + " "},
		{name: "unknown token", creds: "Basic " + secretToken, wantErr: ErrUnauthenticated, wantReason: "unauthenticated"},
		{name: "empty", creds: "", wantErr: ErrUnauthenticated, wantReason: "unauthenticated"},
		{name: "scheme without token", creds: "Basic ", wantErr: ErrUnauthenticated, wantReason: "unauthenticated"},
		{name: "other scheme", creds: "Bearer " + secretToken, wantErr: ErrUnrecognizedScheme, wantReason: `"unrecognized scheme"`},
		{name: "lower-case scheme", creds: "basic " + secretToken, wantErr: ErrUnrecognizedScheme, wantReason: `"unrecognized scheme"`},
		{name: "token without scheme", creds: secretToken, wantErr: ErrUnrecognizedScheme, wantReason: `"unrecognized scheme"`},
		{name: "good token as scheme", creds: goodToken, wantErr: ErrUnrecognizedScheme, wantReason: `"unrecognized scheme"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newTestLogger()
			a := NewAuthenticator(fakeTokens{goodToken: true}, log)
			_, err := a.Authenticate(tt.creds, "192.0.2.7:4321", "http")
			out := logs.String()
			if tt.wantErr == nil {
				require.NoError(t, err)
				assert.Empty(t, out, "an accepted credential is not logged")
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			assert.NotContains(t, err.Error(), secretToken)
			assert.Equal(t, 1, strings.Count(out, "authentication refused"), out)
			assert.Contains(t, out, "remote=192.0.2.7:4321")
			assert.Contains(t, out, "via=http")
			assert.Contains(t, out, "reason="+tt.wantReason)
			assert.NotContains(t, out, secretToken, "the credential must never be logged")
			assert.NotContains(t, out, goodToken, "the credential must never be logged")
		})
	}
}

func TestAuthenticateThrottlesLog(t *testing.T) {
	log, logs := newTestLogger()
	a := NewAuthenticator(fakeTokens{}, log)
	// A window far longer than the test, so that the count is exact.
	a.limit.window = time.Hour
	for range 25 {
		_, err := a.Authenticate("Basic "+secretToken, "192.0.2.7:1", "websocket")
		require.ErrorIs(t, err, ErrUnauthenticated)
	}
	out := logs.String()
	assert.Equal(t, 10, strings.Count(out, "authentication refused"))
	assert.NotContains(t, out, "suppressed", "the window has not ended")
	assert.NotContains(t, out, secretToken)
}

func TestRejectLimiterAllow(t *testing.T) {
	l := rejectLimiter{perWindow: 10, window: time.Second}
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	// The first window: 10 lines, then suppression.
	for i := range 10 {
		ok, suppressed := l.allow(at(time.Duration(i) * time.Millisecond))
		require.True(t, ok, "line %d", i)
		require.Zero(t, suppressed, "line %d", i)
	}
	for i := range 6 {
		ok, suppressed := l.allow(at(500*time.Millisecond + time.Duration(i)*time.Millisecond))
		require.False(t, ok, "suppressed line %d", i)
		require.Zero(t, suppressed, "the count is reported only when a new window begins")
	}
	ok, suppressed := l.allow(at(time.Second - time.Nanosecond))
	require.False(t, ok, "still the first window")
	require.Zero(t, suppressed)

	// The next window begins: the count of 7 is reported once.
	ok, suppressed = l.allow(at(time.Second))
	require.True(t, ok)
	require.Equal(t, 7, suppressed)
	ok, suppressed = l.allow(at(time.Second + time.Millisecond))
	require.True(t, ok)
	require.Zero(t, suppressed, "reported once, not again")

	// Fill this window (2 used so far) and suppress 3 more.
	for range 8 {
		ok, _ = l.allow(at(1500 * time.Millisecond))
		require.True(t, ok)
	}
	for range 3 {
		ok, _ = l.allow(at(1500 * time.Millisecond))
		require.False(t, ok)
	}
	// A window later than the next one still reports the count.
	ok, suppressed = l.allow(at(10 * time.Second))
	require.True(t, ok)
	require.Equal(t, 3, suppressed)

	// A quiet window reports nothing.
	ok, suppressed = l.allow(at(20 * time.Second))
	require.True(t, ok)
	require.Zero(t, suppressed)
}

func TestAuthenticateReportsSuppressed(t *testing.T) {
	log, logs := newTestLogger()
	a := NewAuthenticator(fakeTokens{}, log)
	// Fill a window that began long ago (synthetic time), then let the real
	// clock begin the next one.
	past := time.Now().Add(-time.Hour)
	for range 13 {
		a.limit.allow(past)
	}
	_, err := a.Authenticate("Basic "+secretToken, "192.0.2.7:1", "http")
	require.ErrorIs(t, err, ErrUnauthenticated)
	out := logs.String()
	assert.Contains(t, out, "authentication refusals suppressed")
	assert.Contains(t, out, "count=3")
	assert.Equal(t, 1, strings.Count(out, "authentication refused"))
	assert.NotContains(t, out, secretToken)
}
