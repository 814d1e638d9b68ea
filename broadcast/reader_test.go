package broadcast

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// maskedFrame builds a client frame: first byte b0, masked with key.
func maskedFrame(b0 byte, key [4]byte, payload []byte) []byte {
	f := []byte{b0, 0x80 | byte(len(payload)), key[0], key[1], key[2], key[3]}
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

func readControlFrom(data []byte) (byte, []byte, error) {
	c := &client{br: bufio.NewReader(bytes.NewReader(data))}
	hdr, err := c.br.Peek(2)
	if err != nil {
		return 0, nil, err
	}
	return c.readControl(hdr)
}

func TestReadControl(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	closeBody := func(code uint16, reason ...byte) []byte {
		return append(binary.BigEndian.AppendUint16(nil, code), reason...)
	}
	cases := []struct {
		name    string
		frame   []byte
		op      byte
		payload []byte
		bad     bool
	}{
		{"ping", maskedFrame(0x89, key, []byte("hello")), opPing, []byte("hello"), false},
		{"pong, empty", maskedFrame(0x8A, key, nil), opPong, []byte{}, false},
		{"close with code", maskedFrame(0x88, key, closeBody(1000, []byte("bye")...)), opClose, closeBody(1000, []byte("bye")...), false},
		{"close, empty", maskedFrame(0x88, key, nil), opClose, []byte{}, false},
		{"125 bytes", maskedFrame(0x89, key, bytes.Repeat([]byte("x"), 125)), opPing, bytes.Repeat([]byte("x"), 125), false},
		{"unmasked", []byte{0x89, 0x00}, 0, nil, true},
		{"not final", maskedFrame(0x09, key, nil), 0, nil, true},
		{"reserved bit", maskedFrame(0xC9, key, nil), 0, nil, true},
		{"126 bytes", append([]byte{0x89, 0x80 | 126, 0, 126}, make([]byte, 130)...), 0, nil, true},
		{"unknown opcode", maskedFrame(0x8B, key, nil), 0, nil, true},
		{"close of 1 byte", maskedFrame(0x88, key, []byte{3}), 0, nil, true},
		{"close code 1005", maskedFrame(0x88, key, binary.BigEndian.AppendUint16(nil, 1005)), 0, nil, true},
		{"close code 999", maskedFrame(0x88, key, binary.BigEndian.AppendUint16(nil, 999)), 0, nil, true},
		{"close code 4999", maskedFrame(0x88, key, binary.BigEndian.AppendUint16(nil, 4999)), opClose, binary.BigEndian.AppendUint16(nil, 4999), false},
		{"close reason not UTF-8", maskedFrame(0x88, key, closeBody(1000, 0xff)), 0, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			op, payload, err := readControlFrom(tc.frame)
			if tc.bad {
				require.ErrorIs(t, err, errProtocol)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.op, op)
			assert.Equal(t, tc.payload, payload)
		})
	}
}

// FuzzReadControl feeds arbitrary bytes as a control frame from a client:
// no panic, and whatever is accepted obeys RFC 6455's rules for it.
func FuzzReadControl(f *testing.F) {
	key := [4]byte{9, 8, 7, 6}
	f.Add(maskedFrame(0x89, key, []byte("ping")))
	f.Add(maskedFrame(0x88, key, binary.BigEndian.AppendUint16(nil, 1001)))
	f.Add(maskedFrame(0x8A, key, nil))
	f.Add([]byte{0x88, 0x81, 0, 0, 0, 0, 3})
	f.Add([]byte{0x89, 0xFE, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 || data[0]&0x0F < opClose {
			return // data frames go to gorilla, not to readControl
		}
		op, payload, err := readControlFrom(data)
		if err != nil {
			if !errors.Is(err, errProtocol) && len(data) >= 6+int(data[1]&0x7F) {
				t.Fatalf("a complete frame failed with %v, not a protocol error", err)
			}
			return
		}
		if len(payload) > 125 || data[0]&0x80 == 0 || data[1]&0x80 == 0 || data[0]&0x70 != 0 {
			t.Fatalf("accepted a frame RFC 6455 forbids: % x", data)
		}
		if op == opClose && len(payload) >= 2 && !utf8.Valid(payload[2:]) {
			t.Fatalf("accepted a close reason that is not UTF-8: % x", payload)
		}
	})
}
