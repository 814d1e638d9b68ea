package broadcast

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/history"
)

func TestAppendJSONString(t *testing.T) {
	// want is what JavaScript's JSON.stringify returns for the same string
	// (invalid UTF-8 first decoded to U+FFFD, as a JavaScript string holds it).
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", `""`},
		{"ascii", "a", `"a"`},
		{"latin", "é", "\"é\""},
		{"cjk", "日本", "\"日本\""},
		{"emoji", "😀", "\"😀\""},
		{"quote", `"`, `"\""`},
		{"backslash", `\`, `"\\"`},
		{"short escapes", "\n\r\t\b\f", `"\n\r\t\b\f"`},
		{"NUL", "\x00", `"\u0000"`},
		{"U+0001", "\x01", `"\u0001"`},
		{"U+001F lower-case hex", "\x1f", `"\u001f"`},
		{"U+000B", "\v", `"\u000b"`},
		{"DEL raw", "\x7f", "\"\x7f\""},
		{"html raw", "<>&", `"<>&"`},
		{"U+2028 raw", "\u2028", "\"\u2028\""},
		{"U+2029 raw", "\u2029", "\"\u2029\""},
		{"slash raw", "/", `"/"`},
		{"invalid UTF-8", "\xff", "\"\uFFFD\""},
		{"invalid UTF-8 inside", "a\xffb", "\"a\uFFFDb\""},
		{"mixed", "a\"b\\c\nd\x02é😀<", `"a\"b\\c\nd\u0002é😀<"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendJSONString(nil, tt.in)
			assert.Equal(t, tt.want, string(got))

			// It appends, keeping what was there.
			prefixed := appendJSONString([]byte("x:"), tt.in)
			assert.Equal(t, "x:"+tt.want, string(prefixed))

			// The result is a JSON string that decodes to the input (or to
			// its U+FFFD-repaired form).
			var back string
			require.NoError(t, json.Unmarshal(got, &back))
			assert.Equal(t, strings.ToValidUTF8(tt.in, "\uFFFD"), back)
		})
	}
}

// parseFrame checks that f is one complete, final, unmasked frame with a
// minimally encoded length (RFC 6455 §5.2), and returns its opcode and
// payload.
func parseFrame(t *testing.T, f []byte) (opcode byte, payload []byte) {
	t.Helper()
	require.GreaterOrEqual(t, len(f), 2, "frame header")
	require.Equal(t, byte(0x80), f[0]&0xF0, "FIN set, RSV1-3 clear")
	opcode = f[0] & 0x0F
	require.Zero(t, f[1]&0x80, "a server frame is not masked")
	n, hl := uint64(f[1]&0x7F), 2
	switch n {
	case 126:
		require.GreaterOrEqual(t, len(f), 4)
		n, hl = uint64(binary.BigEndian.Uint16(f[2:4])), 4
		require.GreaterOrEqual(t, n, uint64(126), "16-bit length used for a short payload")
	case 127:
		require.GreaterOrEqual(t, len(f), 10)
		n, hl = binary.BigEndian.Uint64(f[2:10]), 10
		require.Zero(t, n>>63, "most significant bit of a 64-bit length must be 0")
		require.Greater(t, n, uint64(0xFFFF), "64-bit length used for a 16-bit payload")
	}
	require.Equal(t, uint64(len(f)-hl), n, "payload length")
	return opcode, f[hl:]
}

func TestTextFrame(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte{'p'}, n)
		if n > 0 {
			payload[n-1] = 'z'
		}
		f := textFrame(payload)
		op, got := parseFrame(t, f)
		assert.Equal(t, byte(opText), op, "n=%d", n)
		assert.True(t, bytes.Equal(payload, got), "n=%d: payload", n)

		wantHeader := 2
		switch {
		case n > 65535:
			wantHeader = 10
		case n > 125:
			wantHeader = 4
		}
		assert.Len(t, f, wantHeader+n, "n=%d", n)
	}
}

// testID is the ID of the frames these tests build.
var testID = history.ID{Epoch: 7, Seq: 42}

func TestEventFrame(t *testing.T) {
	overhead := len(`{"type":"event","id":"7-42","event":"e","data":}`)
	for _, n := range []int{overhead + 2, 125, 126, 65535, 65536} {
		data := []byte(`"` + strings.Repeat("d", n-overhead-2) + `"`)
		f := eventFrame(testID, "e", data)
		op, payload := parseFrame(t, f)
		assert.Equal(t, byte(opText), op)
		require.Len(t, payload, n)
		assert.Equal(t, `{"type":"event","id":"7-42","event":"e","data":`+string(data)+`}`, string(payload))
		assert.Equal(t, string(data), string(eventData(f, len(data))))
	}
}

