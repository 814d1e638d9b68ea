package client

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Error is a refusal from the server (its text, like the other errors of
// this package, has no "eventsrv: " in front; Publish and Subscribe add it
// with what they were doing): a POST /event answer other than OK,
// a refused init, subscribe or unsubscribe, or a WebSocket upgrade that
// was answered with an error. Match it with errors.Is against the
// sentinels below (ErrForbidden, ErrUnavailable, …), or take it apart
// with errors.As:
//
//	var e *client.Error
//	if errors.As(err, &e) { log.Print(e.Status, e.Code, e.Message) }
type Error struct {
	// Status is the HTTP status: of the POST, or of the WebSocket upgrade.
	// It is 0 for a refusal sent on a WebSocket (an init's reply), and for
	// data that PublishRaw refused before sending anything.
	Status int
	// Code is the answer's code, as the README's tables list them
	// ("FORBIDDEN"); empty when the answer had none (a proxy's error page).
	Code string
	// Message says what went wrong and what to do, for people; it may
	// change between versions: match on Code.
	Message string
	// RetryAfter is the wait the server asked for (Retry-After), if any.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	code := e.Code
	if code == "" {
		code = http.StatusText(e.Status)
	}
	s := code
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is reports whether target is the sentinel of e's code.
func (e *Error) Is(target error) bool {
	s, ok := target.(*codeError)
	return ok && s.code == e.Code
}

// codeError is the sentinel of one answer code.
type codeError struct{ code, text string }

func (s *codeError) Error() string { return s.code + ": " + s.text }

// The sentinels of the server's answer codes, for errors.Is. Each matches
// an *Error with that code, from POST /event or from a WebSocket reply.
var (
	// ErrUnauthenticated: no token, or one the server does not accept
	// (unknown, too short, an expired or badly signed JWT).
	ErrUnauthenticated error = &codeError{"UNAUTHENTICATED", "the server does not accept this token"}
	// ErrUnrecognizedScheme: a scheme other than Basic, or Bearer on a
	// server without JWT settings.
	ErrUnrecognizedScheme error = &codeError{"AUTH_UNRECOGNIZED_SCHEME", "the server does not accept this kind of token"}
	// ErrForbidden: the token may not publish or subscribe to this event.
	ErrForbidden error = &codeError{"FORBIDDEN", "the token may not do this"}
	// ErrInvalidBody: the POST's body was refused (PublishRaw's data is
	// not one JSON value, or the event name is empty).
	ErrInvalidBody error = &codeError{"INVALID_BODY", "the event was refused as malformed"}
	// ErrPayloadTooLarge: the body is over the server's MAX_BODY_BYTES.
	ErrPayloadTooLarge error = &codeError{"PAYLOAD_TOO_LARGE", "the event is too large"}
	// ErrNameTooLong: the event name is over MAX_EVENT_NAME_BYTES.
	ErrNameTooLong error = &codeError{"EVENT_NAME_TOO_LONG", "the event name is too long"}
	// ErrInvalidIdempotencyKey: the Idempotency-Key was refused.
	ErrInvalidIdempotencyKey error = &codeError{"INVALID_IDEMPOTENCY_KEY", "the Idempotency-Key was refused"}
	// ErrUnavailable: the server is shutting down, or (cluster mode) NATS
	// did not acknowledge the event. Publish retries it; it is returned
	// when the attempts or the context ran out.
	ErrUnavailable error = &codeError{"UNAVAILABLE", "the server cannot take events now"}
	// ErrNotFound: no such path: the URL is not an eventsrv listen server
	// (or it is the broadcast server's).
	ErrNotFound error = &codeError{"NOT_FOUND", "no such path"}
	// ErrMethodNotAllowed: another method than POST on /event.
	ErrMethodNotAllowed error = &codeError{"METHOD_NOT_ALLOWED", "the method is not allowed"}
	// ErrInvalidSyntax: a WebSocket message was not JSON.
	ErrInvalidSyntax error = &codeError{"INVALID_SYNTAX", "the message was not JSON"}
	// ErrInvalidEvents: a WebSocket message's events were missing or not
	// strings.
	ErrInvalidEvents error = &codeError{"INVALID_EVENTS_MISSING", "the message's events were refused"}
	// ErrTooManyEvents: the connection would subscribe to more than the
	// server's MAX_SUBSCRIPTIONS names.
	ErrTooManyEvents error = &codeError{"INVALID_EVENTS_TOO_MANY", "too many event names"}
	// ErrForbiddenOrigin: the WebSocket upgrade came from an Origin not in
	// CORS_ALLOWED_ORIGINS.
	ErrForbiddenOrigin error = &codeError{"FORBIDDEN_ORIGIN", "this Origin may not connect"}
	// ErrUpgradeRequired: a plain HTTP request reached the broadcast
	// server (the listen URL points at it).
	ErrUpgradeRequired error = &codeError{"UPGRADE_REQUIRED", "this is the broadcast server"}
)

// CloseError is the close frame that ended a subscription's connection:
// the server's close code and reason. Match it with errors.Is against
// ErrTokenExpired, ErrTokenRevoked, ErrPermissionsChanged, ErrGoingAway or
// ErrSlowConsumer.
type CloseError struct {
	Code int    // 1001 going away, 1008 slow consumer, 4001 token expired, …
	Text string // the reason the server gave
}

func (e *CloseError) Error() string {
	if e.Text == "" {
		return fmt.Sprintf("connection closed by the server (%d)", e.Code)
	}
	return fmt.Sprintf("connection closed by the server: %s (%d)", e.Text, e.Code)
}

// Is reports whether target is the sentinel of e's close code (and, for
// codes with several reasons, its reason).
func (e *CloseError) Is(target error) bool {
	s, ok := target.(*closeSentinel)
	return ok && s.code == e.Code && (s.text == "" || s.text == e.Text)
}

// closeSentinel is the sentinel of one close code and reason.
type closeSentinel struct {
	code int
	text string
}

func (s *closeSentinel) Error() string {
	return fmt.Sprintf("connection closed by the server: %s (%d)", s.text, s.code)
}

// The sentinels of the server's close codes, for errors.Is. A Subscription
// reconnects after all but ErrTokenRevoked and ErrClosedByAdmin, and after
// ErrTokenExpired only when it can refresh the JWT (WithJWT's refresh);
// see Subscription.
var (
	ErrGoingAway          error = &closeSentinel{1001, "going away"}
	ErrSlowConsumer       error = &closeSentinel{1008, "slow consumer"}
	ErrTokenExpired       error = &closeSentinel{4001, "token expired"}
	ErrClosedByAdmin      error = &closeSentinel{4002, "closed by admin"}
	ErrTokenRevoked       error = &closeSentinel{4003, "token revoked"}
	ErrPermissionsChanged error = &closeSentinel{4003, "permissions changed"}
	// ErrEventsLost: in cluster mode, the instance fell so far behind
	// that events were dropped; the subscription resumes, and yields
	// ErrReset.
	ErrEventsLost error = &closeSentinel{4005, "events lost"}
)

var (
	// ErrUnreachable wraps the network error of a server that could not be
	// reached (refused, reset, timed out, no such host): what Publish
	// returns when its attempts ran out that way, and what Subscribe
	// returns when its first connection fails.
	ErrUnreachable = errors.New("server unreachable")
	// ErrReset is what a Subscription yields, in order, when the server
	// says a resume was not recovered: events may have been missed (the
	// server restarted without its history, or the gap was beyond its
	// limits). Reload your state from its source of truth; the events
	// that follow are the ones the server still had, then live ones. It
	// is not an end: the iteration goes on.
	ErrReset = errors.New("resume not recovered: events may have been missed; reload your state")
	// ErrClosed is returned by a Subscription's methods after it ended.
	ErrClosed = errors.New("subscription closed")
)
