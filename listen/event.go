package listen

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrInvalidBody is wrapped by every error ParseEvent returns.
var ErrInvalidBody = errors.New("invalid body")

// nullData is what subscribers receive when a publisher sends no data.
var nullData = json.RawMessage("null")

// Event is one accepted publication.
type Event struct {
	Name string
	// Data holds the bytes of the "data" value exactly as the publisher sent
	// them (never decoded and re-encoded), or null when absent.
	Data json.RawMessage
}

// ParseEvent parses a POST /event body: a JSON object with a non-empty
// string "event" and any JSON value as "data". Keys match exactly (unlike
// encoding/json's struct decoding, which folds case) and a repeated key
// keeps its last value, as JSON.parse did in the service this replaces.
// Invalid UTF-8 is refused: it could not be relayed in a WebSocket text
// frame.
func ParseEvent(body []byte) (Event, error) {
	ev, reason := parseEvent(body)
	if reason != "" {
		return Event{}, fmt.Errorf("%w: %s", ErrInvalidBody, reason)
	}
	return ev, nil
}

// parseEvent is ParseEvent, with what is wrong as a reason for people ("" when
// nothing is), which POST /events prefixes with the event's index.
func parseEvent(body []byte) (Event, string) {
	if !utf8.Valid(body) {
		return Event{}, "the body is not valid UTF-8"
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return Event{}, "the body is not a JSON object: " + err.Error()
	}
	if fields == nil { // the body was the literal null
		return Event{}, "the body is not a JSON object"
	}
	raw, ok := fields["event"]
	if !ok {
		return Event{}, `"event" is missing`
	}
	var name string
	if raw[0] != '"' || json.Unmarshal(raw, &name) != nil {
		return Event{}, `"event" is not a string`
	}
	if name == "" {
		return Event{}, `"event" is empty`
	}
	data, ok := fields["data"]
	if !ok {
		data = nullData
	}
	return Event{Name: name, Data: data}, ""
}
