package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Publish posts event with data, encoded with encoding/json, and returns
// the ID the server gave it. See PublishRaw for the retries; data nil is
// sent as null.
func (c *Client) Publish(ctx context.Context, event string, data any) (string, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return "", fmt.Errorf("eventsrv: publish %q: encoding data: %w", event, err)
	}
	return c.PublishRaw(ctx, event, raw)
}

// PublishRaw posts event with data, exactly these bytes (subscribers get
// them byte for byte), and returns the event's ID. data must be one JSON
// value (empty means null); anything else is refused here with
// ErrInvalidBody, before it is sent.
//
// A 503 (the server is shutting down, or in cluster mode NATS did not
// acknowledge) and a network error are retried, with exponential backoff
// and full jitter (see WithPublishRetry), after any Retry-After the server
// asked for, until the attempts or ctx run out. Every attempt carries the
// same Idempotency-Key, random for each call, so that a retry whose first
// attempt did arrive (its answer was lost) is answered with that first
// event's ID instead of publishing it again. Every other answer is
// returned at once as an *Error.
func (c *Client) PublishRaw(ctx context.Context, event string, data json.RawMessage) (string, error) {
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	if !json.Valid(data) {
		return "", fmt.Errorf("eventsrv: publish %q: %w", event, &Error{Code: "INVALID_BODY", Message: "data is not one JSON value"})
	}
	name, _ := json.Marshal(event) // a string always encodes
	body := make([]byte, 0, len(name)+len(data)+20)
	body = append(append(append(body, `{"event":`...), name...), `,"data":`...)
	body = append(append(body, data...), '}')
	key := newIdempotencyKey()
	for attempt := 0; ; attempt++ {
		id, err := c.publishOnce(ctx, body, key)
		if err == nil {
			return id, nil
		}
		wait, retry := c.retryable(ctx, err)
		if !retry {
			if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				// ctx ended during an attempt that failed for a reason
				// of its own (a refused connection): the caller still
				// learns that ctx is why it was the last.
				return "", fmt.Errorf("eventsrv: publish %q: %w after %d attempts; the last: %w", event, context.Cause(ctx), attempt+1, err)
			}
			return "", fmt.Errorf("eventsrv: publish %q: %w", event, err)
		}
		if n := c.publish.maxAttempts; n > 0 && attempt+1 >= n {
			return "", fmt.Errorf("eventsrv: publish %q: %d attempts: %w", event, attempt+1, err)
		}
		if !sleep(ctx, wait+c.publish.backoff.delay(attempt)) {
			return "", fmt.Errorf("eventsrv: publish %q: %w after %d attempts; the last: %w", event, context.Cause(ctx), attempt+1, err)
		}
	}
}

// retryable reports whether a failed attempt is retried, and the wait the
// server asked for: 503 (and a proxy's 502 and 504, or a 429) with its
// Retry-After, and network errors, but not a certificate that does not
// verify (retrying does not change it) or ctx's end.
func (c *Client) retryable(ctx context.Context, err error) (time.Duration, bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.Status {
		case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests:
			return e.RetryAfter, true
		}
		return 0, false
	}
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
	)
	if errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) {
		return 0, false
	}
	return 0, errors.Is(err, ErrUnreachable)
}

// publishOnce is one attempt: the event's ID, an *Error for an answer
// other than OK, or a network error wrapped in ErrUnreachable.
func (c *Client) publishOnce(ctx context.Context, body []byte, key string) (string, error) {
	auth, err := c.creds.header(ctx, "")
	if err != nil {
		return "", err
	}
	if c.publish.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.publish.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.eventURL, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("User-Agent", c.userAgent)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return "", fmt.Errorf("%w: reading the answer: %w", ErrUnreachable, err)
	}
	// What is left is read so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
	var answer struct {
		Code    string `json:"code"`
		ID      string `json:"id"`
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &answer) != nil {
		answer.Code, answer.Message = "", strings.TrimSpace(string(b[:min(len(b), 200)]))
	}
	if resp.StatusCode == http.StatusOK && answer.Code == "OK" && answer.ID != "" {
		return answer.ID, nil
	}
	return "", &Error{Status: resp.StatusCode, Code: answer.Code, Message: answer.Message, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date; 0 when
// absent or unreadable, and at most a minute.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	}
	return min(max(d, 0), time.Minute)
}

// newIdempotencyKey returns 128 random bits in hex.
func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return hex.EncodeToString(b[:])
}
