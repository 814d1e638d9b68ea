package broadcast

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/history"
)

// TestSSEEventFrame pins the bytes of an SSE delivery. JSON can hold a line
// break only as white space between tokens; each of "\n", "\r\n" and a lone
// "\r" ends an SSE line, so each becomes a data line of its own, and
// EventSource joins the lines with "\n" into JSON that parses to the same
// value.
func TestSSEEventFrame(t *testing.T) {
	tests := []struct {
		name, event, data, want string
	}{
		{"one line", "a", `{"x":1}`, "id: 7-42\nevent: a\ndata: {\"x\":1}\n\n"},
		{"LF", "a", "{\n\"x\":1\n}", "id: 7-42\nevent: a\ndata: {\ndata: \"x\":1\ndata: }\n\n"},
		{"CRLF is one break", "a", "{\r\n\"x\":1\r\n}", "id: 7-42\nevent: a\ndata: {\ndata: \"x\":1\ndata: }\n\n"},
		{"lone CR", "a", "[1,\r2]", "id: 7-42\nevent: a\ndata: [1,\ndata: 2]\n\n"},
		{"CR CR LF is two breaks", "a", "[1,\r\r\n2]", "id: 7-42\nevent: a\ndata: [1,\ndata: \ndata: 2]\n\n"},
		{"LF CR is two breaks", "a", "[1,\n\r2]", "id: 7-42\nevent: a\ndata: [1,\ndata: \ndata: 2]\n\n"},
		{"blank line", "a", "[1,\n\n2]", "id: 7-42\nevent: a\ndata: [1,\ndata: \ndata: 2]\n\n"},
		{"break first", "a", "\r\n1", "id: 7-42\nevent: a\ndata: \ndata: 1\n\n"},
		{"lone CR last", "a", "1\r", "id: 7-42\nevent: a\ndata: 1\n\n"},
		{"LF last", "a", "1\n", "id: 7-42\nevent: a\ndata: 1\n\n"},
		{"CRLF last", "a", "1\r\n", "id: 7-42\nevent: a\ndata: 1\n\n"},
		{"tabs and spaces kept", "a", "\t[ 1 ,\t2 ]", "id: 7-42\nevent: a\ndata: \t[ 1 ,\t2 ]\n\n"},
		{"name as is", "a b:é\uFFFD", `1`, "id: 7-42\nevent: a b:é\uFFFD\ndata: 1\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, string(sseEventFrame(testID, tt.event, []byte(tt.data))))
		})
	}
}

// TestSSEEventFrameJoinsBack decodes frames as EventSource does and checks
// that the data lines join back into data with each line break as "\n".
func TestSSEEventFrameJoinsBack(t *testing.T) {
	for _, data := range []string{"1", "{\n \"a\" : [\r\n1,\r2\n\n]\r}", "\n\n", "\r\r", " "} {
		f := string(sseEventFrame(testID, "e", []byte(data)))
		require.True(t, strings.HasSuffix(f, "\n\n"), "%q: a frame ends with a blank line", f)
		var lines []string
		for _, l := range strings.Split(strings.TrimSuffix(f, "\n\n"), "\n") {
			if v, ok := strings.CutPrefix(l, "data: "); ok {
				lines = append(lines, v)
			}
		}
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(data)
		assert.Equal(t, strings.TrimSuffix(want, "\n"), strings.Join(lines, "\n"), "%q", data)
	}
}

// TestSSEEventFrameOneAllocation: the frame's buffer is sized up front,
// even for the longest ID, so that a publish allocates one SSE frame.
func TestSSEEventFrameOneAllocation(t *testing.T) {
	longest := history.ID{Epoch: math.MaxUint64, Seq: math.MaxUint64}
	require.Len(t, longest.String(), history.MaxIDLen)
	for _, data := range [][]byte{nil, []byte("1"), []byte(strings.Repeat("x", 1000))} {
		allocs := testing.AllocsPerRun(20, func() { _ = sseEventFrame(longest, "order.created", data) })
		assert.Equal(t, 1.0, allocs, "data of %d bytes", len(data))
	}
	f := sseEventFrame(longest, strings.Repeat("n", 100), []byte(strings.Repeat("d", 100)))
	assert.Equal(t, "id: "+longest.String()+"\nevent: "+strings.Repeat("n", 100)+"\ndata: "+strings.Repeat("d", 100)+"\n\n", string(f))
}

func TestSSEFixedFrames(t *testing.T) {
	assert.Equal(t, "id: 7-42\n\n", string(ssePosition(testID)))
	assert.Equal(t, "id: 0-0\n\n", string(ssePosition(history.ID{})))
	assert.Equal(t, "event: reset\ndata: {\"recovered\":false}\n\n", string(sseReset))
	assert.Equal(t, ": ping\n\n", string(ssePing))
	assert.Equal(t, ": close slow consumer\n\n", string(sseComment("close "+reasonSlow)))
	assert.Equal(t, ": a  b c\n\n", string(sseComment("a\r\nb\rc")), "a comment stays one line")
}

func TestValidSSEName(t *testing.T) {
	for name, want := range map[string]bool{
		"a": true, "a b": true, "é": true, "a:b": true, "\uFFFD": true,
		"": false, "a\nb": false, "a\rb": false, "\n": false, "a\r": false,
	} {
		assert.Equal(t, want, validSSEName(name), "%q", name)
	}
	assert.True(t, allValid([]string{"a", "b c"}))
	assert.True(t, allValid(nil))
	assert.False(t, allValid([]string{"a", "b\n"}))
	assert.False(t, allValid([]string{"", "a"}))
}
