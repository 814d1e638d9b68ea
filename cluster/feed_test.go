package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
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

// TestLiveGapIsCaughtUp: live messages that the feed's subscription drops
// (too slow for its pending limit) leave a gap, which the catch-up consumer
// fills from the stream; the hub gets every event once, in the stream's
// order. The gap is seen when a live message comes after it (which is kept
// back until the gap is filled), or, with nothing after it, when the watch
// finds the stream ahead of a feed that does not move.
func TestLiveGapIsCaughtUp(t *testing.T) {
	t.Run("a live message after the gap", func(t *testing.T) {
		liveGap(t)
	})
	t.Run("nothing after the gap", func(t *testing.T) {
		liveSilent(t)
	})
}

// liveSilent: the live messages stop coming (the stream republishes them on
// another subject), so each gap has nothing after it; the watch finds the
// feed behind the stream, and each event comes from the stream, once.
func liveSilent(t *testing.T) {
	url := natstest.StartServer(t).URL()
	logs := &logRecorder{changed: make(chan struct{})}
	b, hub := openBusWith(t, Config{URLs: url, Replicas: 1, PublishTimeout: 5 * time.Second,
		Limits: history.Limits{Size: 1000, TTL: time.Hour}, Log: slog.New(logs)})
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	s, err := js.Stream(ctx, "EVENTSRV")
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.RePublish.Destination = newLiveDestination("EVENTSRV")
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)

	for i := range 3 {
		_, err := js.Publish(ctx, Subject("EVENTSRV", "a"), fmt.Appendf(nil, "%d", i))
		require.NoError(t, err)
	}
	require.True(t, hub.AwaitFed(within(t, 30*time.Second), history.ID{Epoch: b.epoch.Load(), Seq: 3}))
	logs.waitFor(t, "the stream is ahead of the feed", 0)
	got := hub.events()
	require.Len(t, got, 3, "every event once")
	for i, e := range got {
		assert.Equal(t, uint64(i+1), e.id.Seq, "event %d", i)
		assert.Equal(t, fmt.Sprint(i), e.data, "event %d", i)
	}
}

// liveGap: the feed's subscription drops live messages, and one comes
// after the gap.
func liveGap(t *testing.T) {
	url := natstest.StartServer(t).URL()
	logs := &logRecorder{changed: make(chan struct{})}
	b, hub, release := openBusWithHeld(t, Config{URLs: url, Replicas: 1, PublishTimeout: 5 * time.Second,
		Limits: history.Limits{Size: 1000, TTL: time.Hour}, Log: slog.New(logs), livePending: 4})

	// Published around the bus, which would wait for its feed: the first
	// message is held in Deliver, about 3 wait (nats.go counts the one in
	// its callback as pending, mostly), and the rest are dropped.
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	n := 0
	publish := func() {
		_, err := js.Publish(context.Background(), Subject("EVENTSRV", "a"), fmt.Appendf(nil, "%d", n))
		require.NoError(t, err)
	}
	for ; n < 6; n++ {
		publish()
	}
	logs.waitFor(t, "dropped some", 10*time.Second)
	release()
	// Once the first 4 are fed (live, or read after a gap among them), a
	// live message comes past the gap.
	require.True(t, hub.AwaitFed(within(t, 30*time.Second), history.ID{Epoch: b.epoch.Load(), Seq: 4}))
	publish()
	n++

	require.True(t, hub.AwaitFed(within(t, 30*time.Second), history.ID{Epoch: b.epoch.Load(), Seq: uint64(n)}))
	logs.waitFor(t, "the live messages skip some", 0)
	got := hub.events()
	require.Len(t, got, n, "every event once")
	for i, e := range got {
		assert.Equal(t, uint64(i+1), e.id.Seq, "event %d", i)
		assert.Equal(t, fmt.Sprint(i), e.data, "event %d", i)
	}
	// What the stream stores next comes live again.
	id, err := b.Publish("a", []byte(`"live"`))
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("%d-%d", b.epoch.Load(), n+1), id)
}

// within is a context that ends after d, or with the test.
func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// logRecorder is a slog handler that keeps the messages logged.
type logRecorder struct {
	mu      sync.Mutex
	msgs    []string
	changed chan struct{} // closed and replaced on each message
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	close(l.changed)
	l.changed = make(chan struct{})
	return nil
}

// waitFor waits up to timeout for a message containing s (it fails at
// once with a zero timeout, if none was logged yet).
func (l *logRecorder) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		msgs, changed := l.msgs, l.changed
		l.mu.Unlock()
		for _, m := range msgs {
			if strings.Contains(m, s) {
				return
			}
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no log message containing %q in %v; logged %q", s, timeout, msgs)
		}
	}
}
