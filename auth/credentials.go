// Package auth owns credentials: parsing the "<scheme> <token>" form that
// publishers and subscribers send, the set of accepted tokens read from a
// file, and the decision whether a credential is accepted.
package auth

import (
	"errors"
	"strings"
)

// Errors returned by Authenticate. Callers map them to wire codes with
// errors.Is; their text is safe to log (it never contains the credential).
var (
	// ErrUnauthenticated means the credential is missing, malformed, or not
	// an accepted token.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrUnrecognizedScheme means the scheme is not one this server accepts.
	ErrUnrecognizedScheme = errors.New("unrecognized authentication scheme")
)

// SchemeBasic is the only scheme the old service knew: a bare token from the
// tokens file (not RFC 7617 user:password, which the wire contract predates).
const SchemeBasic = "Basic"

// ParseCredentials splits "<scheme> <token>" at the first space; the
// schemes are Basic and Bearer (whether Bearer is accepted is the
// Authenticator's decision). The scheme is compared exactly, as the old
// service did. An empty credential is
// unauthenticated rather than an unknown scheme: nothing was offered.
func ParseCredentials(credentials string) (scheme, token string, err error) {
	if credentials == "" {
		return "", "", ErrUnauthenticated
	}
	scheme, token, found := strings.Cut(credentials, " ")
	if scheme != SchemeBasic && scheme != SchemeBearer {
		if !found {
			// No space: this may be a bare token. Return nothing of it, so
			// that no caller can log it as a "scheme".
			scheme = ""
		}
		return scheme, "", ErrUnrecognizedScheme
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return scheme, "", ErrUnauthenticated
	}
	return scheme, token, nil
}
