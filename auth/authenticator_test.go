package auth

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/internal/logthrottle"
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
	a.limit = logthrottle.New(10, time.Hour)
	for range 25 {
		_, err := a.Authenticate("Basic "+secretToken, "192.0.2.7:1", "websocket")
		require.ErrorIs(t, err, ErrUnauthenticated)
	}
	out := logs.String()
	assert.Equal(t, 10, strings.Count(out, "authentication refused"))
	assert.NotContains(t, out, "suppressed", "the window has not ended")
	assert.NotContains(t, out, secretToken)
}

func TestAuthenticateReportsSuppressed(t *testing.T) {
	log, logs := newTestLogger()
	a := NewAuthenticator(fakeTokens{}, log)
	// Fill a window that began long ago (synthetic time), then let the real
	// clock begin the next one.
	past := time.Now().Add(-time.Hour)
	for range 13 {
		a.limit.Allow(past)
	}
	_, err := a.Authenticate("Basic "+secretToken, "192.0.2.7:1", "http")
	require.ErrorIs(t, err, ErrUnauthenticated)
	out := logs.String()
	assert.Contains(t, out, "authentication refusals suppressed")
	assert.Contains(t, out, "count=3")
	assert.Equal(t, 1, strings.Count(out, "authentication refused"))
	assert.NotContains(t, out, secretToken)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestAuthenticateBasicForms: a Basic token is accepted bare, as the old
// service did, and as RFC 7617's base64(user:password) that HTTP clients
// send, with the token as the password or as a user without password.
func TestAuthenticateBasicForms(t *testing.T) {
	// rawB64 is a token of the file that is itself valid base64 of
	// "someone:<tokC>": the bare form wins, with its own permissions.
	rawB64 := b64("someone:" + tokC)
	// notInFile is valid base64 of "x:<tokB>" but is not a token itself.
	notInFile := b64("x:" + tokB)
	set, ignored, err := ParseTokens(strings.NewReader(
		tokB + " publish=b\n" +
			tokC + " publish=c\n" +
			tok16 + " publish=16\n" +
			rawB64 + " publish=raw\n" +
			"with:colon-0123456789 publish=colon\n"))
	require.NoError(t, err)
	require.Empty(t, ignored)

	tests := []struct {
		name  string
		creds string
		want  string // the event the accepted token may publish; "" refused
	}{
		{"bare token", "Basic " + tokB, "b"},
		{"bare token, minimum length", "Basic " + tok16, "16"},
		{"token as password", "Basic " + b64("user:"+tokB), "b"},
		{"token as password, empty user", "Basic " + b64(":"+tokB), "b"},
		{"token as user, empty password (curl -u TOKEN:)", "Basic " + b64(tokB+":"), "b"},
		{"token as password with a colon in it", "Basic " + b64("u:with:colon-0123456789"), "colon"},
		{"padded base64 of a 16-character token", "Basic " + b64(tok16+":"), "16"},
		{"extra spaces around the base64", "Basic   " + b64(":"+tokC) + " ", "c"},
		// Ambiguous: the bare form is tried first, so a file token that is
		// valid base64 of user:password keeps its own permissions.
		{"bare token that is base64 of user:token", "Basic " + rawB64, "raw"},
		// A string that is no token, but base64 of "x:<tokB>": the client
		// sent tokB as the password.
		{"base64 of user:token, not a token itself", "Basic " + notInFile, "b"},

		{"token as user with a non-empty password", "Basic " + b64(tokB+":x"), ""},
		{"token as user with a wrong token as password", "Basic " + b64(tokB+":"+secretToken), ""},
		{"wrong token as user, no password", "Basic " + b64(secretToken+":"), ""},
		{"base64 without a colon", "Basic " + b64(tokB), ""},
		{"empty user and password", "Basic " + b64(":"), ""},
		{"two colons, token in the middle", "Basic " + b64("u:"+tokB+":"), ""},
		{"padded base64, as sent", "Basic " + b64("u:"+tokB), "b"},
		{"unpadded base64", "Basic " + strings.TrimRight(b64("u:"+tokB), "="), ""},
		{"standard base64 of ~~~:token", "Basic " + b64("~~~:"+tokB), "b"},
		{"URL-safe base64", "Basic " + base64.URLEncoding.EncodeToString([]byte("~~~:"+tokB)), ""},
		{"base64 of a short token", "Basic " + b64(":"+tok15), ""},
		{"base64 with a space in the password", "Basic " + b64(": "+tokB), ""},
		{"nested base64", "Basic " + b64(":"+b64(":"+tokB)), ""},
		{"lower-case scheme with standard form", "basic " + b64(":"+tokB), ""},
		{"Bearer is not read as Basic", "Bearer " + b64(":"+tokB), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newTestLogger()
			a := NewAuthenticator(set, log)
			perms, err := a.Authenticate(tt.creds, "192.0.2.7:1", "http")
			if tt.want == "" {
				require.Error(t, err)
				out := logs.String()
				assert.Contains(t, out, "authentication refused")
				for _, secret := range []string{tokB, tokC, tok16, tok15, secretToken, strings.TrimPrefix(tt.creds, "Basic ")} {
					assert.NotContains(t, out, secret, "the log must never hold a credential")
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, Patterns{tt.want}, perms.Publish)
			assert.Empty(t, logs.String())
		})
	}
}
