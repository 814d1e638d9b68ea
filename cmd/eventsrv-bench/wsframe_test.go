package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordingSink writes down what frameReader found, one line per call.
type recordingSink struct{ got []string }

func (r *recordingSink) message(kind int, frame []byte) {
	r.got = append(r.got, fmt.Sprintf("message %d %q", kind, frame))
}
func (r *recordingSink) ping(payload []byte) { r.got = append(r.got, fmt.Sprintf("ping %q", payload)) }
func (r *recordingSink) closed(ce *websocket.CloseError) {
	r.got = append(r.got, fmt.Sprintf("close %d %q", ce.Code, ce.Text))
}

// serverFrame is a frame as a server writes it: unmasked.
func serverFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, byte(n))
	case n <= 0xffff:
		out = append(out, 126, byte(n>>8), byte(n))
	default:
		out = append(out, 127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	return append(out, payload...)
}

func cat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

func TestFrameReaderFeed(t *testing.T) {
	big := bytes.Repeat([]byte("b"), 300)
	huge := bytes.Repeat([]byte("h"), 70000)
	closeBody := websocket.FormatCloseMessage(4005, "events lost")
	tests := []struct {
		name  string
		in    []byte
		limit int
		want  []string
		used  int // -1: all of in
		err   error
	}{
		{name: "one text frame", in: serverFrame(true, opText, []byte("hi")),
			want: []string{`message 1 "hi"`}, used: -1},
		{name: "two frames in one read", in: cat(serverFrame(true, opText, []byte("a")), serverFrame(true, opBinary, []byte("b"))),
			want: []string{`message 1 "a"`, `message 2 "b"`}, used: -1},
		{name: "16-bit length", in: serverFrame(true, opText, big),
			want: []string{fmt.Sprintf("message 1 %q", big)}, used: -1},
		{name: "64-bit length", in: serverFrame(true, opText, huge), limit: 1 << 20,
			want: []string{fmt.Sprintf("message 1 %q", huge)}, used: -1},
		{name: "one byte of a header", in: []byte{0x81}, used: 0},
		{name: "16-bit length cut off", in: []byte{0x81, 126, 1}, used: 0},
		{name: "64-bit length cut off", in: []byte{0x81, 127, 0, 0, 0}, used: 0},
		{name: "payload cut off", in: serverFrame(true, opText, []byte("hello"))[:5], used: 0},
		{name: "a whole frame, then part of one",
			in:   cat(serverFrame(true, opText, []byte("a")), serverFrame(true, opText, []byte("bc"))[:3]),
			want: []string{`message 1 "a"`}, used: 3},
		{name: "fragments", in: cat(serverFrame(false, opText, []byte("ab")), serverFrame(false, opContinuation, []byte("cd")),
			serverFrame(true, opPing, []byte("p")), serverFrame(true, opContinuation, []byte("e"))),
			want: []string{`ping "p"`, `message 1 "abcde"`}, used: -1},
		{name: "fragments then a whole message",
			in: cat(serverFrame(false, opBinary, []byte("ab")), serverFrame(true, opContinuation, []byte("c")),
				serverFrame(true, opText, []byte("d"))),
			want: []string{`message 2 "abc"`, `message 1 "d"`}, used: -1},
		{name: "pong ignored", in: serverFrame(true, opPong, []byte("x")), used: -1},
		{name: "close with code and reason", in: cat(serverFrame(true, opClose, closeBody), serverFrame(true, opText, []byte("after"))),
			want: []string{`close 4005 "events lost"`}, used: 2 + len(closeBody)},
		{name: "empty close", in: serverFrame(true, opClose, nil), want: []string{`close 1005 ""`}, used: -1},
		{name: "close of one byte", in: serverFrame(true, opClose, []byte{3}), err: errBadCloseFrame, used: 3},
		{name: "close reason not UTF-8", in: serverFrame(true, opClose, []byte{3, 232, 0xff}), err: errBadCloseFrame, used: 5},
		{name: "masked", in: []byte{0x81, 0x82, 1, 2, 3, 4, 5, 6}, err: errMaskedFrame},
		{name: "reserved bit", in: []byte{0xC1, 0}, err: errReservedBits},
		{name: "unknown opcode", in: serverFrame(true, 0x3, nil), err: errUnknownOpcode, used: 2},
		{name: "fragmented ping", in: serverFrame(false, opPing, nil), err: errBadControl},
		{name: "oversized ping", in: serverFrame(true, opPing, big), err: errBadControl},
		{name: "continuation first", in: serverFrame(true, opContinuation, []byte("x")), err: errBadContinuation, used: 3},
		{name: "text inside fragments", in: cat(serverFrame(false, opText, []byte("a")), serverFrame(true, opText, []byte("b"))),
			err: errBadContinuation, used: 6},
		{name: "over the limit", in: serverFrame(true, opText, big), limit: 299, err: errReadLimit},
		{name: "a huge length is refused before its payload", in: []byte{0x81, 127, 0x7f, 0, 0, 0, 0, 0, 0, 0}, err: errReadLimit},
		{name: "fragments over the limit", limit: 3,
			in:  cat(serverFrame(false, opText, []byte("ab")), serverFrame(true, opContinuation, []byte("cd"))),
			err: errReadLimit, used: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := frameReader{limit: tt.limit}
			if r.limit == 0 {
				r.limit = 1024
			}
			var sink recordingSink
			used, err := r.feed(tt.in, &sink)
			require.ErrorIs(t, err, tt.err)
			assert.Equal(t, tt.want, sink.got)
			if tt.used < 0 {
				tt.used = len(tt.in)
			}
			assert.Equal(t, tt.used, used, "bytes consumed")
		})
	}
}

