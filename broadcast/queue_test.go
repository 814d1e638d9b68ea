package broadcast

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// closeCountingConn is a connection that drops writes and counts Close.
type closeCountingConn struct {
	discardConn
	closes atomic.Int32
}

var _ net.Conn = (*closeCountingConn)(nil)

func (c *closeCountingConn) Close() error {
	c.closes.Add(1)
	return nil
}

// detachedClient returns a client of a hub that was never started, on a
// connection that drops everything. It is marked as owned by a writer,
// so what it queues stays in its queue for the test to look at; a test that
// checks when a writer must be scheduled clears scheduled first. The hub's
// log goes to the returned buffer, as JSON lines.
func detachedClient(t *testing.T, opts Options) (*client, *bytes.Buffer, *closeCountingConn) {
	t.Helper()
	var logs bytes.Buffer
	opts.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	h := &Hub{opts: opts, metrics: noMetrics{}}
	h.flush.cond = sync.NewCond(&h.flush.mu) // a ready list without flushers
	nc := &closeCountingConn{}
	c := newClient(h, nil, nc, nil, "192.0.2.1:4242")
	c.scheduled = true
	return c, &logs, nc
}

// frameOf returns a frame of n bytes.
func frameOf(n int) []byte { return bytes.Repeat([]byte{'f'}, n) }

// requireCutOffSlow checks that c was cut off as a slow consumer: its queue
// holds only the close frame.
func requireCutOffSlow(t *testing.T, c *client) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.True(t, c.closing, "cut off")
	require.Equal(t, reasonSlow, c.reason)
	require.Equal(t, [][]byte{closeFrame(closePolicy, reasonSlow)}, c.queue, "the queue is replaced by the close frame")
	require.Zero(t, c.queued)
	require.Zero(t, c.grace)
}

// queueOf returns c's queued bytes and frames.
func queueOf(c *client) (queued, frames int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued, len(c.queue)
}

// TestQueueBound: a subscriber may have exactly QueueMaxBytes queued; the
// frame that would pass the bound cuts it off instead of being queued.
func TestQueueBound(t *testing.T) {
	c, logs, _ := detachedClient(t, Options{QueueMaxBytes: 100})
	c.scheduled = false

	before := time.Now()
	require.True(t, c.add(frameOf(60)), "the first frame needs a writer")
	since := c.queuedSince
	require.False(t, since.Before(before), "queuedSince is when the first frame came")
	require.False(t, c.add(frameOf(40)), "a writer is already scheduled")
	q, n := queueOf(c)
	require.Equal(t, 100, q, "the bytes of both frames")
	require.Equal(t, 2, n)
	require.Equal(t, since, c.queuedSince, "queuedSince stays the oldest frame's")
	require.Empty(t, logs.String())

	require.False(t, c.add(frameOf(1)), "one byte over the bound; the writer is already scheduled")
	requireCutOffSlow(t, c)
	var line map[string]any
	require.NoError(t, json.Unmarshal(logs.Bytes(), &line))
	assert.Equal(t, "subscriber cut off", line["msg"])
	assert.Equal(t, "WARN", line["level"])
	assert.Equal(t, reasonSlow, line["reason"])
	assert.Equal(t, float64(100), line["queued_bytes"], "what was queued when the bound was hit")
	assert.Equal(t, "192.0.2.1:4242", line["remote"])

	require.False(t, c.add(frameOf(1)), "nothing is queued after the close")
	requireCutOffSlow(t, c)
	assert.Equal(t, 1, strings.Count(logs.String(), "\n"), "cut off once")
}

// TestQueueBoundFirstFrame: a frame larger than the bound cuts off even an
// idle subscriber, which then needs a writer for its close frame.
func TestQueueBoundFirstFrame(t *testing.T) {
	c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
	c.scheduled = false
	require.True(t, c.add(frameOf(101)), "the close frame needs a writer")
	requireCutOffSlow(t, c)
	require.True(t, c.scheduled)

	c, _, _ = detachedClient(t, Options{QueueMaxBytes: 100})
	c.scheduled = false
	require.True(t, c.add(frameOf(100)))
	q, _ := queueOf(c)
	require.Equal(t, 100, q)
}

