package broadcast

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEventNameBytes pins the bytes of event names in a WebSocket frame at
// the edges of appendJSONString's classes: the first printable byte
// (space), the last ASCII one, the first byte past ASCII, and U+FFFD
// written literally, which must pass as its three bytes rather than be
// taken for the replacement of an invalid byte.
func TestEventNameBytes(t *testing.T) {
	tests := []struct {
		name, event, want string
	}{
		{"space", "a b", `"a b"`},
		{"only a space", " ", `" "`},
		{"U+001F escaped", "a\x1fb", `"a\u001fb"`},
		{"DEL raw", "a\x7fb", "\"a\x7fb\""},
		{"tilde raw", "~", `"~"`},
		{"literal U+FFFD", "a\uFFFDb", "\"a\xef\xbf\xbdb\""},
		{"literal U+FFFD twice", "\uFFFD\uFFFD", "\"\xef\xbf\xbd\xef\xbf\xbd\""},
		{"lone continuation byte", "a\x80b", "\"a\xef\xbf\xbdb\""},
		{"truncated rune", "a\xc3", "\"a\xef\xbf\xbd\""},
		{"invalid then valid", "\xffé", "\"\xef\xbf\xbdé\""},
		{"U+0080 as UTF-8", "\u0080", "\"\xc2\x80\""},
		{"U+10FFFF", "\U0010FFFF", "\"\xf4\x8f\xbf\xbf\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, payload := parseFrame(t, eventFrame(testID, tt.event, []byte(`1`)))
			assert.Equal(t, `{"type":"event","id":"7-42","event":`+tt.want+`,"data":1}`, string(payload))
			assert.Equal(t, tt.want, string(appendJSONString(nil, tt.event)))
		})
	}
}

// TestValidClosePayload walks the close codes at each edge of the ranges a
// peer may send (RFC 6455 §7.4): 1000-1003, 1007-1011 and 3000-4999.
func TestValidClosePayload(t *testing.T) {
	valid := map[int]bool{
		0: false, 999: false,
		1000: true, 1001: true, 1002: true, 1003: true,
		1004: false, 1005: false, 1006: false,
		1007: true, 1008: true, 1011: true,
		1012: false, 1015: false, 2999: false,
		3000: true, 4000: true, 4001: true, 4999: true,
		5000: false, 65535: false,
	}
	for code, want := range valid {
		p := binary.BigEndian.AppendUint16(nil, uint16(code))
		err := validClosePayload(p)
		if want {
			assert.NoError(t, err, "code %d", code)
			// The same through the reader, as a masked frame from a peer.
			op, payload, err := readControlFrom(maskedFrame(0x88, [4]byte{1, 2, 3, 4}, append(p, "bye"...)))
			require.NoError(t, err, "code %d", code)
			assert.Equal(t, byte(opClose), op)
			assert.Equal(t, append(p, "bye"...), payload)
		} else {
			assert.ErrorIs(t, err, errProtocol, "code %d", code)
		}
	}
	assert.NoError(t, validClosePayload(nil), "a close without a code")
	assert.ErrorIs(t, validClosePayload([]byte{0x03}), errProtocol, "half a code")
	assert.NoError(t, validClosePayload(append(binary.BigEndian.AppendUint16(nil, 1000), "é"...)))
	assert.ErrorIs(t, validClosePayload(append(binary.BigEndian.AppendUint16(nil, 1000), 0xc3)), errProtocol)
}
