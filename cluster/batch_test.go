package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/history"
	"eventsrv/internal/natstest"
)

// fedHub records what the bus feeds it.
type fedHub struct {
	mu    sync.Mutex
	epoch uint64
	fed   []fedEvent
	last  history.ID
	moved chan struct{} // closed and replaced when last moves
	gate  chan struct{}
}

// hold holds every Deliver until release is called (by the test, or at
// its end, before the bus closes: its feed waits in Deliver).
func (h *fedHub) hold(t *testing.T) (release func()) {
	gate := make(chan struct{})
	h.mu.Lock()
	h.gate = gate
	h.mu.Unlock()
	release = sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	return release
}

type fedEvent struct {
	id   history.ID
	name string
	data string
}

func (h *fedHub) SetEpoch(epoch uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.epoch, h.fed = epoch, nil
	h.setLast(history.ID{Epoch: epoch})
}

func (h *fedHub) Deliver(id history.ID, event string, data json.RawMessage) {
	h.mu.Lock()
	gate := h.gate
	h.mu.Unlock()
	if gate != nil {
		<-gate
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fed = append(h.fed, fedEvent{id, event, string(data)})
	h.setLast(id)
}

func (h *fedHub) Skip(id history.ID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.setLast(id)
}

func (h *fedHub) Fed() history.ID {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// setLast moves last; under mu.
func (h *fedHub) setLast(id history.ID) {
	h.last = id
	if h.moved != nil {
		close(h.moved)
		h.moved = nil
	}
}

func (h *fedHub) AwaitFed(ctx context.Context, id history.ID) bool {
	for {
		h.mu.Lock()
		if h.last.Epoch != id.Epoch || h.last.Seq >= id.Seq {
			h.mu.Unlock()
			return true
		}
		if h.moved == nil {
			h.moved = make(chan struct{})
		}
		moved := h.moved
		h.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			return false
		}
	}
}

func (h *fedHub) events() []fedEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]fedEvent(nil), h.fed...)
}

// openBus opens a bus with a stream of replicas on urls and waits until
// it is ready.
func openBus(t *testing.T, urls string, replicas int) (*Bus, *fedHub) {
	t.Helper()
	return openBusWith(t, Config{URLs: urls, Replicas: replicas, PublishTimeout: 5 * time.Second, Limits: history.Limits{Size: 1000, TTL: time.Hour}})
}

// openBusWith opens a bus with cfg (stream EVENTSRV, a minute's
// duplicate window) and waits until it is ready.
func openBusWith(t *testing.T, cfg Config) (*Bus, *fedHub) {
	t.Helper()
	hub := &fedHub{}
	cfg.Stream, cfg.DuplicateWindow = "EVENTSRV", time.Minute
	b, err := Open(cfg, hub)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	require.Eventually(t, func() bool { return b.Ready() == nil }, 30*time.Second, 10*time.Millisecond, "the bus is not ready")
	return b, hub
}

// batchOf is PublishAtomic's event function for n events named name with
// data 0..n-1, keyed "key i" unless key is "".
func batchOf(key, name string) func(i int) (string, string, json.RawMessage) {
	return func(i int) (string, string, json.RawMessage) {
		k := ""
		if key != "" {
			k = fmt.Sprintf("%s %d", key, i)
		}
		return k, name, json.RawMessage(fmt.Sprint(i))
	}
}

