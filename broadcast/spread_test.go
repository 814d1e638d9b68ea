package broadcast

import (
	"fmt"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSpreadDecision: a burst is shared with the helper only when it is big
// enough, finds the list empty and every flusher idle, and the last drain
// had nothing to batch; the helper's share is 1/(flushers+1) of it.
func TestSpreadDecision(t *testing.T) {
	for _, tc := range []struct {
		name     string
		flushers int
		burst    int
		queued   int // already on the list
		busy     int
		batching bool
		share    int
	}{
		{name: "quiet server, big burst", flushers: 1, burst: 1000, share: 500},
		{name: "three flushers", flushers: 3, burst: 1000, share: 250},
		{name: "smallest burst that is shared", flushers: 1, burst: spreadMin, share: spreadMin / 2},
		{name: "too small to share", flushers: 1, burst: spreadMin - 1},
		{name: "a flusher is writing", flushers: 1, burst: 1000, busy: 1},
		{name: "the list is not empty", flushers: 1, burst: 1000, queued: 1},
		{name: "the last drain batched", flushers: 1, burst: 1000, batching: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f flushers
			f.init(tc.flushers)
			f.ready = make([]*client, tc.queued)
			f.busy, f.batching = tc.busy, tc.batching
			f.add(make([]*client, tc.burst)...)
			assert.Equal(t, tc.share, f.spread)
			assert.Len(t, f.ready, tc.queued+tc.burst, "every client is on the list")
		})
	}
}

// TestDrainedVerdict: a drain batched when its writes carried more than one
// frame in eight above one frame each; a drain without writes changes
// nothing; a drain ends any spread and starts the counts afresh.
func TestDrainedVerdict(t *testing.T) {
	for _, tc := range []struct {
		writes, frames int
		before, after  bool
	}{
		{writes: 1000, frames: 1000, before: true, after: false},
		{writes: 1000, frames: 1125, before: true, after: false},
		{writes: 1000, frames: 1126, before: false, after: true},
		{writes: 100, frames: 1000, before: false, after: true},
		{writes: 0, frames: 0, before: true, after: true},
		{writes: 0, frames: 0, before: false, after: false},
	} {
		t.Run(fmt.Sprintf("%d frames in %d writes, batching %v before", tc.frames, tc.writes, tc.before), func(t *testing.T) {
			var f flushers
			f.init(1)
			f.writes, f.frames, f.batching, f.spread = tc.writes, tc.frames, tc.before, 7
			f.drained()
			assert.Equal(t, tc.after, f.batching)
			assert.Zero(t, f.writes)
			assert.Zero(t, f.frames)
			assert.Zero(t, f.spread)
		})
	}
}

// TestQuietBurstIsShared: on a quiet hub, one event to many subscribers is
// written by the flushers and the helper together, each subscriber once;
// the helper takes no more than its share.
func TestQuietBurstIsShared(t *testing.T) {
	h, url := newTestHub(t, testOptions())
	const subs = 3 * spreadMin
	conns := make([]*websocket.Conn, subs)
	for i := range conns {
		conns[i] = subscribe(t, websocket.DefaultDialer, url)
	}
	// A flusher that has written the last frame of a burst may not have
	// counted itself idle yet when the next publish comes: a burst is then
	// not shared, so it takes a few rounds at most.
	var helped, rounds int
	for helped == 0 && rounds < 20 {
		rounds++
		_, err := h.Publish("a", []byte(fmt.Sprint(rounds)))
		require.NoError(t, err)
		for i, conn := range conns {
			require.Equal(t, fmt.Sprintf(`{"type":"event","id":"7-%d","event":"a","data":%d}`, rounds, rounds), readText(t, conn), "subscriber %d", i)
		}
		h.flush.mu.Lock()
		helped = h.flush.helped
		assert.False(t, h.flush.batching, "one frame per write is no batching")
		h.flush.mu.Unlock()
	}
	assert.Positive(t, helped, "the helper wrote some of %d bursts", rounds)
	assert.LessOrEqual(t, helped, rounds*subs/(h.flush.n+1), "the helper took at most its share")
}
