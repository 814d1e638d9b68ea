package auth

import (
	"crypto/sha256"
	"errors"
	"log/slog"
	"time"

	"eventsrv/internal/logthrottle"
)

// TokenChecker is what an Authenticator needs from a token source.
type TokenChecker interface {
	Lookup(token string) (Permissions, bool)
}

// Authenticator decides whether a credential is accepted and logs refusals,
// throttled, so that a flood of bad attempts cannot flood the log.
type Authenticator struct {
	tokens  TokenChecker
	jwt     *JWTVerifier // nil: Bearer is an unrecognized scheme
	log     *slog.Logger
	limit   *logthrottle.Limiter
	metrics FailureCounter
}

// FailureCounter counts refusals, for metrics.
type FailureCounter interface {
	AuthFailed(reason, via string)
}

// WithJWT makes a accept Bearer tokens that v verifies; call it before use.
func (a *Authenticator) WithJWT(v *JWTVerifier) *Authenticator {
	a.jwt = v
	return a
}

// WithMetrics makes a count every refusal in m; call it before use.
func (a *Authenticator) WithMetrics(m FailureCounter) *Authenticator {
	a.metrics = m
	return a
}

// NewAuthenticator returns an Authenticator over tokens that logs refusals
// to log.
func NewAuthenticator(tokens TokenChecker, log *slog.Logger) *Authenticator {
	return &Authenticator{tokens: tokens, log: log, limit: logthrottle.New(10, time.Second)}
}

// Authenticate checks credentials of the form "<scheme> <token>" and
// returns the token's permissions, or ErrUnrecognizedScheme or
// ErrUnauthenticated. A Basic token is looked up as given first; if it is
// not accepted and is RFC 7617's base64(user:password), the password is
// looked up, or the user when the password is empty (see basicUserPass).
// Every lookup compares digests in constant time. remote (the peer's
// address) and via (the transport) only label the log line; the credential
// itself is never logged.
func (a *Authenticator) Authenticate(credentials, remote, via string) (Permissions, error) {
	scheme, token, err := ParseCredentials(credentials)
	var perms Permissions
	switch {
	case err != nil:
	case scheme == SchemeBearer && a.jwt == nil:
		err = ErrUnrecognizedScheme
	case scheme == SchemeBearer:
		perms, err = a.jwt.Verify(token)
	default:
		var ok bool
		perms, ok = a.tokens.Lookup(token)
		if !ok {
			// Not a bare token: perhaps RFC 7617's base64(user:password).
			if candidate, std := basicUserPass(token); std {
				perms, ok = a.tokens.Lookup(candidate)
			}
		}
		if !ok {
			err = ErrUnauthenticated
		}
	}
	if err != nil {
		a.logRejected(err, remote, via)
		return Permissions{}, err
	}
	return perms, nil
}

// digestLookup is what Recheck needs from a TokenChecker: a lookup by the
// token's digest, which FileStore and TokenSet have.
type digestLookup interface {
	lookupDigest(d [sha256.Size]byte) (Permissions, bool)
}

// Recheck looks up again the credential that p came from, for revocation:
// call it for every open connection when the tokens file changes
// (FileStore.OnChange). For permissions from a tokens-file token it
// returns the token's current permissions, or false when the token is no
// longer accepted; the connection should then be closed, or narrowed to
// current. Permissions from anything else (a JWT, whose exp the caller
// enforces; FullAccess given to a trusted peer) are returned as they are,
// with true, as are all when the TokenChecker cannot look up by digest.
// It compares digests in constant time and logs nothing.
func (a *Authenticator) Recheck(p Permissions) (current Permissions, ok bool) {
	d, canLookup := a.tokens.(digestLookup)
	if p.key == ([sha256.Size]byte{}) || !canLookup {
		return p, true
	}
	return d.lookupDigest(p.key)
}

func (a *Authenticator) logRejected(err error, remote, via string) {
	reason := "unauthenticated"
	if errors.Is(err, ErrUnrecognizedScheme) {
		reason = "unrecognized scheme"
	}
	if a.metrics != nil {
		a.metrics.AuthFailed(reason, via)
	}
	ok, suppressed := a.limit.Allow(time.Now())
	if suppressed > 0 {
		a.log.Warn("authentication refusals suppressed", "count", suppressed)
	}
	if !ok {
		return
	}
	a.log.Warn("authentication refused", "remote", remote, "via", via, "reason", reason)
}
