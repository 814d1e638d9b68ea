// Package listen owns the publishing side: POST /event, which authenticates
// a backend, validates its event, and hands it to a Publisher.
package listen

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"eventsrv/auth"
	"eventsrv/internal/jsonhttp"
)

// Publisher takes an accepted event and returns the ID it gave it. The
// broadcast hub implements it, and so will a cluster bus; listen needs
// nothing else from either.
type Publisher interface {
	Publish(event string, data json.RawMessage) (id string, err error)
}

// OncePublisher is a Publisher that honours an idempotency key: within its
// window, a publish with a key it has seen is not published again and
// answers the first one's ID, with duplicate true. The cluster bus is one.
type OncePublisher interface {
	PublishOnce(key, event string, data json.RawMessage) (id string, duplicate bool, err error)
}

// advised is a publish error that says what the publisher should do.
type advised interface{ Advice() string }

// MaxIdempotencyKeyBytes bounds an Idempotency-Key header.
const MaxIdempotencyKeyBytes = 256

// Authenticator checks the Authorization header's value.
type Authenticator interface {
	Authenticate(credentials, remote, via string) (auth.Permissions, error)
}

// Code is the wire code in every answer: {"code":"<Code>"}.
type Code string

// The codes of the listen server. The first four are the old service's.
const (
	CodeOK                     Code = "OK"
	CodeInvalidBody            Code = "INVALID_BODY"
	CodeUnauthenticated        Code = "UNAUTHENTICATED"
	CodeAuthUnrecognizedScheme Code = "AUTH_UNRECOGNIZED_SCHEME"
	CodeForbidden              Code = "FORBIDDEN"
	CodePayloadTooLarge        Code = "PAYLOAD_TOO_LARGE"
	CodeMethodNotAllowed       Code = "METHOD_NOT_ALLOWED"
	CodeNotFound               Code = "NOT_FOUND"
	CodeUnavailable            Code = "UNAVAILABLE"
	CodeNameTooLong            Code = "EVENT_NAME_TOO_LONG"
	CodeInvalidKey             Code = "INVALID_IDEMPOTENCY_KEY"
)

// statusOf is the one table from code to HTTP status.
var statusOf = map[Code]int{
	CodeOK:                     http.StatusOK,
	CodeInvalidBody:            http.StatusBadRequest,
	CodeUnauthenticated:        http.StatusForbidden,
	CodeAuthUnrecognizedScheme: http.StatusForbidden,
	CodeForbidden:              http.StatusForbidden,
	CodePayloadTooLarge:        http.StatusRequestEntityTooLarge,
	CodeMethodNotAllowed:       http.StatusMethodNotAllowed,
	CodeNotFound:               http.StatusNotFound,
	CodeUnavailable:            http.StatusServiceUnavailable,
	CodeNameTooLong:            http.StatusBadRequest,
	CodeInvalidKey:             http.StatusBadRequest,
	CodeQueueFull:              http.StatusTooManyRequests,
	CodeTooManyQueues:          http.StatusTooManyRequests,
}

// Options are the listen server's limits.
type Options struct {
	// MaxBodyBytes bounds a POST /event body, and each event of a POST
	// /events batch; larger ones get 413.
	MaxBodyBytes int64
	// MaxBatchBytes bounds a POST /events body; larger ones get 413.
	// 0: the larger of DefaultMaxBatchBytes and MaxBodyBytes.
	MaxBatchBytes int64
	// MaxEventNameBytes bounds an event name; 0: no bound.
	MaxEventNameBytes int
	Log               *slog.Logger
	// Metrics, when set, counts every POST /event answer by its code.
	Metrics Counter
	// TaskIdleTimeout bounds the silence between two lines of a task
	// stream (POST /task); 0: 10 minutes.
	TaskIdleTimeout time.Duration
	// Queues, when set, takes tasks for work queues: POST /queue/{name}.
	Queues Enqueuer
}

// Counter counts answers, for metrics.
type Counter interface {
	Published(code string)
}

type handler struct {
	auth Authenticator
	pub  Publisher
	opts Options
}

// NewHandler returns the listen server's routes: POST /event, POST /events
// (a batch, see batch.go), POST /task and POST /queue/{name}; anything else
// is 404 or 405, always with a JSON code.
func NewHandler(a Authenticator, pub Publisher, opts Options) http.Handler {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	h := &handler{auth: a, pub: pub, opts: opts}
	// Exact paths, not http.ServeMux: its redirects for unclean paths
	// (//event, /./event) would answer without a JSON code.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/event":
			h.event(w, r)
		case "/events":
			h.events(w, r)
		case "/task":
			h.task(w, r)
		default:
			if strings.HasPrefix(r.URL.Path, "/queue/") {
				h.enqueue(w, r)
				return
			}
			writeError(w, CodeNotFound, "no such path: this server publishes with POST /event (POST /events for a batch, POST /task for task streams)")
		}
	})
}

