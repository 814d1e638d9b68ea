package broadcast

import (
	"errors"
	"fmt"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/internal/uring"
)

// TestWritesWithAndWithoutIOURing: every subscriber gets every event in
// order whether the flushers submit their batches through io_uring or write
// one send(2) at a time, and the hub uses the ring only when told to.
func TestWritesWithAndWithoutIOURing(t *testing.T) {
	ring, err := uring.New(flushBatch)
	if errors.Is(err, uring.ErrUnavailable) {
		t.Skipf("io_uring refused here: %v", err)
	}
	require.NoError(t, err)
	ring.Close()
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("io_uring=%v", on), func(t *testing.T) {
			opts := testOptions()
			opts.IOURing = on
			h, url := newTestHub(t, opts)
			// More subscribers than one flusher batch, so that batches
			// are full and the helper may share them.
			conns := make([]*websocket.Conn, 2*flushBatch+5)
			for i := range conns {
				conns[i] = subscribe(t, websocket.DefaultDialer, url)
			}
			for seq := 1; seq <= 5; seq++ {
				_, err := h.Publish("a", []byte(fmt.Sprint(seq)))
				require.NoError(t, err)
			}
			for i, conn := range conns {
				for seq := 1; seq <= 5; seq++ {
					require.Equal(t, fmt.Sprintf(`{"type":"event","id":"7-%d","event":"a","data":%d}`, seq, seq), readText(t, conn), "subscriber %d", i)
				}
			}
			submissions := h.flush.submissions.Load()
			if on {
				assert.Positive(t, submissions, "the flushers wrote through io_uring")
			} else {
				assert.Zero(t, submissions, "IOURing false: one send(2) per write")
			}
		})
	}
}
