package listen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"eventsrv/internal/jsonhttp"
	"eventsrv/internal/jsonvalid"
)

// POST /events publishes a batch: a JSON array of POST /event bodies, in
// one request. It exists for throughput: one request's costs (HTTP,
// authentication) are paid once for the batch, and in cluster mode every
// event of the batch is in flight to JetStream at once, so that JetStream
// pipelines them rather than waiting for each acknowledgement in turn.
//
// The rules, which the README's publishing section repeats:
//   - Every event is checked as POST /event checks its body, and against the
//     token's publish permission, before any is published: one bad event
//     refuses the batch, with POST /event's code and its index
//     ("events[3]: ...").
//   - The answer, {"code":"OK","ids":[...]}, comes once every event is
//     stored, with the IDs in the batch's order. The events are stored in
//     that order; other publishers' events may come between them.
//   - With an Idempotency-Key K, event i is published with the key "K i"
//     (a space cannot be in a header's key, so these never meet a POST
//     /event's key), so a retried batch answers the same IDs and publishes
//     nothing twice.
//   - When some events could not be stored (in cluster mode: NATS did not
//     acknowledge them in time), the answer is 503 UNAVAILABLE with
//     Retry-After and the IDs of the longest prefix of the batch that was
//     stored. A retry with the same Idempotency-Key completes the batch
//     without duplicates; without a key there is no telling which events
//     past the prefix were stored after all.

// MaxBatchEvents bounds the events of one POST /events.
const MaxBatchEvents = 1000

// DefaultMaxBatchBytes is Options.MaxBatchBytes when it is 0 and
// MaxBodyBytes is smaller: 1000 events of 8 KiB.
const DefaultMaxBatchBytes = 8 << 20

// ErrTooManyEvents is wrapped by ParseBatch's error for a batch of more
// than its maximum.
var ErrTooManyEvents = errors.New("too many events")

// ErrEventTooLarge is wrapped by ParseBatch's error for an event larger than
// its maximum.
var ErrEventTooLarge = errors.New("event too large")

// AsyncPublisher is a Publisher that can have many publishes in flight at
// once: StartPublish sends an event (with an idempotency key unless key is
// "", as OncePublisher) and returns at once, without waiting for it to be
// stored; wait then waits for that and returns its outcome. An error from
// StartPublish means the event was not sent. Events started one after
// another are stored in that order unless one fails. The cluster bus is
// one: a batch's events all wait for their acknowledgements together.
type AsyncPublisher interface {
	StartPublish(key, event string, data json.RawMessage) (wait func() (id string, duplicate bool, err error), err error)
}

// AtomicPublisher is an AsyncPublisher that can store a whole batch as
// one: all its events, in order with nothing between them, or none.
// PublishAtomic stores n events, event(i) giving the i-th one's
// idempotency key (or ""), name and data, and returns their IDs. tried is
// false when nothing was stored and publishing event by event may still
// do, as after a refusal of the batch as such, or for a batch whose keys
// were seen before; when it is true, err is the batch's outcome. The
// cluster bus is one, with JetStream's atomic batches.
type AtomicPublisher interface {
	PublishAtomic(n int, event func(i int) (key, name string, data json.RawMessage)) (ids []string, tried bool, err error)
}

// BatchError is ParseBatch's error: it wraps ErrInvalidBody,
// ErrTooManyEvents or ErrEventTooLarge, and Reason says what is wrong, for
// people.
type BatchError struct {
	kind   error
	Reason string
}

func (e *BatchError) Error() string { return e.kind.Error() + ": " + e.Reason }
func (e *BatchError) Unwrap() error { return e.kind }

func batchErr(kind error, format string, args ...any) error {
	return &BatchError{kind: kind, Reason: fmt.Sprintf(format, args...)}
}

// batchHint ends the message of a refused batch.
const batchHint = `; send [{"event":"<name>","data":<any JSON>}, ...]`

