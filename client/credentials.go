package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

// credentials is the client's token, shared by publishing and every
// subscription, and refreshed once for all of them.
type credentials struct {
	scheme  string // "Basic" or "Bearer"; "" without a token
	refresh func(ctx context.Context) (string, error)

	mu        sync.Mutex // held while refresh runs: one refresh for all callers
	token     string
	exp       time.Time // the JWT's exp; zero when unknown
	refreshAt time.Time // when to ask for a new one; zero: never
}

// maxRefreshMargin bounds how long before exp a JWT is refreshed.
const maxRefreshMargin = time.Minute

// set makes tok the current token, received at now.
func (c *credentials) set(tok string, now time.Time) {
	c.token = tok
	c.exp, c.refreshAt = time.Time{}, time.Time{}
	if exp, ok := jwtExpiry(tok); ok {
		c.exp = exp
		// A quarter of the lifetime left, at most a minute: a 15-minute
		// token is renewed a minute early, a 2-second one half a second.
		margin := min(exp.Sub(now)/4, maxRefreshMargin)
		c.refreshAt = exp.Add(-max(margin, 0))
	}
}

// header returns the Authorization value to send, refreshing the JWT
// first when it is due, or when stale is the current token (the server
// refused it as expired).
func (c *credentials) header(ctx context.Context, stale string) (string, error) {
	tok, err := c.current(ctx, stale)
	if err != nil || tok == "" {
		return "", err
	}
	return c.scheme + " " + tok, nil
}

// current returns the token, refreshed when due (see header).
func (c *credentials) current(ctx context.Context, stale string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refresh == nil {
		return c.token, nil
	}
	now := time.Now()
	due := c.token == "" || c.token == stale || (!c.refreshAt.IsZero() && !now.Before(c.refreshAt))
	if !due {
		return c.token, nil
	}
	tok, err := c.refresh(ctx)
	if err == nil && tok == "" {
		err = fmt.Errorf("it returned an empty token")
	}
	if err != nil {
		if c.token != "" && c.token != stale && (c.exp.IsZero() || now.Before(c.exp)) {
			return c.token, nil // still good: try again at the next call
		}
		return "", fmt.Errorf("refreshing the JWT: %w", err)
	}
	c.set(strings.TrimSpace(strings.TrimPrefix(tok, "Bearer ")), time.Now())
	return c.token, nil
}

// due returns when the token tok should be replaced: zero when it need
// not be (a Basic token, a JWT without exp, no refresh function).
func (c *credentials) due(tok string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refresh == nil {
		return time.Time{}
	}
	if tok != c.token {
		return time.Now() // another caller has a newer one already
	}
	return c.refreshAt
}

// expires returns tok's expiry, zero when unknown.
func (c *credentials) expires(tok string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tok == c.token {
		return c.exp
	}
	exp, _ := jwtExpiry(tok)
	return exp
}

// canRefresh reports whether a new token can be had.
func (c *credentials) canRefresh() bool { return c.refresh != nil }

// jwtExpiry reads a JWT's exp claim without verifying the token: the
// client only needs to know when to ask for a new one.
func jwtExpiry(tok string) (time.Time, bool) {
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if !jwtClaims(tok, &claims) || claims.Exp == nil || math.IsNaN(*claims.Exp) || math.IsInf(*claims.Exp, 0) {
		return time.Time{}, false
	}
	sec, frac := math.Modf(*claims.Exp)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// jwtClaims decodes a JWT's payload into v, unverified; false when tok is
// not a JWT.
func jwtClaims(tok string, v any) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return false
	}
	return json.Unmarshal(payload, v) == nil
}
