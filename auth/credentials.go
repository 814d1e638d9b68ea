// Package auth owns credentials: parsing the "<scheme> <token>" form that
// publishers and subscribers send, the set of accepted tokens read from a
// file, and the decision whether a credential is accepted.
package auth

import (
	"encoding/base64"
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

// SchemeBasic carries a token from the tokens file, in either of two forms:
// the bare token ("Basic <token>"), the only form the old service knew, or
// RFC 7617's "Basic base64(user:password)", as curl -u, Python requests,
// axios and Go's SetBasicAuth send it, with the token as the password or,
// when the password is empty, as the user (see basicUserPass).
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

// basicUserPass reads token as RFC 7617's base64(user:password) and returns
// the part that should be the tokens file's token: the password, or the
// user when the password is empty ("curl -u TOKEN:"). ok is false when
// token is not standard, padded base64 of text with a ':', or both parts
// are empty. The Authenticator tries this only after the token as given
// failed, so a bare token keeps working even if it happens to be valid
// base64; and a user with a non-empty password is never tried, so that
// "token:anything" cannot be mistaken for the token.
func basicUserPass(token string) (candidate string, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		return "", false
	}
	user, pass, found := strings.Cut(string(raw), ":")
	switch {
	case !found:
		return "", false
	case pass != "":
		return pass, true
	case user != "":
		return user, true
	}
	return "", false
}
