package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
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

// signRaw signs claims given as JSON values, so that a test can send
// numbers that jwt.NumericDate cannot represent.
func signRaw(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	return sign(t, jwt.SigningMethodHS256, testSecret, claims)
}

func TestJWTVerifierDates(t *testing.T) {
	v, err := NewHMACVerifier(testSecret)
	require.NoError(t, err)
	year3000 := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	now := time.Now()
	cases := []struct {
		name        string
		claims      jwt.MapClaims
		ok          bool
		wantExpires time.Time
	}{
		{"exp in year 3000", jwt.MapClaims{"exp": year3000.Unix()}, true, year3000},
		{"exp after 2262 (UnixNano's end)", jwt.MapClaims{"exp": json.Number("9300000000")}, true, time.Unix(9300000000, 0)},
		{"exp at the largest int64", jwt.MapClaims{"exp": json.Number("9223372036854775807")}, true, MaxExpiry},
		{"exp far beyond int64", jwt.MapClaims{"exp": json.Number("1e300")}, true, MaxExpiry},
		{"exp just before MaxExpiry", jwt.MapClaims{"exp": MaxExpiry.Unix() - 1}, true, MaxExpiry.Add(-time.Second)},
		{"exp at the smallest int64", jwt.MapClaims{"exp": json.Number("-9223372036854775808")}, false, time.Time{}},
		{"exp before 1970", jwt.MapClaims{"exp": json.Number("-1")}, false, time.Time{}},
		{"exp as a string number", jwt.MapClaims{"exp": "9223372036854775807"}, true, MaxExpiry},
		{"exp not a number", jwt.MapClaims{"exp": "soon"}, false, time.Time{}},
		{"exp beyond float64", jwt.MapClaims{"exp": json.Number("1e400")}, false, time.Time{}},
		// nbf far in the future: not valid yet, however large (an overflow
		// would wrap it into the past and accept the token now).
		{"nbf at the largest int64", jwt.MapClaims{"exp": year3000.Unix(), "nbf": json.Number("9223372036854775807")}, false, time.Time{}},
		{"nbf in year 3000", jwt.MapClaims{"exp": year3000.Unix(), "nbf": year3000.Unix() - 10}, false, time.Time{}},
		{"nbf in the past", jwt.MapClaims{"exp": year3000.Unix(), "nbf": now.Add(-time.Minute).Unix()}, true, year3000},
		{"iat at the largest int64", jwt.MapClaims{"exp": year3000.Unix(), "iat": json.Number("9223372036854775807")}, true, year3000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			perms, err := v.Verify(signRaw(t, tc.claims))
			if !tc.ok {
				require.ErrorIs(t, err, ErrUnauthenticated)
				return
			}
			require.NoError(t, err)
			assert.True(t, tc.wantExpires.Equal(perms.Expires), "Expires = %v, want %v", perms.Expires, tc.wantExpires)
			assert.True(t, perms.Expires.After(now), "a far-future exp is in the future")
			_, err = perms.Expires.MarshalJSON()
			assert.NoError(t, err, "Expires stays within what time.Time can encode")
		})
	}
}

