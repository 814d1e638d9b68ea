package auth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Patterns are event-name patterns: an exact name, a prefix ending in "*"
// ("order.*" matches "order.created"), or "*" alone for every name.
type Patterns []string

// ErrBadPattern is wrapped by ParsePatterns' errors.
var ErrBadPattern = errors.New("bad event pattern")

// ParsePatterns parses a comma-separated list of patterns. An empty list
// is valid and allows nothing; an empty item, or a "*" anywhere but at
// the end of an item, is an error.
func ParsePatterns(list string) (Patterns, error) {
	if list == "" {
		return Patterns{}, nil
	}
	items := strings.Split(list, ",")
	p := make(Patterns, 0, len(items))
	for _, item := range items {
		switch {
		case item == "":
			return nil, fmt.Errorf("%w: empty item in %q", ErrBadPattern, list)
		case strings.Contains(strings.TrimSuffix(item, "*"), "*"):
			return nil, fmt.Errorf("%w: %q has a * before its end", ErrBadPattern, item)
		}
		p = append(p, item)
	}
	return p, nil
}

// Allows reports whether event matches one of the patterns.
func (p Patterns) Allows(event string) bool {
	for _, pat := range p {
		if prefix, wild := strings.CutSuffix(pat, "*"); wild {
			if strings.HasPrefix(event, prefix) {
				return true
			}
		} else if pat == event {
			return true
		}
	}
	return false
}

// Covers reports whether every event a subscription to name would receive
// is allowed: for an exact name, Allows; for a pattern (a name ending in
// "*", as in the permissions), whether one permission pattern is a prefix
// of it, checked pattern against pattern: "order.*" covers "order.*" and
// "order.eu.*", but not "*" or "ord*".
func (p Patterns) Covers(name string) bool {
	prefix, wild := strings.CutSuffix(name, "*")
	if !wild {
		return p.Allows(name)
	}
	for _, pat := range p {
		if allowed, ok := strings.CutSuffix(pat, "*"); ok && strings.HasPrefix(prefix, allowed) {
			return true
		}
	}
	return false
}

// Permissions are what a token may do.
type Permissions struct {
	Publish   Patterns // events it may POST
	Subscribe Patterns // events it may subscribe to
	Enqueue   Patterns // work queues it may add tasks to
	Work      Patterns // work queues it may take tasks from
	Admin     bool     // it may read the admin endpoints
	// Expires is when the credential expires; zero: never (tokens from the
	// tokens file). A JWT's is its exp, at most MaxExpiry (year 9999).
	// Compare it as a time.Time: past 2262 it has no UnixNano.
	Expires time.Time
	// Subject names the holder, never the credential: a JWT's sub claim,
	// or "token:" and the first 8 hex digits of a file token's SHA-256
	// digest (which tells tokens apart in GET /whoami and logs, and
	// reveals nothing usable).
	Subject string

	// key is the SHA-256 digest of the tokens file's token these came
	// from, zero for any other credential: Authenticator.Recheck looks the
	// token up again by it, so no raw token is kept for revocation.
	key [sha256.Size]byte
}

// equal reports whether p and o grant the same, from the same token.
func (p Permissions) equal(o Permissions) bool {
	return slices.Equal(p.Publish, o.Publish) && slices.Equal(p.Subscribe, o.Subscribe) &&
		slices.Equal(p.Enqueue, o.Enqueue) && slices.Equal(p.Work, o.Work) &&
		p.Admin == o.Admin && p.Expires.Equal(o.Expires) && p.key == o.key && p.Subject == o.Subject
}

// FullAccess is what a token without permission fields may do: publish and
// subscribe to every event, as in the service this replaces. Admin must be
// granted explicitly: the admin endpoints show who is connected.
var FullAccess = Permissions{Publish: Patterns{"*"}, Subscribe: Patterns{"*"}, Enqueue: Patterns{"*"}, Work: Patterns{"*"}}

// parsePermissions reads the fields after a token in the tokens file:
// publish=<patterns>, subscribe=<patterns> and admin, each at most once.
// A field not given grants nothing.
func parsePermissions(fields []string) (Permissions, error) {
	var p Permissions
	seen := make(map[string]bool)
	for i, f := range fields {
		name, value, hasValue := strings.Cut(f, "=")
		if seen[name] {
			return Permissions{}, fmt.Errorf("field %d: %s given twice", i+2, name)
		}
		seen[name] = true
		var err error
		switch {
		case name == "publish" && hasValue:
			p.Publish, err = ParsePatterns(value)
		case name == "subscribe" && hasValue:
			p.Subscribe, err = ParsePatterns(value)
		case name == "enqueue" && hasValue:
			p.Enqueue, err = ParsePatterns(value)
		case name == "work" && hasValue:
			p.Work, err = ParsePatterns(value)
		case name == "admin" && !hasValue:
			p.Admin = true
		default:
			// The field itself is not echoed: it could be a mistyped secret.
			return Permissions{}, fmt.Errorf("field %d: not publish=..., subscribe=..., enqueue=..., work=... or admin", i+2)
		}
		if err != nil {
			return Permissions{}, fmt.Errorf("field %d: %w", i+2, err)
		}
	}
	return p, nil
}