// TestPublishAtomic: a batch is stored as one, with consecutive IDs that
// the feed delivers with the batch's names and data; a batch whose keys
// were stored before, a batch of one, and a stream that refuses atomic
// batches are not tried, so that the caller publishes event by event.
func TestPublishAtomic(t *testing.T) {
	nodes := natstest.StartCluster(t, 3)
	b, hub := openBus(t, nodes.URLs(), 3)

	ids, tried, err := b.PublishAtomic(5, batchOf("k", "a.b c"))
	require.NoError(t, err)
	require.True(t, tried)
	require.Len(t, ids, 5)
	first, err := history.ParseID(ids[0])
	require.NoError(t, err)
	for i, id := range ids {
		assert.Equal(t, history.ID{Epoch: first.Epoch, Seq: first.Seq + uint64(i)}.String(), id, "event %d", i)
	}
	require.Eventually(t, func() bool { return len(hub.events()) == 5 }, 10*time.Second, 10*time.Millisecond)
	for i, ev := range hub.events() {
		assert.Equal(t, fedEvent{history.ID{Epoch: first.Epoch, Seq: first.Seq + uint64(i)}, "a.b c", fmt.Sprint(i)}, ev)
	}
	assert.Equal(t, first.Seq+4, b.acked.Load(), "Drain waits for the batch's last event")

	// The same keys again: JetStream refuses the batch, and event by
	// event the caller learns the first IDs.
	ids, tried, err = b.PublishAtomic(5, batchOf("k", "a.b c"))
	assert.NoError(t, err)
	assert.False(t, tried, "a batch of keys stored before is published event by event: %v", ids)
	id, duplicate, err := b.PublishOnce("k 3", "a.b c", json.RawMessage("3"))
	require.NoError(t, err)
	assert.True(t, duplicate)
	assert.Equal(t, history.ID{Epoch: first.Epoch, Seq: first.Seq + 3}.String(), id)

	_, tried, _ = b.PublishAtomic(1, batchOf("", "x"))
	assert.False(t, tried, "a batch of one")

	// A stream without atomic publish (an operator's change, or a NATS
	// before 2.12): not tried, and not tried again.
	nc, err := nats.Connect(nodes.URLs())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	// A JetStream API request may go unanswered while the cluster is busy
	// (it did under CI's -race run): each try has its own timeout.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "EVENTSRV")
		if !assert.NoError(c, err) {
			return
		}
		cfg := s.CachedInfo().Config
		cfg.AllowAtomicPublish = false
		_, err = js.UpdateStream(ctx, cfg)
		assert.NoError(c, err)
	}, 30*time.Second, 100*time.Millisecond, "the stream's atomic publish could not be turned off")
	_, tried, err = b.PublishAtomic(3, batchOf("", "x"))
	assert.NoError(t, err)
	assert.False(t, tried)
	assert.True(t, b.noAtomic.Load(), "the refusal is remembered")
	before := len(hub.events())
	id, err = b.Publish("y", json.RawMessage(`"after"`))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(hub.events()) == before+1 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, id, hub.events()[before].id.String(), "the refused batch stored nothing")
}

// TestPublishAtomicNotOnR1: an R1 stream's batches are published event by
// event (JetStream stages them in a file store of their own).
func TestPublishAtomicNotOnR1(t *testing.T) {
	b, _ := openBus(t, natstest.StartServer(t).URL(), 1)
	_, tried, err := b.PublishAtomic(3, batchOf("", "x"))
	assert.NoError(t, err)
	assert.False(t, tried)
}

// TestPublishWaitsForTheFeed: a publish acknowledged while this
// instance's feed is more than half of HISTORY_SIZE behind it is answered
// once the feed caught up, or at NATS_PUBLISH_TIMEOUT: OK either way.
func TestPublishWaitsForTheFeed(t *testing.T) {
	const timeout = time.Second
	b, hub := openBusWith(t, Config{URLs: natstest.StartServer(t).URL(), Replicas: 1, PublishTimeout: timeout,
		Limits: history.Limits{Size: 4, TTL: time.Hour}})
	release := hub.hold(t)

	// Within the slack (2 events) of a feed that has taken nothing: at once.
	for range 2 {
		_, took := publishTimed(t, b, "1")
		assert.Less(t, took, timeout, "a publish within the slack waited")
	}
	// The third is held until its deadline, then answered all the same.
	id, took := publishTimed(t, b, "3")
	assert.GreaterOrEqual(t, took, timeout, "answered while the feed was 3 events behind")
	got, err := history.ParseID(id)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), got.Seq)

	// Held until the feed catches up: answered once it has the first.
	done := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		_, err := b.Publish("a", json.RawMessage("4"))
		assert.NoError(t, err)
		done <- time.Since(start)
	}()
	release()
	took = <-done
	assert.GreaterOrEqual(t, hub.Fed().Seq, uint64(2), "answered before the feed was within the slack")
	t.Logf("answered %v after the feed was let go", took)
}