// TestQueueBoundAfterTake: a writer that takes the queue frees the whole
// bound again.
func TestQueueBoundAfterTake(t *testing.T) {
	c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
	require.False(t, c.add(frameOf(70)))
	frames, _, _, ok := c.take()
	require.True(t, ok)
	require.Len(t, frames, 1)
	require.False(t, c.add(frameOf(70)), "70 + 70 would pass the bound, but the first 70 were taken")
	require.False(t, c.add(frameOf(30)))
	q, n := queueOf(c)
	require.Equal(t, 100, q)
	require.Equal(t, 2, n)
	require.False(t, c.add(frameOf(1)))
	requireCutOffSlow(t, c)
}

// TestReplayGrace: a replay is queued whatever its size, and live events
// that follow it still get the whole bound on top of it, until a writer
// takes the queue.
func TestReplayGrace(t *testing.T) {
	c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
	c.addReplay([][]byte{frameOf(250), frameOf(50)})
	q, n := queueOf(c)
	require.Equal(t, 300, q, "the whole replay, three times the bound")
	require.Equal(t, 2, n)
	require.False(t, c.closing)

	require.False(t, c.add(frameOf(60)))
	require.False(t, c.add(frameOf(40)))
	q, n = queueOf(c)
	require.Equal(t, 400, q, "the replay and a whole bound of live events")
	require.Equal(t, 4, n)
	require.False(t, c.closing)
	require.False(t, c.add(frameOf(1)))
	requireCutOffSlow(t, c)

	// The grace ends when a writer takes the queue.
	c, _, _ = detachedClient(t, Options{QueueMaxBytes: 100})
	c.addReplay([][]byte{frameOf(300)})
	frames, _, _, ok := c.take()
	require.True(t, ok)
	require.Len(t, frames, 1)
	require.False(t, c.add(frameOf(100)))
	require.False(t, c.closing)
	require.False(t, c.add(frameOf(1)))
	requireCutOffSlow(t, c)
}

// TestReplayAfterClose: nothing is queued once the close has begun.
func TestReplayAfterClose(t *testing.T) {
	c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
	c.close(closeGoingAway, "going away")
	c.addReplay([][]byte{frameOf(10)})
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Equal(t, [][]byte{closeFrame(closeGoingAway, "going away")}, c.queue)
	require.Zero(t, c.grace)
}

// TestTake: take hands the whole queue to the writer with the time its
// oldest frame was queued, or, with nothing queued, unschedules the client.
func TestTake(t *testing.T) {
	c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
	frames, _, closing, ok := c.take()
	require.False(t, ok)
	require.False(t, closing)
	require.Nil(t, frames)
	require.False(t, c.scheduled, "nothing to write: no writer owns it")

	c.scheduled = true
	c.addReplay([][]byte{frameOf(1)})
	c.add(frameOf(2))
	want := c.queuedSince
	frames, since, closing, ok := c.take()
	require.True(t, ok)
	require.False(t, closing)
	require.Equal(t, [][]byte{frameOf(1), frameOf(2)}, frames)
	require.Equal(t, want, since)
	q, n := queueOf(c)
	require.Zero(t, q)
	require.Zero(t, n)
	require.True(t, c.scheduled, "the writer still owns it")

	c.close(closePolicy, "bye")
	frames, _, _, ok = c.take()
	require.True(t, ok)
	require.Equal(t, [][]byte{closeFrame(closePolicy, "bye")}, frames)
	frames, _, closing, ok = c.take()
	require.False(t, ok)
	require.True(t, closing, "the close frame has gone out: the writer must finish")
	require.Nil(t, frames)
}

// TestTakeShrinksAnIdleQueue: a queue that held a burst is given back once
// it is empty, a small one is kept for the next frames.
func TestTakeShrinksAnIdleQueue(t *testing.T) {
	for _, tc := range []struct {
		capacity int
		kept     bool
	}{{256, true}, {257, false}} {
		c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
		c.queue = make([][]byte, 0, tc.capacity)
		_, _, _, ok := c.take()
		require.False(t, ok)
		assert.Equal(t, tc.kept, c.queue != nil, "capacity %d", tc.capacity)
	}
}

