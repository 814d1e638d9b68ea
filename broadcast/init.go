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
	ErrInvalidSyntax = errors.New("init message is not a JSON object")
	// ErrEventsMissing: "events" is absent, null, or not an array of strings.
	ErrEventsMissing = errors.New("init message has no array of event names")
)

// Init is a subscriber's init message.
type Init struct {
	// Authentication is "<scheme> <token>"; empty when absent or not a string.
	Authentication string
	// Events are the event names to add to the subscription, as sent
	// (duplicates included; the subscription is a set).
	Events []string
}

// ParseInit parses {"authentication":"<scheme> <token>","events":["a","b"]}.
// Keys match exactly and a repeated key keeps its last value, as JSON.parse
// did in the service this replaces. Other keys are ignored, so that clients
// written for later protocol versions still subscribe.
func ParseInit(msg []byte) (Init, error) {
	if !utf8.Valid(msg) {
		return Init{}, fmt.Errorf("%w: not valid UTF-8", ErrInvalidSyntax)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(msg, &fields); err != nil || fields == nil {
		return Init{}, ErrInvalidSyntax
	}
	raw, ok := fields["events"]
	if !ok || raw[0] != '[' {
		return Init{}, ErrEventsMissing
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return Init{}, ErrEventsMissing
	}
	in := Init{Events: make([]string, len(items))}
	for i, item := range items {
		if item[0] != '"' || json.Unmarshal(item, &in.Events[i]) != nil {
			return Init{}, fmt.Errorf("%w: events[%d] is not a string", ErrEventsMissing, i)
		}
	}
	if a, ok := fields["authentication"]; ok && a[0] == '"' {
		_ = json.Unmarshal(a, &in.Authentication) // a quoted, valid JSON value: cannot fail
	}
	return in, nil
}
