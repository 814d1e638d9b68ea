package auth

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestExplain(t *testing.T) {
	const token = "secret-token-0123456789abcdef"
	cases := []struct {
		err         error
		credentials string
		want        string
	}{
		{ErrUnauthenticated, "", "no credentials: send the Authorization header as"},
		{ErrUnrecognizedScheme, "Bearer " + token, "Bearer JWTs are not enabled"},
		{ErrUnrecognizedScheme, "basic " + token, "the scheme must be \"Basic\""},
		{ErrUnrecognizedScheme, token, "the scheme must be \"Basic\""},
		{ErrUnauthenticated, "Bearer " + token, "the JWT is not accepted"},
		{ErrUnauthenticated, "Basic " + token, "the token is not accepted"},
		{ErrUnauthenticated, "Basic", "the token is not accepted"},
	}
	for _, tc := range cases {
		got := Explain(tc.err, tc.credentials, "the Authorization header")
		assert.True(t, strings.HasPrefix(got, tc.want), "%q: %s", tc.credentials, got)
		assert.NotContains(t, got, token[:8], "a message holds part of the token")
	}
}