// readyList returns the hub's ready list.
func readyList(h *Hub) []*client {
	h.flush.mu.Lock()
	defer h.flush.mu.Unlock()
	return append([]*client(nil), h.flush.ready...)
}

// TestDoneReschedules: after a flusher's complete write, a client with
// nothing more to write is no longer scheduled and stays off the ready
// list (else the flushers would spin on it); one with more queued, or a
// close to finish, goes back on the list.
func TestDoneReschedules(t *testing.T) {
	t.Run("drained", func(t *testing.T) {
		c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
		c.done()
		require.False(t, c.scheduled)
		require.Empty(t, readyList(c.hub))
		require.True(t, c.add(frameOf(1)), "the next frame schedules a writer again")
	})
	t.Run("more queued", func(t *testing.T) {
		c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
		c.add(frameOf(1))
		c.done()
		require.True(t, c.scheduled)
		require.Equal(t, []*client{c}, readyList(c.hub))
	})
	t.Run("closing", func(t *testing.T) {
		c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
		c.close(closePolicy, "bye")
		_, _, _, ok := c.take()
		require.True(t, ok)
		c.done()
		require.True(t, c.scheduled, "the writer must still finish the close")
		require.Equal(t, []*client{c}, readyList(c.hub))
	})
	for _, tc := range []struct {
		capacity int
		kept     bool
	}{{256, true}, {257, false}} {
		c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
		c.queue = make([][]byte, 0, tc.capacity)
		c.done()
		assert.Equal(t, tc.kept, c.queue != nil, "capacity %d", tc.capacity)
	}
}

// TestAbortClosesTheConnection: without a raw socket, abort closes the
// connection, which ends the reader.
func TestAbortClosesTheConnection(t *testing.T) {
	c, _, nc := detachedClient(t, Options{})
	c.abort()
	require.EqualValues(t, 1, nc.closes.Load())
}

// TestReplayQueuedSince: the write-wait metric counts from when a replay
// was queued, and later frames do not move that.
func TestReplayQueuedSince(t *testing.T) {
	c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
	before := time.Now()
	c.addReplay([][]byte{frameOf(1)})
	since := c.queuedSince
	require.False(t, since.Before(before), "queuedSince is when the replay came")
	c.addReplay([][]byte{frameOf(1)})
	c.add(frameOf(1))
	require.Equal(t, since, c.queuedSince)
}

// TestCloseQueuesWhy: a close replaces the queue with a close frame (for
// SSE, a comment) queued when the close began; a drain puts it after what
// was queued, which keeps its own queuedSince; closeNoStatus queues
// nothing.
func TestCloseQueuesWhy(t *testing.T) {
	t.Run("websocket", func(t *testing.T) {
		c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
		c.close(closePolicy, "bye")
		require.Equal(t, [][]byte{closeFrame(closePolicy, "bye")}, c.queue)
		require.Equal(t, c.closedAt, c.queuedSince)
	})
	t.Run("sse", func(t *testing.T) {
		c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
		c.sse = true
		c.add(frameOf(1))
		c.close(closePolicy, "bye")
		require.Equal(t, [][]byte{[]byte(": close bye\n\n")}, c.queue)
		require.Equal(t, c.closedAt, c.queuedSince)
	})
	t.Run("drain", func(t *testing.T) {
		c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
		c.add(frameOf(1))
		since := c.queuedSince
		c.drain(closeGoingAway, "going away")
		require.Equal(t, [][]byte{frameOf(1), closeFrame(closeGoingAway, "going away")}, c.queue)
		require.Equal(t, since, c.queuedSince)
		c.close(closePolicy, "again")
		require.Equal(t, "going away", c.reason, "closing begins once")
	})
	t.Run("no status", func(t *testing.T) {
		c, _, _ := detachedClient(t, Options{QueueMaxBytes: 100})
		c.add(frameOf(1))
		c.close(closeNoStatus, "gone")
		require.Empty(t, c.queue)
		require.True(t, c.closing)
	})
}
