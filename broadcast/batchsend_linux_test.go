package broadcast

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
			requireAllDelivered(t, h, url, 2*flushBatch+5, 5)
			submissions := h.flush.submissions.Load()
			if on {
				assert.Positive(t, submissions, "the flushers wrote through io_uring")
			} else {
				assert.Zero(t, submissions, "IOURing false: one send(2) per write")
			}
		})
	}
}

// TestIOURingRefused: where io_uring is refused (Docker's default seccomp
// profile, an old kernel), the first ring's refusal is logged once, no
// flusher of this hub or a later one tries again, and every write is a
// send(2) that delivers everything.
func TestIOURingRefused(t *testing.T) {
	calls := 0
	saved := ringProbe
	ringProbe = &probe{newRing: func(uint32) (*uring.Ring, error) {
		calls++
		return nil, fmt.Errorf("%w: io_uring_setup: operation not permitted (the test)", uring.ErrUnavailable)
	}}
	t.Cleanup(func() { ringProbe = saved })

	var logs syncBuffer
	for hub := range 2 {
		opts := testOptions()
		opts.Log = slog.New(slog.NewTextHandler(&logs, nil))
		h, url := newTestHub(t, opts)
		requireAllDelivered(t, h, url, flushBatch+5, 3)
		assert.Zero(t, h.flush.submissions.Load(), "hub %d: a submission without a ring", hub)
	}
	assert.Equal(t, 1, calls, "a ring was tried again after the refusal")
	assert.Equal(t, 1, strings.Count(logs.String(), "io_uring refused"), "logged once: %s", logs.String())
	assert.Contains(t, logs.String(), "operation not permitted (the test)")
}

// requireAllDelivered connects subs subscribers to h's event "a" at url,
// publishes events 1..n (IDs 7-1, 7-2, ...), and requires every subscriber
// to get all of them, in order.
func requireAllDelivered(t *testing.T, h *Hub, url string, subs, n int) {
	t.Helper()
	conns := make([]*websocket.Conn, subs)
	for i := range conns {
		conns[i] = subscribe(t, websocket.DefaultDialer, url)
	}
	for seq := 1; seq <= n; seq++ {
		_, err := h.Publish("a", []byte(fmt.Sprint(seq)))
		require.NoError(t, err)
	}
	for i, conn := range conns {
		for seq := 1; seq <= n; seq++ {
			require.Equal(t, fmt.Sprintf(`{"type":"event","id":"7-%d","event":"a","data":%d}`, seq, seq), readText(t, conn), "subscriber %d", i)
		}
	}
}