// ParseBatch parses a POST /events body: a JSON array of at most maxEvents
// POST /event bodies, each at most maxEventBytes long (0: no bound), each
// parsed as ParseEvent does. An error is a *BatchError, which wraps
// ErrInvalidBody, ErrTooManyEvents or ErrEventTooLarge and names the
// event's index when it is about one event. An empty array is a batch of no events. Each event's
// Data is a copy, not a slice of body, so that a kept event does not keep
// its whole batch in memory.
//
// A valid body is checked once (jsonvalid.Valid) and then cut into events by a
// scan that relies on that check, which costs a fraction of decoding each
// event into a map as ParseEvent does (FuzzParseBatch holds the two to the
// same results); an invalid one is decoded again, slowly, to say where.
func ParseBatch(body []byte, maxEvents int, maxEventBytes int64) ([]Event, error) {
	if !utf8.Valid(body) {
		return nil, batchErr(ErrInvalidBody, "the body is not valid UTF-8")
	}
	if !jsonvalid.Valid(body) {
		return nil, batchSyntaxError(body, maxEvents, maxEventBytes)
	}
	i := skipSpace(body, 0)
	if body[i] != '[' {
		return nil, batchErr(ErrInvalidBody, "the body is not a JSON array (POST /event takes a single event)")
	}
	events := []Event{}
	i = skipSpace(body, i+1)
	if body[i] == ']' {
		return events, nil
	}
	for n := 0; ; n++ {
		if n == maxEvents {
			return nil, batchErr(ErrTooManyEvents, "a batch holds at most %d events; send the rest in another", maxEvents)
		}
		end := valueEnd(body, i)
		if err := checkEvent(n, body[i:end], maxEventBytes); err != nil {
			return nil, err
		}
		ev, reason := scanEvent(body[i:end])
		if reason != "" {
			return nil, batchErr(ErrInvalidBody, "events[%d]: %s", n, reason)
		}
		events = append(events, ev)
		i = skipSpace(body, end)
		if body[i] == ']' {
			return events, nil
		}
		i = skipSpace(body, i+1) // past the comma
	}
}

// checkEvent bounds event n's size.
func checkEvent(n int, raw []byte, maxEventBytes int64) error {
	if maxEventBytes > 0 && int64(len(raw)) > maxEventBytes {
		return batchErr(ErrEventTooLarge, "events[%d] is %d bytes; an event may be at most %d (MAX_BODY_BYTES)", n, len(raw), maxEventBytes)
	}
	return nil
}

// batchSyntaxError says what is wrong with a body that is not valid JSON:
// it decodes the body as ParseBatch would, event by event, so that an
// error names the event where the JSON breaks, or says that the array is
// not closed or is followed by more.
func batchSyntaxError(body []byte, maxEvents int, maxEventBytes int64) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return batchErr(ErrInvalidBody, "the body is not a JSON array: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return batchErr(ErrInvalidBody, "the body is not a JSON array (POST /event takes a single event)")
	}
	for n := 0; dec.More(); n++ {
		if n == maxEvents {
			return batchErr(ErrTooManyEvents, "a batch holds at most %d events; send the rest in another", maxEvents)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return batchErr(ErrInvalidBody, "events[%d] is not valid JSON: %v", n, err)
		}
		if err := checkEvent(n, raw, maxEventBytes); err != nil {
			return err
		}
		if _, reason := scanEvent(raw); reason != "" {
			return batchErr(ErrInvalidBody, "events[%d]: %s", n, reason)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing ]
		return batchErr(ErrInvalidBody, "the body is not a JSON array: %v", err)
	}
	return batchErr(ErrInvalidBody, "the body has more after its array")
}

// scanEvent is parseEvent for one element of a batch that jsonvalid.Valid has
// accepted, without decoding it into a map: it finds the object's keys
// and the ends of their values. As with ParseEvent, keys match exactly
// once unescaped, and a repeated key keeps its last value.
func scanEvent(raw []byte) (Event, string) {
	if raw[0] != '{' {
		return Event{}, "it is not a JSON object"
	}
	var name, data []byte
	if i := skipSpace(raw, 1); raw[i] != '}' {
		for {
			keyEnd := stringEnd(raw, i)
			key := raw[i:keyEnd]
			i = skipSpace(raw, skipSpace(raw, keyEnd)+1) // past the colon
			end := valueEnd(raw, i)
			switch unquote(key) {
			case "event":
				name = raw[i:end]
			case "data":
				data = raw[i:end]
			}
			if i = skipSpace(raw, end); raw[i] == '}' {
				break
			}
			i = skipSpace(raw, i+1) // past the comma
		}
	}
	switch {
	case name == nil:
		return Event{}, `"event" is missing`
	case name[0] != '"':
		return Event{}, `"event" is not a string`
	}
	ev := Event{Name: unquote(name), Data: nullData}
	if ev.Name == "" {
		return Event{}, `"event" is empty`
	}
	if data != nil {
		ev.Data = bytes.Clone(data)
	}
	return ev, ""
}

// unquote is a valid JSON string's value.
func unquote(s []byte) string {
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s[1 : len(s)-1])
	}
	var v string
	_ = json.Unmarshal(s, &v) // valid: cannot fail
	return v
}

// skipSpace is the index of the first byte at or after i that is not JSON
// white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd is the index just past the valid JSON string starting at i.
func stringEnd(b []byte, i int) int {
	for i++; b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// valueEnd is the index just past the valid JSON value starting at i.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for ; i < len(b); i++ { // a number, true, false or null
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return i
}

