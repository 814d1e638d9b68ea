package cluster

import (
	"strings"
	"unicode/utf8"
)

// How event names become NATS subjects.
//
// An event name may be any UTF-8 text, with dots, spaces, '*' and '>',
// none of which may stand in a NATS subject token as they are. Each name is
// one token after the stream's prefix, "<stream>.<token>", so that the
// stream's per-subject limit is HISTORY_SIZE per event name. The token keeps
// ASCII letters, digits, '-' and '_' as they are, so that names stay readable
// in NATS tools, and writes every other byte as '%' and two upper-case hex
// digits: "order.created" is EVENTSRV.order%2Ecreated, "a b" is a%20b.
// Decoding is strict (upper-case hex only, no kept byte escaped), so that
// each name has exactly one subject.

const hexDigits = "0123456789ABCDEF"

func kept(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_'
}

// appendToken appends name's subject token to b.
func appendToken(b []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if kept(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return b
}

// Subject is the NATS subject of event name in the stream whose subjects
// start with prefix ("EVENTSRV").
func Subject(prefix, name string) string {
	b := make([]byte, 0, len(prefix)+1+len(name)*2)
	b = append(b, prefix...)
	b = append(b, '.')
	return string(appendToken(b, name))
}

// Name decodes a subject made by Subject with the same prefix; ok is false
// for any other subject (one published to the stream by something else),
// including one whose name would not be UTF-8.
func Name(prefix, subject string) (name string, ok bool) {
	if len(subject) < len(prefix)+2 || subject[len(prefix)] != '.' || !strings.HasPrefix(subject, prefix) {
		return "", false
	}
	token := subject[len(prefix)+1:]
	if !strings.ContainsRune(token, '%') {
		// Nothing escaped, as most names: the name is the token, if every
		// byte is one that a token keeps.
		for i := 0; i < len(token); i++ {
			if !kept(token[i]) {
				return "", false
			}
		}
		return token, true
	}
	var b strings.Builder
	b.Grow(len(token))
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case kept(c):
			b.WriteByte(c)
		case c == '%' && i+2 < len(token):
			hi, lo := unhex(token[i+1]), unhex(token[i+2])
			if hi < 0 || lo < 0 {
				return "", false
			}
			d := byte(hi<<4 | lo)
			if kept(d) {
				return "", false // not canonical
			}
			b.WriteByte(d)
			i += 2
		default:
			return "", false
		}
	}
	name = b.String()
	return name, utf8.ValidString(name)
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
