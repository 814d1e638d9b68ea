// Package history keeps recent events so that a subscriber that reconnects
// can resume where it left off: it asks for everything of its event names
// after the last ID it saw, and learns whether that answer is complete or
// whether the history's bounds dropped something it would have received.
//
// The package owns event IDs (their wire form and strict parsing, since IDs
// come back from clients) and the in-memory store, Memory. Assigning IDs is
// the broadcast hub's job: it appends to the store under its own publish
// lock, so the store sees events in the order subscribers do.
package history

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ID identifies an accepted event. Epoch names the sequence the event
// belongs to (for the in-memory store, the process's start in Unix
// milliseconds; a shared store such as a NATS JetStream stream would use the
// stream's own identity and sequence, so that an ID means the same event on
// every instance); Seq counts events in that epoch from 1. Seq 0 is the
// position before the first event.
type ID struct{ Epoch, Seq uint64 }

// MaxIDLen is the longest wire form: two 20-digit uint64s and the dash;
// writers size their buffers by it.
// ParseID rejects anything longer before looking at it, so that a client
// cannot make it do more than a fixed amount of work.
const MaxIDLen = 20 + 1 + 20

// String is the wire form "<epoch>-<seq>", both in decimal, e.g.
// "1795425601234-42".
func (id ID) String() string {
	var buf [MaxIDLen]byte
	return string(id.AppendTo(buf[:0]))
}

// AppendTo appends the wire form to b. It allocates only when b must grow,
// so that the hub can write IDs into frames on the publish path for free.
func (id ID) AppendTo(b []byte) []byte {
	b = strconv.AppendUint(b, id.Epoch, 10)
	b = append(b, '-')
	return strconv.AppendUint(b, id.Seq, 10)
}

// ErrInvalidID is wrapped by every ParseID error, so that callers can answer
// a malformed resume ID with one client error via errors.Is.
var ErrInvalidID = errors.New("invalid event ID")

// ParseID parses the wire form strictly: two runs of ASCII decimal digits
// joined by one '-', without sign, spaces or leading zeros (except the
// single digit "0"), each fitting in a uint64. Being strict makes the wire
// form canonical: for every s that parses, ParseID(s).String() == s, so an
// ID can be compared or logged as a string. Anything else returns an error
// wrapping ErrInvalidID. The input comes from clients: ParseID never panics
// and looks at no more than MaxIDLen bytes.
func ParseID(s string) (ID, error) {
	if len(s) > MaxIDLen {
		return ID{}, fmt.Errorf("%w: %d bytes, longer than any ID", ErrInvalidID, len(s))
	}
	epochPart, seqPart, found := strings.Cut(s, "-")
	if !found {
		return ID{}, fmt.Errorf("%w %q: want <epoch>-<seq>", ErrInvalidID, s)
	}
	epoch, reason := parseDecimal(epochPart)
	if reason != "" {
		return ID{}, fmt.Errorf("%w %q: epoch %s", ErrInvalidID, s, reason)
	}
	seq, reason := parseDecimal(seqPart)
	if reason != "" {
		return ID{}, fmt.Errorf("%w %q: seq %s", ErrInvalidID, s, reason)
	}
	return ID{Epoch: epoch, Seq: seq}, nil
}

// parseDecimal parses a canonical unsigned decimal, or says why p is not one.
// strconv.ParseUint is not strict enough: it accepts leading zeros, and "+"
// would have to be ruled out separately too.
func parseDecimal(p string) (v uint64, reason string) {
	switch {
	case p == "":
		return 0, "is empty"
	case len(p) > 1 && p[0] == '0':
		return 0, "has a leading zero"
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return 0, "is not a decimal number"
		}
		d := uint64(c - '0')
		if v > (^uint64(0)-d)/10 {
			return 0, "overflows 64 bits"
		}
		v = v*10 + d
	}
	return v, ""
}
