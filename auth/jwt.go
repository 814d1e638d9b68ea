package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SchemeBearer carries a JWT: short-lived, scoped to events, minted by a
// backend for a browser (see JWTVerifier).
const SchemeBearer = "Bearer"

// Claims are the JWT claims eventsrv reads: exp (required), sub, aud and
// iss (checked when the verifier is given WithAudience or WithIssuer), and
// the event patterns the bearer may subscribe to and publish.
type Claims struct {
	jwt.RegisteredClaims
	Subscribe []string `json:"subscribe,omitempty"`
	Publish   []string `json:"publish,omitempty"`
	Enqueue   []string `json:"enqueue,omitempty"`
	Work      []string `json:"work,omitempty"`
}

// JWTVerifier checks Bearer tokens against one key, accepting only the
// algorithms of that key: HS256 for a shared secret, RS256 for an RSA
// public key, ES256/ES384/ES512 for an ECDSA one. "none", and a token
// signed with the public key as an HMAC secret, are refused.
type JWTVerifier struct {
	key     any
	methods []string
	options []jwt.ParserOption // from VerifierOptions: the aud and iss checks
}

// VerifierOption adds a check to a JWTVerifier.
type VerifierOption func(*JWTVerifier)

// WithAudience makes the verifier require an aud claim that contains
// audience (aud may be one string or a list), so that a token minted for
// another service sharing the signing key is refused. An empty audience
// adds no check, so that an unset JWT_AUDIENCE can be passed as it is.
func WithAudience(audience string) VerifierOption {
	return func(v *JWTVerifier) {
		if audience != "" {
			v.options = append(v.options, jwt.WithAudience(audience))
		}
	}
}

// WithIssuer makes the verifier require an iss claim equal to issuer,
// byte for byte. An empty issuer adds no check, as for WithAudience.
func WithIssuer(issuer string) VerifierOption {
	return func(v *JWTVerifier) {
		if issuer != "" {
			v.options = append(v.options, jwt.WithIssuer(issuer))
		}
	}
}

func newVerifier(key any, method string, opts []VerifierOption) *JWTVerifier {
	v := &JWTVerifier{key: key, methods: []string{method}}
	for _, o := range opts {
		o(v)
	}
	return v
}

// NewHMACVerifier verifies HS256 tokens signed with secret.
func NewHMACVerifier(secret []byte, opts ...VerifierOption) (*JWTVerifier, error) {
	if len(secret) < 32 {
		return nil, errors.New("the JWT secret must be at least 32 bytes")
	}
	return newVerifier(secret, jwt.SigningMethodHS256.Alg(), opts), nil
}

// NewPublicKeyVerifier verifies tokens signed with the private half of the
// PEM public key (PKIX "PUBLIC KEY", RSA or ECDSA).
func NewPublicKeyVerifier(pemData []byte, opts ...VerifierOption) (*JWTVerifier, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, errors.New("no PEM data")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		return newVerifier(k, jwt.SigningMethodRS256.Alg(), opts), nil
	case *ecdsa.PublicKey:
		alg := map[elliptic.Curve]string{elliptic.P256(): "ES256", elliptic.P384(): "ES384", elliptic.P521(): "ES512"}[k.Curve]
		if alg == "" {
			return nil, errors.New("unsupported ECDSA curve")
		}
		return newVerifier(k, alg, opts), nil
	default:
		return nil, fmt.Errorf("unsupported public key type %T", key)
	}
}