func TestJWTVerifierAudienceAndIssuer(t *testing.T) {
	later := time.Now().Add(time.Hour).Unix()
	plain, err := NewHMACVerifier(testSecret)
	require.NoError(t, err)
	both, err := NewHMACVerifier(testSecret, WithAudience("eventsrv"), WithIssuer("https://auth.example"))
	require.NoError(t, err)
	audOnly, err := NewHMACVerifier(testSecret, WithAudience("eventsrv"), WithIssuer(""))
	require.NoError(t, err)
	issOnly, err := NewHMACVerifier(testSecret, WithIssuer("https://auth.example"), WithAudience(""))
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecBoth, err := NewPublicKeyVerifier(pemPublic(t, &ecKey.PublicKey), WithAudience("eventsrv"), WithIssuer("https://auth.example"))
	require.NoError(t, err)

	claims := func(kv ...any) jwt.MapClaims {
		c := jwt.MapClaims{"exp": later}
		for i := 0; i < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	good := claims("aud", "eventsrv", "iss", "https://auth.example")
	cases := []struct {
		name   string
		v      *JWTVerifier
		claims jwt.MapClaims
		ok     bool
	}{
		{"no checks, no claims", plain, claims(), true},
		{"no checks, any claims", plain, claims("aud", "other", "iss", "other"), true},
		{"both match", both, good, true},
		{"aud as a list containing it", both, claims("aud", []string{"x", "eventsrv"}, "iss", "https://auth.example"), true},
		{"aud missing", both, claims("iss", "https://auth.example"), false},
		{"aud empty", both, claims("aud", "", "iss", "https://auth.example"), false},
		{"aud other", both, claims("aud", "eventsrv2", "iss", "https://auth.example"), false},
		{"aud list without it", both, claims("aud", []string{"x", "y"}, "iss", "https://auth.example"), false},
		{"aud differs in case", both, claims("aud", "EventSrv", "iss", "https://auth.example"), false},
		{"iss missing", both, claims("aud", "eventsrv"), false},
		{"iss other", both, claims("aud", "eventsrv", "iss", "https://evil.example"), false},
		{"iss with a trailing slash", both, claims("aud", "eventsrv", "iss", "https://auth.example/"), false},
		{"aud only: iss not checked", audOnly, claims("aud", "eventsrv", "iss", "anyone"), true},
		{"aud only: aud still checked", audOnly, claims("iss", "https://auth.example"), false},
		{"iss only: aud not checked", issOnly, claims("iss", "https://auth.example"), true},
		{"iss only: iss still checked", issOnly, claims("aud", "eventsrv"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.v.Verify(signRaw(t, tc.claims))
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrUnauthenticated)
			}
		})
	}
	t.Run("public key verifier checks them too", func(t *testing.T) {
		_, err := ecBoth.Verify(sign(t, jwt.SigningMethodES256, ecKey, good))
		require.NoError(t, err)
		_, err = ecBoth.Verify(sign(t, jwt.SigningMethodES256, ecKey, claims("aud", "eventsrv")))
		require.ErrorIs(t, err, ErrUnauthenticated)
	})
	t.Run("MintHMAC sets aud and iss", func(t *testing.T) {
		tok, err := MintHMAC(testSecret, "s", nil, nil, time.Minute, MintAudience("eventsrv"), MintIssuer("https://auth.example"))
		require.NoError(t, err)
		_, err = both.Verify(tok)
		require.NoError(t, err)
		tok, err = MintHMAC(testSecret, "s", nil, nil, time.Minute, MintAudience(""), MintIssuer(""))
		require.NoError(t, err)
		_, err = both.Verify(tok)
		require.ErrorIs(t, err, ErrUnauthenticated)
		_, err = plain.Verify(tok)
		require.NoError(t, err)
	})
}

// TestJWTClaimItems: each item of a subscribe or publish claim is one
// pattern; a list hidden in one item, or an empty item, is refused.
func TestJWTClaimItems(t *testing.T) {
	v, err := NewHMACVerifier(testSecret)
	require.NoError(t, err)
	later := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name  string
		items []string
		ok    bool
	}{
		{"none", nil, true},
		{"empty list", []string{}, true},
		{"one exact", []string{"a"}, true},
		{"prefix and all", []string{"a.*", "*"}, true},
		{"comma inside an item", []string{"a,b"}, false},
		{"comma after a good item", []string{"a", "b,c"}, false},
		{"empty item", []string{""}, false},
		{"empty item after a good one", []string{"a", ""}, false},
		{"star inside", []string{"a*b"}, false},
		{"trailing comma", []string{"a,"}, false},
	}
	for _, tc := range cases {
		for _, claim := range []string{"subscribe", "publish"} {
			t.Run(tc.name+"/"+claim, func(t *testing.T) {
				c := jwt.MapClaims{"exp": later}
				if tc.items != nil {
					c[claim] = tc.items
				}
				perms, err := v.Verify(signRaw(t, c))
				if !tc.ok {
					require.ErrorIs(t, err, ErrUnauthenticated)
					return
				}
				require.NoError(t, err)
				got := perms.Subscribe
				if claim == "publish" {
					got = perms.Publish
				}
				assert.Equal(t, Patterns(append([]string{}, tc.items...)), got)
			})
		}
	}
}
