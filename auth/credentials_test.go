package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCredentials(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantScheme string
		wantToken  string
		wantErr    error
	}{
		{name: "empty", in: "", wantErr: ErrUnauthenticated},
		{name: "scheme only", in: "Basic", wantScheme: "Basic", wantErr: ErrUnauthenticated},
		{name: "scheme and space", in: "Basic ", wantScheme: "Basic", wantErr: ErrUnauthenticated},
		{name: "scheme and spaces", in: "Basic    ", wantScheme: "Basic", wantErr: ErrUnauthenticated},
		{name: "basic", in: "Basic tok", wantScheme: "Basic", wantToken: "tok"},
		{name: "surrounding spaces trimmed", in: "Basic  tok  ", wantScheme: "Basic", wantToken: "tok"},
		{name: "surrounding tabs trimmed", in: "Basic \ttok\t", wantScheme: "Basic", wantToken: "tok"},
		{name: "scheme is case-sensitive", in: "basic tok", wantScheme: "basic", wantErr: ErrUnrecognizedScheme},
		{name: "bearer", in: "Bearer x", wantScheme: "Bearer", wantToken: "x"},
		{name: "other scheme", in: "Digest x", wantScheme: "Digest", wantErr: ErrUnrecognizedScheme},
		{name: "no scheme", in: "tokenwithoutscheme", wantScheme: "", wantErr: ErrUnrecognizedScheme},
		// Only a space separates: a tab leaves one unknown "scheme".
		{name: "tab separator", in: "Basic\ttok", wantScheme: "", wantErr: ErrUnrecognizedScheme},
		{name: "leading space", in: " Basic tok", wantScheme: "", wantErr: ErrUnrecognizedScheme},
		// The token is everything after the first space, inner spaces kept.
		{name: "inner space kept", in: "Basic a b", wantScheme: "Basic", wantToken: "a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scheme, token, err := ParseCredentials(tt.in)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tt.wantScheme, scheme, "scheme")
			assert.Equal(t, tt.wantToken, token, "token")
		})
	}
}

func FuzzParseCredentials(f *testing.F) {
	for _, s := range []string{"", "Basic", "Basic ", "Basic tok", "Basic  tok  ", "basic tok",
		"Bearer x", "tokenwithoutscheme", "Basic a b", "Basic \u00a0tok\u2028", "Basic \xff",
		"Basic dXNlcjp0b2tlbg==", "Basic dG9rZW46", "Basic Og==", "Basic dG9rZW4=", "Basic dXNlcjp0b2tlbg"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		scheme, token, err := ParseCredentials(in)
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) && !errors.Is(err, ErrUnrecognizedScheme) {
				t.Fatalf("ParseCredentials(%q): unexpected error %v", in, err)
			}
			if token != "" {
				t.Fatalf("ParseCredentials(%q): error %v with token %q", in, err, token)
			}
			return
		}
		if scheme != SchemeBasic && scheme != SchemeBearer {
			t.Fatalf("ParseCredentials(%q): accepted scheme %q", in, scheme)
		}
		if token == "" {
			t.Fatalf("ParseCredentials(%q): accepted an empty token", in)
		}
		if strings.TrimSpace(token) != token {
			t.Fatalf("ParseCredentials(%q): token %q has surrounding white space", in, token)
		}
		if !strings.HasPrefix(in, scheme+" ") || !strings.Contains(in, token) {
			t.Fatalf("ParseCredentials(%q): token %q does not come from the input", in, token)
		}
		// The RFC 7617 reading of a Basic token: the password, else the user.
		candidate, ok := basicUserPass(token)
		raw, decodeErr := base64.StdEncoding.DecodeString(token)
		user, pass, colon := strings.Cut(string(raw), ":")
		switch {
		case !ok && candidate != "":
			t.Fatalf("basicUserPass(%q) = %q without ok", token, candidate)
		case ok != (decodeErr == nil && colon && user+pass != ""):
			t.Fatalf("basicUserPass(%q): ok = %v for %q", token, ok, raw)
		case ok && pass != "" && candidate != pass:
			t.Fatalf("basicUserPass(%q) = %q, want the password %q", token, candidate, pass)
		case ok && pass == "" && candidate != user:
			t.Fatalf("basicUserPass(%q) = %q, want the user %q", token, candidate, user)
		}
	})
}

func TestBasicUserPass(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"password", "dXNlcjp0b2tlbg==", "token", true},     // user:token
		{"user, empty password", "dG9rZW46", "token", true}, // token:
		{"password, empty user", "OnRva2Vu", "token", true}, // :token
		{"password with a colon", "dTphOmI=", "a:b", true},  // u:a:b
		{"both empty", "Og==", "", false},                   // :
		{"no colon", "dG9rZW4=", "", false},                 // token
		{"unpadded", "dXNlcjp0b2tlbg", "", false},
		{"not base64", "token!", "", false},
		{"empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := basicUserPass(tt.in)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}