// TestDrain: Drain returns once the hub was fed every event this instance
// was acknowledged, and gives up when its context ends before that.
func TestDrain(t *testing.T) {
	b, hub := openBus(t, natstest.StartServer(t).URL(), 1)
	release := hub.hold(t)
	var last string
	for i := range 3 {
		id, err := b.Publish("a", json.RawMessage(fmt.Sprint(i)))
		require.NoError(t, err)
		last = id
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, b.Drain(ctx), context.DeadlineExceeded, "the feed has none of the 3 events")

	release()
	require.NoError(t, b.Drain(context.Background()))
	assert.Equal(t, last, hub.Fed().String(), "drained before the last acknowledged event was fed")
}

// TestPublishWaitsForOtherFeeds: a publish is held while another live
// instance's feed is more than half of HISTORY_SIZE behind it, as that
// instance reports, and no longer once that instance is gone.
func TestPublishWaitsForOtherFeeds(t *testing.T) {
	const timeout = time.Second
	url := natstest.StartServer(t).URL()
	cfg := Config{URLs: url, Replicas: 1, PublishTimeout: timeout, Limits: history.Limits{Size: 4, TTL: time.Hour}}
	a, _ := openBusWith(t, cfg)
	b, hubB := openBusWith(t, cfg)
	release := hubB.hold(t)
	// Instance b's feed is stuck at 0 once a has reported; a learns so
	// from b's reports.
	require.Eventually(t, func() bool { return a.peers.anyBehind(a.epoch.Load(), 1) }, 5*time.Second, 10*time.Millisecond,
		"a never heard from b")

	for i := range 2 {
		_, took := publishTimed(t, a, fmt.Sprint(i))
		assert.Less(t, took, timeout, "a publish within the slack waited")
	}
	_, took := publishTimed(t, a, "2")
	assert.GreaterOrEqual(t, took, timeout, "answered while b's feed was 3 events behind")

	// b catches up: a's publishes go on.
	release()
	require.Eventually(t, func() bool { return !a.peers.anyBehind(a.epoch.Load(), 3) }, 5*time.Second, 10*time.Millisecond,
		"b's feed never reported catching up")

	// b goes away (its goodbye): nothing is held for it any more.
	hubB.hold(t)
	b.Close()
	require.Eventually(t, func() bool { return !a.peers.anyBehind(a.epoch.Load(), math.MaxUint64) }, 5*time.Second, 10*time.Millisecond,
		"b is still counted after its goodbye")
}