func (h *handler) event(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.answer(w, CodeMethodNotAllowed, "publish with POST /event")
		return
	}
	perms, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	body, ok := h.readBody(w, r, h.opts.MaxBodyBytes, "MAX_BODY_BYTES", "", "event")
	if !ok {
		return
	}
	ev, err := ParseEvent(body)
	if err != nil {
		h.opts.Log.Info("event refused", "remote", r.RemoteAddr, "code", CodeInvalidBody, "reason", err)
		h.answer(w, CodeInvalidBody, strings.TrimPrefix(err.Error(), ErrInvalidBody.Error()+": ")+
			`; send {"event":"<name>","data":<any JSON>}`)
		return
	}
	if limit := h.opts.MaxEventNameBytes; limit > 0 && len(ev.Name) > limit {
		h.opts.Log.Info("event refused", "remote", r.RemoteAddr, "code", CodeNameTooLong, "length", len(ev.Name), "limit", limit)
		h.answer(w, CodeNameTooLong, fmt.Sprintf("the event name is %d bytes; at most %d are allowed (MAX_EVENT_NAME_BYTES)", len(ev.Name), limit))
		return
	}
	key, err := idempotencyKey(r)
	if err != nil {
		h.opts.Log.Info("event refused", "remote", r.RemoteAddr, "code", CodeInvalidKey)
		h.answer(w, CodeInvalidKey, err.Error())
		return
	}
	if !perms.Publish.Allows(ev.Name) {
		h.opts.Log.Info("event refused", "remote", r.RemoteAddr, "code", CodeForbidden, "event", logName(ev.Name))
		h.answer(w, CodeForbidden, fmt.Sprintf("this token may not publish %q: no publish pattern of its role matches", logName(ev.Name)))
		return
	}
	var (
		id        string
		duplicate bool
	)
	if once, ok := h.pub.(OncePublisher); ok && key != "" {
		id, duplicate, err = once.PublishOnce(key, ev.Name, ev.Data)
	} else {
		id, err = h.pub.Publish(ev.Name, ev.Data)
	}
	if err != nil {
		h.opts.Log.Warn("publish failed", "remote", r.RemoteAddr, "err", err)
		advice := "the server is shutting down: publish again, to another instance or once it is back"
		var a advised
		if errors.As(err, &a) {
			advice = a.Advice()
		}
		w.Header().Set("Retry-After", "1")
		h.answer(w, CodeUnavailable, advice)
		return
	}
	h.count(CodeOK)
	// The old service answered {"code":"OK"}; the ID is a field more,
	// which clients that ignore unknown fields do not notice.
	answer := `{"code":"OK","id":` + jsonhttp.Quote(id)
	if duplicate {
		answer += `,"duplicate":true`
	}
	jsonhttp.Write(w, statusOf[CodeOK], []byte(answer+"}"))
}

// idempotencyKey reads the Idempotency-Key header: "" when absent.
func idempotencyKey(r *http.Request) (string, error) {
	values := r.Header.Values("Idempotency-Key")
	switch {
	case len(values) == 0:
		return "", nil
	case len(values) > 1:
		return "", errors.New("send one Idempotency-Key header, not several")
	case values[0] == "" || len(values[0]) > MaxIdempotencyKeyBytes:
		return "", fmt.Errorf("the Idempotency-Key header must be 1 to %d bytes", MaxIdempotencyKeyBytes)
	}
	for _, c := range []byte(values[0]) {
		if c <= ' ' || c >= 0x7f {
			return "", errors.New("the Idempotency-Key header must be printable ASCII without spaces (a UUID, say)")
		}
	}
	return values[0], nil
}

// authenticate checks the Authorization header, answering when it fails.
// It comes before the body is read, so that an unauthenticated client
// cannot make the server parse anything.
func (h *handler) authenticate(w http.ResponseWriter, r *http.Request) (auth.Permissions, bool) {
	creds := r.Header.Get("Authorization")
	perms, err := h.auth.Authenticate(creds, r.RemoteAddr, "http")
	if err != nil {
		code := CodeUnauthenticated
		if errors.Is(err, auth.ErrUnrecognizedScheme) {
			code = CodeAuthUnrecognizedScheme
		}
		h.answer(w, code, auth.Explain(err, creds, "the Authorization header"))
		return auth.Permissions{}, false
	}
	return perms, true
}

// answer writes an error answer to POST /event and counts it.
func (h *handler) answer(w http.ResponseWriter, c Code, message string) {
	h.count(c)
	writeError(w, c, message)
}

func (h *handler) count(c Code) {
	if h.opts.Metrics != nil {
		h.opts.Metrics.Published(string(c))
	}
}

func writeError(w http.ResponseWriter, c Code, message string) {
	jsonhttp.Error(w, statusOf[c], string(c), message)
}

// logNameBytes is as much of an event name as a log line shows: enough to
// tell names apart, little enough that refusals cannot flood the log.
const logNameBytes = 64

// logName is name cut to logNameBytes, with "…" where it was cut.
func logName(name string) string {
	if len(name) <= logNameBytes {
		return name
	}
	return strings.ToValidUTF8(name[:logNameBytes], "") + "…"
}