// feedInPieces feeds data as a reader would get it from reads of the given
// sizes, keeping what was not consumed for the next read, and returns what
// the sink saw and the first error.
func feedInPieces(data []byte, sizes []int, limit int) ([]string, error) {
	r := frameReader{limit: limit}
	var sink recordingSink
	var pending []byte
	for i := 0; len(data) > 0; i++ {
		n := min(len(data), max(1, sizes[i%len(sizes)]))
		pending = append(pending, data[:n]...)
		data = data[n:]
		used, err := r.feed(pending, &sink)
		if err != nil {
			return sink.got, err
		}
		pending = append(pending[:0], pending[used:]...)
		if len(sink.got) > 0 && bytes.HasPrefix([]byte(sink.got[len(sink.got)-1]), []byte("close")) {
			break
		}
	}
	return sink.got, nil
}

func TestFrameReaderAnySplit(t *testing.T) {
	stream := cat(serverFrame(true, opText, []byte(`{"type":"event"}`)), serverFrame(true, opPing, []byte("p")),
		serverFrame(false, opText, bytes.Repeat([]byte("x"), 200)), serverFrame(true, opContinuation, []byte("y")),
		serverFrame(true, opClose, websocket.FormatCloseMessage(1000, "bye")))
	whole, err := feedInPieces(stream, []int{len(stream)}, 4096)
	require.NoError(t, err)
	require.Len(t, whole, 4)
	for size := 1; size < 20; size++ {
		got, err := feedInPieces(stream, []int{size}, 4096)
		require.NoError(t, err)
		assert.Equal(t, whole, got, "reads of %d bytes", size)
	}
}

// FuzzFrameReader: whatever the server sends, the reader never panics, and
// how the bytes are split into reads changes nothing it reports.
func FuzzFrameReader(f *testing.F) {
	f.Add(serverFrame(true, opText, []byte("hi")), 3)
	f.Add(cat(serverFrame(false, opText, []byte("ab")), serverFrame(true, opContinuation, []byte("c"))), 1)
	f.Add(serverFrame(true, opClose, websocket.FormatCloseMessage(1001, "going away")), 2)
	f.Add([]byte{0x81, 127, 0, 0, 0, 0, 0, 0, 1, 0}, 4)
	f.Fuzz(func(t *testing.T, data []byte, size int) {
		if size < 0 {
			size = -size
		}
		whole, wholeErr := feedInPieces(data, []int{len(data) + 1}, 512)
		split, splitErr := feedInPieces(data, []int{size%7 + 1, size%13 + 1}, 512)
		assert.Equal(t, whole, split)
		assert.Equal(t, wholeErr, splitErr)
	})
}

func TestAppendClientFrame(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	for _, n := range []int{0, 5, 125, 126, 300} {
		payload := bytes.Repeat([]byte("z"), n)
		frame := appendClientFrame(nil, opPong, payload, key)
		assert.Equal(t, byte(0x80|opPong), frame[0], "FIN and opcode")
		assert.NotZero(t, frame[1]&0x80, "a client frame is masked")
		head := 2
		if n >= 126 {
			head = 4
			assert.Equal(t, n, int(binary.BigEndian.Uint16(frame[2:])))
		} else {
			assert.Equal(t, n, int(frame[1]&0x7f))
		}
		assert.Equal(t, key[:], frame[head:head+4])
		got := frame[head+4:]
		for i := range got {
			got[i] ^= key[i&3]
		}
		assert.Equal(t, payload, got)
	}
}
