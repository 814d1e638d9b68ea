package auth

import (
	"errors"
	"strings"
)

// Explain is the message for people that goes with a refusal by
// Authenticate: what was wrong with credentials and what to send instead.
// field names where the credentials were sent ("the Authorization header",
// "\"authentication\""). It looks only at the scheme, and never returns any
// part of the credentials.
func Explain(err error, credentials, field string) string {
	scheme, _, _ := strings.Cut(credentials, " ")
	switch {
	case credentials == "":
		return "no credentials: send " + field + " as \"Basic <token>\", with a token from the tokens file"
	case errors.Is(err, ErrUnrecognizedScheme) && scheme == SchemeBearer:
		return "Bearer JWTs are not enabled on this server (it needs JWT_SECRET or JWT_PUBLIC_KEY_FILE); send \"Basic <token>\""
	case errors.Is(err, ErrUnrecognizedScheme):
		return "the scheme must be \"Basic\" (case-sensitive) followed by a space and the token, or \"Bearer\" and a JWT where JWTs are enabled"
	case scheme == SchemeBearer:
		return "the JWT is not accepted: its signature, exp, nbf, aud or iss does not check out; mint a new one (eventsrv jwt)"
	default:
		return "the token is not accepted: it is not in the tokens file (tokens are at least 16 characters; HTTP Basic's user:password form takes it as the password)"
	}
}
