package broadcast

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Errors of ParseInit; each maps to one init reply code.
var (
	// ErrInvalidSyntax: the message is not a JSON object.
	// Its text, with the detail wrapped in, is the reply's message.
	ErrInvalidSyntax = errors.New("invalid message")
	// ErrEventsMissing: "events" is absent, null, or not an array of strings.
	ErrEventsMissing = errors.New(`"events" must be an array of event names`)
)

// Init is a message from a subscriber: an init (no type, or "init"), or,
// after an init, a "subscribe" or "unsubscribe".
type Init struct {
	// Type is "" for the old service's init message, which had none.
	Type string
	// Authentication is "<scheme> <token>"; empty when absent or not a string.
	Authentication string
	// Events are the event names to add to the subscription, as sent
	// (duplicates included; the subscription is a set).
	Events []string
	// Since, when not nil, asks to resume: the last event ID the client
	// received ("" on a first connection, to learn its position).
	Since *string
}

// ParseInit parses {"authentication":"<scheme> <token>","events":["a","b"]},
// and {"type":"subscribe"|"unsubscribe","events":[...]}, each with an
// optional "since":"<event ID>" (null is the same as absent; another
// non-string is ErrInvalidSyntax). With ErrEventsMissing, or a since that is
// not a string, the returned Init still carries the type, so that the reply
// can name it.
// Keys match exactly and a repeated key keeps its last value, as JSON.parse
// did in the service this replaces. Other keys are ignored, so that clients
// written for later protocol versions still subscribe.
func ParseInit(msg []byte) (Init, error) {
	if !utf8.Valid(msg) {
		return Init{}, fmt.Errorf("%w: not valid UTF-8", ErrInvalidSyntax)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(msg, &fields); err != nil || fields == nil {
		return Init{}, fmt.Errorf(`%w: not a JSON object; send {"authentication":"Basic <token>","events":["<name>"]}`, ErrInvalidSyntax)
	}
	var in Init
	if t, ok := fields["type"]; ok {
		if t[0] != '"' {
			return Init{}, fmt.Errorf(`%w: "type" must be a string`, ErrInvalidSyntax)
		}
		_ = json.Unmarshal(t, &in.Type) // a quoted, valid JSON value: cannot fail
	}
	raw, ok := fields["events"]
	if !ok || raw[0] != '[' {
		return in, ErrEventsMissing
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return in, ErrEventsMissing
	}
	in.Events = make([]string, len(items))
	for i, item := range items {
		if item[0] != '"' || json.Unmarshal(item, &in.Events[i]) != nil {
			return Init{Type: in.Type}, fmt.Errorf("%w: item %d is not a string", ErrEventsMissing, i)
		}
	}
	if raw, ok := fields["since"]; ok && string(raw) != "null" {
		var since string
		if raw[0] != '"' {
			return Init{Type: in.Type}, fmt.Errorf(`%w: "since" must be a string: the last event ID received, or "" on a first connection`, ErrInvalidSyntax)
		}
		_ = json.Unmarshal(raw, &since) // a quoted, valid JSON value: cannot fail
		in.Since = &since
	}
	if a, ok := fields["authentication"]; ok && a[0] == '"' {
		_ = json.Unmarshal(a, &in.Authentication) // a quoted, valid JSON value: cannot fail
	}
	return in, nil
}
