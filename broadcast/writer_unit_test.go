package broadcast

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordingConn keeps every write, each as its own slice.
type recordingConn struct {
	discardConn
	mu     sync.Mutex
	writes [][]byte
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// TestWriteFrames: a writer coalesces frames into writes of at most
// writeChunk bytes, in order, and writes a frame larger than writeChunk on
// its own.
func TestWriteFrames(t *testing.T) {
	const k = 1 << 10
	frame := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	for _, tc := range []struct {
		name   string
		frames [][]byte
		writes []int // the size of each write
	}{
		{"one small", [][]byte{frame(10, 'a')}, []int{10}},
		{"exactly a chunk", [][]byte{frame(40*k, 'a'), frame(24*k, 'b'), frame(1, 'c')}, []int{64 * k, 1}},
		{"one byte over", [][]byte{frame(40*k, 'a'), frame(24*k+1, 'b')}, []int{40 * k, 24*k + 1}},
		{"large alone, in order", [][]byte{frame(10, 'a'), frame(70*k, 'b'), frame(10, 'c'), frame(20, 'd')}, []int{10, 70 * k, 30}},
		{"large first", [][]byte{frame(64*k+1, 'a'), frame(5, 'b')}, []int{64*k + 1, 5}},
		{"a chunk-sized frame", [][]byte{frame(64*k, 'a'), frame(5, 'b')}, []int{64 * k, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, _ := detachedClient(t, testOptions())
			nc := &recordingConn{}
			c.nc = nc
			bp := writeBufs.Get().(*[]byte)
			defer writeBufs.Put(bp)
			require.NoError(t, c.writeFrames(tc.frames, bp))

			var sizes []int
			for _, w := range nc.writes {
				sizes = append(sizes, len(w))
			}
			assert.Equal(t, tc.writes, sizes)
			assert.Equal(t, bytes.Join(tc.frames, nil), bytes.Join(nc.writes, nil), "every byte, in order")
		})
	}
}

// TestLateReaderGetsEverything: a subscriber that reads nothing while
// megabytes are published to it fills its socket, so that the flushers'
// non-blocking writes fall short and batches pass writeChunk; its own
// writer then finishes them. When it reads, every event is there, whole and
// in order.
func TestLateReaderGetsEverything(t *testing.T) {
	opts := testOptions()
	opts.QueueMaxBytes = 64 << 20
	h, url := newTestHub(t, opts)
	conn := subscribe(t, websocket.DefaultDialer, url)
	const n = 300
	data := []byte(`"` + strings.Repeat("d", 20<<10) + `"`)
	for range n {
		_, err := h.Publish("a", data)
		require.NoError(t, err)
	}
	for i := range n {
		msg := readText(t, conn)
		require.Equal(t, fmt.Sprintf(`{"type":"event","id":"7-%d","event":"a","data":%s}`, i+1, data), msg, "event %d", i+1)
	}
}