// An AsyncPublisher's failed tail of a batch is sent again, up to
// tailResends times tailResendWait apart, when every event of it was
// certainly not stored (see notStored): as nats.go retries a single
// publish that found no responders, which it cannot do within a batch
// without storing that event after the later ones.
const (
	tailResends    = 2
	tailResendWait = 250 * time.Millisecond
)

// notStored is a publish error that may say the event was certainly not
// stored, so that sending it again cannot store it twice.
type notStored interface{ NotStored() bool }

func certainlyNotStored(err error) bool {
	var n notStored
	return errors.As(err, &n) && n.NotStored()
}

// publishAsync sends events[len(ids):] all at once and waits for them,
// adding to ids and duplicates the IDs of the prefix stored. When an event
// failed, err says why, and resend says whether the events from it on
// were all certainly not stored (nor sent), so that they may be sent again.
func publishAsync(async AsyncPublisher, key string, events []Event, ids []string, duplicates int) (_ []string, _ int, resend bool, err error) {
	from := len(ids)
	waits := make([]func() (string, bool, error), 0, len(events)-from)
	var startErr error
	for i := from; i < len(events); i++ {
		wait, err := async.StartPublish(batchKey(key, i), events[i].Name, events[i].Data)
		if err != nil {
			// Not sent: neither is anything after it, which could only
			// be stored out of the batch's order.
			startErr = err
			break
		}
		waits = append(waits, wait)
	}
	// Every event sent is waited for, also past a failure, so that none
	// is still in flight when the answer goes.
	resend = true
	for _, wait := range waits {
		id, duplicate, werr := wait()
		switch {
		case err == nil && werr == nil:
			ids = append(ids, id)
			if duplicate {
				duplicates++
			}
		case err == nil:
			err = werr
			resend = certainlyNotStored(werr)
		default:
			resend = resend && werr != nil && certainlyNotStored(werr)
		}
	}
	if err == nil {
		return ids, duplicates, false, startErr
	}
	return ids, duplicates, resend, err
}

// batchKey is the idempotency key of a batch's event i: "" without one.
func batchKey(key string, i int) string {
	if key == "" {
		return ""
	}
	return key + " " + strconv.Itoa(i)
}

// maxBatchBytes is the bound of a POST /events body.
func (h *handler) maxBatchBytes() int64 {
	if h.opts.MaxBatchBytes > 0 {
		return h.opts.MaxBatchBytes
	}
	return max(DefaultMaxBatchBytes, h.opts.MaxBodyBytes)
}

// events serves POST /events.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.answer(w, CodeMethodNotAllowed, "publish a batch with POST /events")
		return
	}
	perms, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	body, ok := h.readBody(w, r, h.maxBatchBytes(), "MAX_BATCH_BYTES", ": send a smaller batch", "batch")
	if !ok {
		return
	}
	events, err := ParseBatch(body, MaxBatchEvents, h.opts.MaxBodyBytes)
	if err != nil {
		code := CodeInvalidBody
		if errors.Is(err, ErrTooManyEvents) || errors.Is(err, ErrEventTooLarge) {
			code = CodePayloadTooLarge
		}
		h.opts.Log.Info("batch refused", "remote", r.RemoteAddr, "code", code, "reason", err)
		message := err.Error()
		var be *BatchError
		if errors.As(err, &be) {
			message = be.Reason
		}
		if code == CodeInvalidBody {
			message += batchHint
		}
		h.answer(w, code, message)
		return
	}
	for i, ev := range events {
		if limit := h.opts.MaxEventNameBytes; limit > 0 && len(ev.Name) > limit {
			h.opts.Log.Info("batch refused", "remote", r.RemoteAddr, "code", CodeNameTooLong, "index", i, "length", len(ev.Name), "limit", limit)
			h.answer(w, CodeNameTooLong, fmt.Sprintf("events[%d]: the event name is %d bytes; at most %d are allowed (MAX_EVENT_NAME_BYTES)", i, len(ev.Name), limit))
			return
		}
	}
	key, err := idempotencyKey(r)
	if err != nil {
		h.opts.Log.Info("batch refused", "remote", r.RemoteAddr, "code", CodeInvalidKey)
		h.answer(w, CodeInvalidKey, err.Error())
		return
	}
	for i, ev := range events {
		if !perms.Publish.Allows(ev.Name) {
			h.opts.Log.Info("batch refused", "remote", r.RemoteAddr, "code", CodeForbidden, "index", i, "event", logName(ev.Name))
			h.answer(w, CodeForbidden, fmt.Sprintf("events[%d]: this token may not publish %q: no publish pattern of its role matches", i, logName(ev.Name)))
			return
		}
	}
	ids, duplicates, err := h.publishBatch(key, events)
	if err != nil {
		h.opts.Log.Warn("batch publish failed", "remote", r.RemoteAddr, "events", len(events), "stored", len(ids), "err", err)
		advice := "the server is shutting down: publish again, to another instance or once it is back"
		var a advised
		if errors.As(err, &a) {
			advice = a.Advice()
		}
		advice = fmt.Sprintf("%d of %d events stored (their IDs are in ids): %s", len(ids), len(events), advice)
		if key != "" {
			advice += "; a retry with the same Idempotency-Key publishes only what is missing"
		}
		h.countEvents(len(ids))
		h.count(CodeUnavailable)
		w.Header().Set("Retry-After", "1")
		jsonhttp.Write(w, statusOf[CodeUnavailable], []byte(`{"code":"`+string(CodeUnavailable)+`","message":`+
			jsonhttp.Quote(advice)+`,"ids":`+idList(ids)+`}`))
		return
	}
	h.countEvents(len(ids))
	answer := `{"code":"OK","ids":` + idList(ids)
	if duplicates > 0 {
		answer += `,"duplicates":` + strconv.Itoa(duplicates)
	}
	jsonhttp.Write(w, statusOf[CodeOK], []byte(answer+"}"))
}

