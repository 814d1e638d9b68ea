package auth

import (
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
		"Bearer x", "tokenwithoutscheme", "Basic a b", "Basic \u00a0tok\u2028", "Basic \xff"} {
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
	})
}