func TestEventFrameContent(t *testing.T) {
	tests := []struct {
		name, event, data, want string
	}{
		{"data kept byte for byte", "a", `{"x" : 1}`, `{"type":"event","id":"7-42","event":"a","data":{"x" : 1}}`},
		{"escapes in data kept", "a", `"\u00e9\n"`, `{"type":"event","id":"7-42","event":"a","data":"\u00e9\n"}`},
		{"numbers kept", "a", `[1e3,-0.50]`, `{"type":"event","id":"7-42","event":"a","data":[1e3,-0.50]}`},
		{"null", "a", `null`, `{"type":"event","id":"7-42","event":"a","data":null}`},
		{"name escaped as JSON.stringify does", "<\"é\"\n>", `1`, "{\"type\":\"event\",\"id\":\"7-42\",\"event\":\"<\\\"é\\\"\\n>\",\"data\":1}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, payload := parseFrame(t, eventFrame(testID, tt.event, []byte(tt.data)))
			assert.Equal(t, tt.want, string(payload))
			require.True(t, json.Valid(payload))
			var m struct {
				Type  string          `json:"type"`
				Event string          `json:"event"`
				Data  json.RawMessage `json:"data"`
			}
			require.NoError(t, json.Unmarshal(payload, &m))
			assert.Equal(t, "event", m.Type)
			assert.Equal(t, tt.event, m.Event)
			assert.Equal(t, tt.data, string(m.Data))
		})
	}
}

func TestCloseFrame(t *testing.T) {
	closePayload := func(t *testing.T, f []byte) (int, string) {
		t.Helper()
		op, p := parseFrame(t, f)
		require.Equal(t, byte(opClose), op)
		require.GreaterOrEqual(t, len(p), 2)
		require.LessOrEqual(t, len(p), 125, "a control frame payload is at most 125 bytes")
		return int(binary.BigEndian.Uint16(p)), string(p[2:])
	}

	tests := []struct {
		name       string
		code       int
		reason     string
		wantReason string
	}{
		{"going away", closeGoingAway, "going away", "going away"},
		{"slow", closePolicy, reasonSlow, reasonSlow},
		{"too big", websocket.CloseMessageTooBig, "message too big", "message too big"},
		{"no reason", closeNormal, "", ""},
		{"123 bytes kept", closeNormal, strings.Repeat("r", 123), strings.Repeat("r", 123)},
		{"124 bytes truncated", closeNormal, strings.Repeat("r", 124), strings.Repeat("r", 123)},
		{"long truncated", closePolicy, strings.Repeat("abc", 100), strings.Repeat("abc", 41)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason := closePayload(t, closeFrame(tt.code, tt.reason))
			assert.Equal(t, tt.code, code)
			assert.Equal(t, tt.wantReason, reason)
		})
	}
}

func TestCloseFrameTruncatesOnRuneBoundary(t *testing.T) {
	reason := strings.Repeat("é", 62) // 124 bytes
	_, p := parseFrame(t, closeFrame(closeNormal, reason))
	assert.True(t, utf8.Valid(p[2:]), "close reason %q must be valid UTF-8", p[2:])
	assert.Equal(t, strings.Repeat("é", 61), string(p[2:]))
}

func TestControlFrames(t *testing.T) {
	op, p := parseFrame(t, pingFrame)
	assert.Equal(t, byte(opPing), op)
	assert.Empty(t, p)
	assert.Equal(t, []byte{0x89, 0x00}, pingFrame)

	op, p = parseFrame(t, controlFrame(opPong, []byte("hi")))
	assert.Equal(t, byte(opPong), op)
	assert.Equal(t, "hi", string(p))

	max := bytes.Repeat([]byte{'x'}, 125)
	op, p = parseFrame(t, controlFrame(opPong, max))
	assert.Equal(t, byte(opPong), op)
	assert.Equal(t, max, p)
}

func TestReplies(t *testing.T) {
	for typ, f := range map[string][]byte{"init": initOK, "subscribe": subscribeOK, "unsubscribe": unsubscribeOK} {
		op, p := parseFrame(t, f)
		assert.Equal(t, byte(opText), op)
		assert.Equal(t, `{"type":"`+typ+`","code":"OK"}`, string(p), "byte for byte the old service's")
	}
	op, p := parseFrame(t, (&refusal{InitForbidden, `may not "x" <y>`}).reply("subscribe"))
	assert.Equal(t, byte(opText), op)
	assert.Equal(t, `{"type":"subscribe","code":"FORBIDDEN","message":"may not \"x\" <y>"}`, string(p))
}