// readBody reads r's body, at most limit bytes (the setting named setting).
// A longer one is answered 413, with hint after the bound, and one that
// cannot be read 400; either is logged as what's, and ok is false.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request, limit int64, setting, hint, what string) (body []byte, ok bool) {
	body, err := readAll(http.MaxBytesReader(w, r.Body, limit), min(r.ContentLength, limit))
	if err == nil {
		return body, true
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		h.opts.Log.Info(what+" refused", "remote", r.RemoteAddr, "code", CodePayloadTooLarge, "limit", tooLarge.Limit)
		h.answer(w, CodePayloadTooLarge, fmt.Sprintf("the body is over %d bytes (%s)%s", tooLarge.Limit, setting, hint))
		return nil, false
	}
	h.opts.Log.Info(what+" body read failed", "remote", r.RemoteAddr, "err", err)
	h.answer(w, CodeInvalidBody, "the body could not be read: "+err.Error())
	return nil, false
}

// readAll is io.ReadAll into a buffer of size at first (a bounded
// Content-Length), rather than one grown from 512 bytes as the body comes.
func readAll(r io.Reader, size int64) ([]byte, error) {
	if size <= 0 {
		return io.ReadAll(r)
	}
	// ReadFrom grows the buffer whenever it has less than MinRead free.
	b := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	_, err := b.ReadFrom(r)
	return b.Bytes(), err
}

// countEvents counts n events published, for metrics: the OK count is one
// per event, whether it came alone or in a batch.
func (h *handler) countEvents(n int) {
	for range n {
		h.count(CodeOK)
	}
}

// idList is ids as a JSON array.
func idList(ids []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jsonhttp.Quote(id))
	}
	b.WriteByte(']')
	return b.String()
}

// publishBatch publishes events in order and returns the IDs of the longest
// prefix that was stored (all of them when err is nil) and how many of
// those were duplicates of a retried batch's. An AsyncPublisher gets them
// all in flight at once; any other Publisher gets one after another.
func (h *handler) publishBatch(key string, events []Event) (ids []string, duplicates int, err error) {
	if atomic, ok := h.pub.(AtomicPublisher); ok {
		ids, tried, err := atomic.PublishAtomic(len(events), func(i int) (string, string, json.RawMessage) {
			return batchKey(key, i), events[i].Name, events[i].Data
		})
		if tried {
			return ids, 0, err
		}
	}
	ids = make([]string, 0, len(events))
	if async, ok := h.pub.(AsyncPublisher); ok {
		for attempt := 0; ; attempt++ {
			var resend bool
			ids, duplicates, resend, err = publishAsync(async, key, events, ids, duplicates)
			if !resend || attempt == tailResends {
				return ids, duplicates, err
			}
			time.Sleep(tailResendWait)
		}
	}
	once, _ := h.pub.(OncePublisher)
	for i, ev := range events {
		var (
			id        string
			duplicate bool
		)
		if once != nil && key != "" {
			id, duplicate, err = once.PublishOnce(batchKey(key, i), ev.Name, ev.Data)
		} else {
			id, err = h.pub.Publish(ev.Name, ev.Data)
		}
		if err != nil {
			return ids, duplicates, err
		}
		ids = append(ids, id)
		if duplicate {
			duplicates++
		}
	}
	return ids, duplicates, nil
}