// TestReportsByCount: a feed reports as soon as it has moved a quarter of
// the hold's slack, not only on its timer, so that a publisher held behind
// it is let go at once. The timer is made an hour long here: every report
// seen is one by count.
func TestReportsByCount(t *testing.T) {
	url := natstest.StartServer(t).URL()
	b, hub := openBusWith(t, Config{URLs: url, Replicas: 1, PublishTimeout: 5 * time.Second,
		Limits: history.Limits{Size: 160, TTL: time.Hour}, reportEvery: time.Hour})
	require.Equal(t, uint64(20), b.step, "a quarter of the slack of 80")

	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	reports, err := nc.SubscribeSync(b.progressSubject())
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	for i := range 19 {
		_, err := b.Publish("a", json.RawMessage(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	require.True(t, hub.AwaitFed(context.Background(), history.ID{Epoch: b.epoch.Load(), Seq: 19}))
	_, err = reports.NextMsg(100 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "a report before the feed moved 20 events")

	_, err = b.Publish("a", json.RawMessage("19"))
	require.NoError(t, err)
	m, err := reports.NextMsg(5 * time.Second)
	require.NoError(t, err, "no report after the feed moved 20 events")
	id, fed, _, ok := parseProgress(m.Data)
	require.True(t, ok)
	assert.Equal(t, b.id, id)
	assert.GreaterOrEqual(t, fed.Seq, uint64(20))
}

func TestParseProgress(t *testing.T) {
	tests := []struct {
		in      string
		id      string
		fed     history.ID
		bye, ok bool
	}{
		{"abc 17 42", "abc", history.ID{Epoch: 17, Seq: 42}, false, true},
		{"abc bye", "abc", history.ID{}, true, true},
		{string(progressMsg("x", history.ID{Epoch: 1, Seq: 2})), "x", history.ID{Epoch: 1, Seq: 2}, false, true},
		{"abc 17", "", history.ID{}, false, false},
		{"abc 17 -1", "", history.ID{}, false, false},
		{"abc x 1", "", history.ID{}, false, false},
		{"", "", history.ID{}, false, false},
		{"a b c d", "", history.ID{}, false, false},
	}
	for _, tt := range tests {
		id, fed, bye, ok := parseProgress([]byte(tt.in))
		assert.Equal(t, tt.ok, ok, "%q", tt.in)
		if tt.ok {
			assert.Equal(t, tt.id, id, "%q", tt.in)
			assert.Equal(t, tt.fed, fed, "%q", tt.in)
			assert.Equal(t, tt.bye, bye, "%q", tt.in)
		}
	}
}

// TestCatchingUpHoldsNobody: an instance whose feed is still reading the
// stream's history for the first time holds no publisher, its own or
// another's: scaling out must not stall every publish.
func TestCatchingUpHoldsNobody(t *testing.T) {
	const timeout = time.Second
	url := natstest.StartServer(t).URL()
	cfg := Config{URLs: url, Replicas: 1, PublishTimeout: timeout, Limits: history.Limits{Size: 4, TTL: time.Hour}}
	a, _ := openBusWith(t, cfg)
	for i := range 10 {
		_, err := a.Publish("a", json.RawMessage(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	// The reports, as every instance hears them.
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	var mu sync.Mutex
	heard := map[string]int{}
	sub, err := nc.Subscribe("EVENTSRV_FEED.progress", func(m *nats.Msg) {
		if id, _, _, ok := parseProgress(m.Data); ok {
			mu.Lock()
			heard[id]++
			mu.Unlock()
		}
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()
	heardOf := func(b *Bus) int {
		mu.Lock()
		defer mu.Unlock()
		return heard[b.id]
	}

	// c starts with its feed stopped at the stream's first event. While a
	// reports three times (its ticker is c's), c says nothing.
	c, hubC, _ := openBusWithHeld(t, cfg)
	from := heardOf(a)
	require.Eventually(t, func() bool { return heardOf(a) >= from+3 }, 5*time.Second, 10*time.Millisecond)
	assert.Zero(t, heardOf(c), "a feed reading the stream's history reported")
	for _, bus := range []*Bus{a, c, a} {
		_, took := publishTimed(t, bus, `"next"`)
		assert.Less(t, took, timeout, "held by a feed that has not caught up yet")
	}
	assert.False(t, c.caughtUp.Load())
	assert.Zero(t, hubC.Fed().Seq)
}

// openBusWithHeld is openBusWith with the hub's deliveries held from the
// start, until release is called or the test ends.
func openBusWithHeld(t *testing.T, cfg Config) (b *Bus, hub *fedHub, release func()) {
	t.Helper()
	hub = &fedHub{}
	release = hub.hold(t)
	cfg.Stream, cfg.DuplicateWindow = "EVENTSRV", time.Minute
	b, err := Open(cfg, hub)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	t.Cleanup(release) // first: the feed waits in Deliver
	require.Eventually(t, func() bool { return b.Ready() == nil }, 30*time.Second, 10*time.Millisecond, "the bus is not ready")
	return b, hub, release
}

// publishTimed publishes an event named "a" with data through b, requires
// OK, and returns its ID and how long the answer took.
func publishTimed(t *testing.T, b *Bus, data string) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	id, err := b.Publish("a", json.RawMessage(data))
	require.NoError(t, err)
	return id, time.Since(start)
}
