package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	require.NoError(t, err)
	return s
}

func claimsFor(exp time.Time, subscribe ...string) Claims {
	c := Claims{Subscribe: subscribe}
	if !exp.IsZero() {
		c.ExpiresAt = jwt.NewNumericDate(exp)
	}
	return c
}

func pemPublic(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestJWTVerifier(t *testing.T) {
	hmacV, err := NewHMACVerifier(testSecret)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsaV, err := NewPublicKeyVerifier(pemPublic(t, &rsaKey.PublicKey))
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecV, err := NewPublicKeyVerifier(pemPublic(t, &ecKey.PublicKey))
	require.NoError(t, err)

	later, past := time.Now().Add(time.Hour), time.Now().Add(-time.Minute)
	rsaPEM := pemPublic(t, &rsaKey.PublicKey)
	cases := []struct {
		name  string
		v     *JWTVerifier
		token string
		ok    bool
	}{
		{"HS256", hmacV, sign(t, jwt.SigningMethodHS256, testSecret, claimsFor(later, "a*")), true},
		{"HS256, wrong secret", hmacV, sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), claimsFor(later)), false},
		{"HS512 where HS256 is configured", hmacV, sign(t, jwt.SigningMethodHS512, testSecret, claimsFor(later)), false},
		{"alg none", hmacV, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsFor(later)), false},
		{"expired", hmacV, sign(t, jwt.SigningMethodHS256, testSecret, claimsFor(past)), false},
		{"no exp", hmacV, sign(t, jwt.SigningMethodHS256, testSecret, claimsFor(time.Time{})), false},
		{"bad pattern claim", hmacV, sign(t, jwt.SigningMethodHS256, testSecret, claimsFor(later, "a*b")), false},
		{"garbage", hmacV, "not.a.jwt", false},
		{"RS256", rsaV, sign(t, jwt.SigningMethodRS256, rsaKey, claimsFor(later)), true},
		{"HS256 signed with the RSA public key", rsaV, sign(t, jwt.SigningMethodHS256, rsaPEM, claimsFor(later)), false},
		{"ES256 against an RSA key", rsaV, sign(t, jwt.SigningMethodES256, ecKey, claimsFor(later)), false},
		{"ES256", ecV, sign(t, jwt.SigningMethodES256, ecKey, claimsFor(later)), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			perms, err := tc.v.Verify(tc.token)
			if !tc.ok {
				require.ErrorIs(t, err, ErrUnauthenticated)
				return
			}
			require.NoError(t, err)
			assert.WithinDuration(t, later, perms.Expires, time.Second)
			assert.False(t, perms.Admin)
		})
	}
}

func TestMintHMACRoundTrip(t *testing.T) {
	v, err := NewHMACVerifier(testSecret)
	require.NoError(t, err)
	tok, err := MintHMAC(testSecret, "browser-7", []string{"job.*"}, nil, time.Minute)
	require.NoError(t, err)
	perms, err := v.Verify(tok)
	require.NoError(t, err)
	assert.True(t, perms.Subscribe.Allows("job.1"))
	assert.False(t, perms.Subscribe.Allows("other"))
	assert.False(t, perms.Publish.Allows("job.1"))

	_, err = NewHMACVerifier([]byte("short"))
	assert.Error(t, err)
	_, err = NewPublicKeyVerifier([]byte("not pem"))
	assert.Error(t, err)
}
