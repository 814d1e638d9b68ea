package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SchemeBearer carries a JWT: short-lived, scoped to events, minted by a
// backend for a browser (see JWTVerifier).
const SchemeBearer = "Bearer"

// Claims are the JWT claims eventsrv reads: exp (required), sub, and the
// event patterns the bearer may subscribe to and publish.
type Claims struct {
	jwt.RegisteredClaims
	Subscribe []string `json:"subscribe,omitempty"`
	Publish   []string `json:"publish,omitempty"`
}

// JWTVerifier checks Bearer tokens against one key, accepting only the
// algorithms of that key: HS256 for a shared secret, RS256 for an RSA
// public key, ES256/ES384/ES512 for an ECDSA one. "none", and a token
// signed with the public key as an HMAC secret, are refused.
type JWTVerifier struct {
	key     any
	methods []string
}

// NewHMACVerifier verifies HS256 tokens signed with secret.
func NewHMACVerifier(secret []byte) (*JWTVerifier, error) {
	if len(secret) < 32 {
		return nil, errors.New("the JWT secret must be at least 32 bytes")
	}
	return &JWTVerifier{key: secret, methods: []string{jwt.SigningMethodHS256.Alg()}}, nil
}

// NewPublicKeyVerifier verifies tokens signed with the private half of the
// PEM public key (PKIX "PUBLIC KEY", RSA or ECDSA).
func NewPublicKeyVerifier(pemData []byte) (*JWTVerifier, error) {
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
		return &JWTVerifier{key: k, methods: []string{jwt.SigningMethodRS256.Alg()}}, nil
	case *ecdsa.PublicKey:
		alg := map[elliptic.Curve]string{elliptic.P256(): "ES256", elliptic.P384(): "ES384", elliptic.P521(): "ES512"}[k.Curve]
		if alg == "" {
			return nil, errors.New("unsupported ECDSA curve")
		}
		return &JWTVerifier{key: k, methods: []string{alg}}, nil
	default:
		return nil, fmt.Errorf("unsupported public key type %T", key)
	}
}

// Verify checks token's signature, algorithm and expiry, and returns what
// it permits: the subscribe and publish patterns of its claims (none when
// absent), never admin, valid until its exp.
func (v *JWTVerifier) Verify(token string) (Permissions, error) {
	var claims Claims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return v.key, nil },
		jwt.WithValidMethods(v.methods), jwt.WithExpirationRequired())
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
	return Permissions{Subscribe: sub, Publish: pub, Expires: claims.ExpiresAt.Time}, nil
}

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

// MintHMAC signs an HS256 token for subject with the given patterns, valid
// for ttl: for `eventsrv jwt` and for tests.
func MintHMAC(secret []byte, subject string, subscribe, publish []string, ttl time.Duration) (string, error) {
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
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
