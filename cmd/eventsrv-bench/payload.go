package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// payload is what every published event's data carries: who published it,
// its place in that publisher's sequence, and when it was sent. That is
// enough for a subscriber to find losses, duplicates and reordering and to
// measure latency against the one clock this machine has.
type payload struct {
	pub  int   // publisher index, from 0
	seq  int   // the publisher's sequence number, from 0
	sent int64 // send time, Unix nanoseconds
}

// Why a frame was counted as malformed. They are sentinels so that the hot
// path does not allocate an error per bad frame.
var (
	errNotText      = errors.New("not a text frame")
	errSyntax       = errors.New("not a JSON object")
	errNotEvent     = errors.New(`"type" is not "event"`)
	errWrongEvent   = errors.New(`"event" is not the subscribed name`)
	errMissingField = errors.New(`missing "type", "event" or "data"`)
	errBadPayload   = errors.New(`"data" is not the payload as published`)
	errOutOfRange   = errors.New("publisher or sequence out of range")
)

// maxNesting bounds how deep the frame scanner follows unknown fields.
const maxNesting = 64

// appendEventBody appends the POST /event body {"event":<name>,"data":<payload>}.
// eventJSON is the event name already encoded as a JSON string.
func appendEventBody(dst, eventJSON []byte, pl payload, size int) []byte {
	dst = append(dst, `{"event":`...)
	dst = append(dst, eventJSON...)
	dst = append(dst, `,"data":`...)
	dst = appendPayload(dst, pl, size)
	return append(dst, '}')
}

// appendPayload appends {"p":<pub>,"s":<seq>,"t":<sent>,"x":"xxx…"}, with
// the x padding chosen so the object is size bytes long when size allows.
// The field order and the absence of spaces are fixed: the server must relay
// data byte for byte, and parsePayload holds it to that.
func appendPayload(dst []byte, pl payload, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"p":`...)
	dst = strconv.AppendInt(dst, int64(pl.pub), 10)
	dst = append(dst, `,"s":`...)
	dst = strconv.AppendInt(dst, int64(pl.seq), 10)
	dst = append(dst, `,"t":`...)
	dst = strconv.AppendInt(dst, pl.sent, 10)
	dst = append(dst, `,"x":"`...)
	for pad := size - (len(dst) - start) - len(`"}`); pad > 0; pad-- {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

// parseFrame checks one broadcast frame, {"type":"event","event":<name>,
// "data":<payload>}, and returns its payload. Fields may come in any order
// and unknown fields (such as a later "id") are skipped, but data must be
// exactly what appendPayload wrote. It scans in place instead of
// unmarshalling because it runs once per delivery, for every subscriber.
func parseFrame(frame []byte, event string) (payload, error) {
	s := scanner{b: frame}
	if !s.consume('{') {
		return payload{}, errSyntax
	}
	var pl payload
	var seenType, seenEvent, seenData bool
	for more := !s.consume('}'); more; {
		key, ok := s.str()
		if !ok || !s.consume(':') {
			return payload{}, errSyntax
		}
		var err error
		switch string(key) {
		case "type":
			seenType, err = true, s.expectString("event", errNotEvent)
		case "event":
			seenEvent, err = true, s.expectString(event, errWrongEvent)
		case "data":
			seenData = true
			pl, err = s.payload()
		default:
			if !s.skipValue(0) {
				err = errSyntax
			}
		}
		if err != nil {
			return payload{}, err
		}
		if more, ok = s.next(); !ok {
			return payload{}, errSyntax
		}
	}
	if s.ws(); s.i != len(s.b) {
		return payload{}, errSyntax
	}
	if !seenType || !seenEvent || !seenData {
		return payload{}, errMissingField
	}
	return pl, nil
}

// scanner walks a JSON text without allocating.
type scanner struct {
	b []byte
	i int
}

// ws skips white space.
func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// consume skips white space and then c, reporting whether c was there.
func (s *scanner) consume(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// next reads the separator after an object member: more is true after a
// comma, false after the closing brace; ok is false for anything else.
func (s *scanner) next() (more, ok bool) {
	if s.consume(',') {
		return true, true
	}
	return false, s.consume('}')
}

// literal consumes lit exactly, with no white space before it.
func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// str reads a JSON string after white space and returns its raw contents,
// escapes not decoded.
func (s *scanner) str() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c == '\\':
			s.i += 2
		case c < 0x20:
			return nil, false
		default:
			s.i++
		}
	}
	return nil, false
}

// expectString reads a string and checks that it decodes to want.
func (s *scanner) expectString(want string, mismatch error) error {
	raw, ok := s.str()
	if !ok {
		return errSyntax
	}
	if !jsonStringEquals(raw, want) {
		return mismatch
	}
	return nil
}

// jsonStringEquals compares a raw JSON string body with want. Only a body
// with escapes, which this server has no reason to write, is decoded.
func jsonStringEquals(raw []byte, want string) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == want
	}
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	var decoded string
	return json.Unmarshal(quoted, &decoded) == nil && decoded == want
}

// uint reads a non-negative decimal integer that fits an int64.
func (s *scanner) uint() (int64, bool) {
	start := s.i
	var n int64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		d := int64(s.b[s.i] - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
		s.i++
	}
	return n, s.i > start
}

// payload reads data written by appendPayload, byte for byte.
func (s *scanner) payload() (payload, error) {
	s.ws()
	var pub, seq, sent int64
	ok := s.literal(`{"p":`) && s.uintTo(&pub) &&
		s.literal(`,"s":`) && s.uintTo(&seq) &&
		s.literal(`,"t":`) && s.uintTo(&sent) &&
		s.literal(`,"x":"`) && s.padding() && s.literal(`"}`)
	if !ok || pub > 1<<31 || seq > 1<<31 {
		return payload{}, errBadPayload
	}
	return payload{pub: int(pub), seq: int(seq), sent: sent}, nil
}

// uintTo is uint for use in a chain of && checks.
func (s *scanner) uintTo(n *int64) bool {
	var ok bool
	*n, ok = s.uint()
	return ok
}

// padding skips the x padding of a payload.
func (s *scanner) padding() bool {
	for s.i < len(s.b) && s.b[s.i] == 'x' {
		s.i++
	}
	return s.i < len(s.b)
}

// skipValue skips any JSON value after white space, following nesting no
// deeper than maxNesting.
func (s *scanner) skipValue(depth int) bool {
	if depth > maxNesting {
		return false
	}
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '{':
		return s.skipComposite(depth, '}', true)
	case c == '[':
		return s.skipComposite(depth, ']', false)
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return s.skipNumber()
	}
}

// skipComposite skips an object (keyed) or an array whose opening bracket
// is next.
func (s *scanner) skipComposite(depth int, end byte, keyed bool) bool {
	s.i++
	if s.consume(end) {
		return true
	}
	for {
		if keyed {
			if _, ok := s.str(); !ok || !s.consume(':') {
				return false
			}
		}
		if !s.skipValue(depth + 1) {
			return false
		}
		if s.consume(end) {
			return true
		}
		if !s.consume(',') {
			return false
		}
	}
}

// skipNumber skips a number, loosely: it only has to find where the value
// ends, and a wrong number in an unknown field is not this tool's concern.
func (s *scanner) skipNumber() bool {
	start := s.i
	for s.i < len(s.b) && isNumberByte(s.b[s.i]) {
		s.i++
	}
	return s.i > start
}

// isNumberByte reports whether c can appear in a JSON number.
func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}
