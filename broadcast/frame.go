package broadcast

import (
	"encoding/binary"
	"unicode/utf8"

	"eventsrv/history"
)

// WebSocket opcodes (RFC 6455 §5.2) of the frames this server writes itself.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// maxFrameHeader is the longest unmasked server frame header: 2 bytes plus
// an 8-byte extended length.
const maxFrameHeader = 10

// newFrame returns a complete, unmasked, final WebSocket frame whose payload
// is built by appendPayload. The frame is built once and then shared,
// read-only, by every subscriber it is queued to: that is what makes a
// publish cost one encoding however many subscribers receive it.
func newFrame(opcode byte, sizeHint int, appendPayload func([]byte) []byte) []byte {
	buf := make([]byte, maxFrameHeader, maxFrameHeader+sizeHint)
	buf = appendPayload(buf)
	n := len(buf) - maxFrameHeader
	var h [maxFrameHeader]byte
	h[0] = 0x80 | opcode // FIN
	hl := 2
	switch {
	case n <= 125:
		h[1] = byte(n)
	case n <= 0xFFFF:
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
		hl = 4
	default:
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
		hl = 10
	}
	start := maxFrameHeader - hl
	copy(buf[start:], h[:hl])
	return buf[start:]
}

// textFrame returns a text frame holding payload.
func textFrame(payload []byte) []byte {
	return newFrame(opText, len(payload), func(b []byte) []byte { return append(b, payload...) })
}

// eventFrame encodes a delivery:
// {"type":"event","id":"<id>","event":<name>,"data":<data>}. data is copied
// verbatim; it was validated as JSON by the publisher's side. The ID comes
// after the type so that the frame still begins as the old service's did.
func eventFrame(id history.ID, name string, data []byte) []byte {
	size := len(`{"type":"event","id":"","event":,"data":}`) + history.MaxIDLen + len(name) + 2 + len(data)
	return newFrame(opText, size, func(b []byte) []byte {
		b = append(b, `{"type":"event","id":"`...)
		b = id.AppendTo(b)
		b = append(b, `","event":`...)
		b = appendJSONString(b, name)
		b = append(b, `,"data":`...)
		b = append(b, data...)
		return append(b, '}')
	})
}

// eventData returns the data inside a frame built by eventFrame, without
// copying: the history keeps the frame and reads the data from it (and,
// seeing one array, counts its bytes once). Nothing writes to either.
func eventData(frame []byte, dataLen int) []byte {
	return frame[len(frame)-1-dataLen : len(frame)-1]
}

// closeFrame returns a close frame with a status code and a reason, which
// the peer sees as the close reason.
func closeFrame(code int, reason string) []byte {
	if len(reason) > 123 { // a control frame payload is at most 125 bytes
		// Cut on a character boundary: the reason must be valid UTF-8.
		cut := 123
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	return newFrame(opClose, 2+len(reason), func(b []byte) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(code))
		return append(b, reason...)
	})
}

// controlFrame returns a ping or pong frame carrying payload (at most 125
// bytes, which the reader guarantees for pings it echoes).
func controlFrame(opcode byte, payload []byte) []byte {
	return newFrame(opcode, len(payload), func(b []byte) []byte { return append(b, payload...) })
}

// appendJSONString appends s as a JSON string exactly as JavaScript's
// JSON.stringify writes it, so that event names reach subscribers byte for
// byte as the Node.js service sent them: only '"', '\\' and control
// characters are escaped (encoding/json would also escape <, >, & and
// U+2028/U+2029). Invalid UTF-8 becomes U+FFFD, as in a JavaScript string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, "\uFFFD"...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