// Verify checks token's signature, algorithm and expiry, and its audience
// and issuer when the verifier has them, and returns what it permits: the
// subscribe and publish patterns of its claims (none when absent), never
// admin, valid until its exp (Permissions.Expires, at most MaxExpiry).
func (v *JWTVerifier) Verify(token string) (Permissions, error) {
	var claims wireClaims
	opts := append([]jwt.ParserOption{jwt.WithValidMethods(v.methods), jwt.WithExpirationRequired()}, v.options...)
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return v.key, nil }, opts...)
	if err != nil {
		return Permissions{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	sub, err := patternsOf(claims.Subscribe)
	if err != nil {
		return Permissions{}, fmt.Errorf("%w: subscribe claim: %w", ErrUnauthenticated, err)
	}
	pub, err := patternsOf(claims.Publish)
	if err != nil {
		return Permissions{}, fmt.Errorf("%w: publish claim: %w", ErrUnauthenticated, err)
	}
	enq, err := patternsOf(claims.Enqueue)
	if err != nil {
		return Permissions{}, fmt.Errorf("%w: enqueue claim: %w", ErrUnauthenticated, err)
	}
	work, err := patternsOf(claims.Work)
	if err != nil {
		return Permissions{}, fmt.Errorf("%w: work claim: %w", ErrUnauthenticated, err)
	}
	return Permissions{Subscribe: sub, Publish: pub, Enqueue: enq, Work: work, Expires: claims.ExpiresAt.Time, Subject: claims.Subject}, nil
}

// MaxExpiry is the latest expiry Verify reports: an exp (or nbf) later
// than this is read as this instant. golang-jwt reads a date claim
// as float64 seconds, and its conversion to int64, and time.Unix itself,
// overflow near the largest int64: "never expires" would turn into
// "expired long ago", and a far nbf into one long past. time.Time's JSON
// and RFC 3339 forms also stop at year 9999. No token lives that long, so
// nothing is lost.
var MaxExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// wireClaims are Claims as Verify decodes them: a date claim later than
// MaxExpiry is read as MaxExpiry before golang-jwt validates it. (Dates far
// in the past need nothing: they stay far in the past, so an exp there is
// expired and an nbf there is passed, as they should be.)
type wireClaims struct {
	Claims
}

// UnmarshalJSON decodes the claims as golang-jwt does, then reads exp and
// nbf again and replaces either if later than MaxExpiry, where golang-jwt's
// own reading may overflow. (iat is not checked, and one wrapped into the
// past would pass any check of it anyway.)
func (c *wireClaims) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &c.Claims); err != nil {
		return err
	}
	var dates struct {
		Exp json.Number `json:"exp"`
		Nbf json.Number `json:"nbf"`
	}
	if err := json.Unmarshal(b, &dates); err != nil {
		return err
	}
	for _, d := range []struct {
		n   json.Number
		dst **jwt.NumericDate
	}{{dates.Exp, &c.ExpiresAt}, {dates.Nbf, &c.NotBefore}} {
		// An absent claim reads as 0, and the first Unmarshal already
		// refused what Float64 cannot read.
		if f, _ := d.n.Float64(); f > float64(MaxExpiry.Unix()) {
			*d.dst = jwt.NewNumericDate(MaxExpiry)
		}
	}
	return nil
}

// patternsOf reads a subscribe or publish claim: each item is exactly one
// pattern, so that "a,b" (a list hidden in one item) and "" are refused.
func patternsOf(items []string) (Patterns, error) {
	p := make(Patterns, 0, len(items))
	for _, item := range items {
		one, err := ParsePatterns(item)
		if err != nil || len(one) != 1 {
			return nil, fmt.Errorf("%w: %q", ErrBadPattern, item)
		}
		p = append(p, one...)
	}
	return p, nil
}

// MintOption sets an optional claim of a token that MintHMAC signs.
type MintOption func(*Claims)

// MintAudience sets the aud claim to one audience; empty sets nothing.
func MintAudience(audience string) MintOption {
	return func(c *Claims) {
		if audience != "" {
			c.Audience = jwt.ClaimStrings{audience}
		}
	}
}

// MintIssuer sets the iss claim; empty sets nothing.
func MintIssuer(issuer string) MintOption {
	return func(c *Claims) { c.Issuer = issuer }
}

// MintHMAC signs an HS256 token for subject with the given patterns, valid
// for ttl: for `eventsrv jwt` and for tests.
func MintHMAC(secret []byte, subject string, subscribe, publish []string, ttl time.Duration, opts ...MintOption) (string, error) {
	now := time.Now()
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Subscribe: subscribe,
		Publish:   publish,
	}
	for _, o := range opts {
		o(&claims)
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
