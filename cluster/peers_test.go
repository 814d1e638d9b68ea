package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"eventsrv/history"
)

// TestPeersBehind: a live peer of the same epoch behind seq holds; one of
// another epoch, one through seq, one silent for peerTTL and one that said
// bye do not.
func TestPeersBehind(t *testing.T) {
	t0 := time.Now()
	p := newPeers()
	p.report("a", history.ID{Epoch: 7, Seq: 10}, false, t0)
	p.report("b", history.ID{Epoch: 6, Seq: 1}, false, t0.Add(time.Second))
	p.report("c", history.ID{Epoch: 7, Seq: 50}, false, t0.Add(time.Second))

	expires, ok := p.behind(7, 20, t0.Add(time.Second))
	assert.True(t, ok, "a is 10 behind")
	assert.Equal(t, t0.Add(peerTTL), expires)
	_, ok = p.behind(7, 10, t0.Add(time.Second))
	assert.False(t, ok, "a is through 10; b is in another epoch")
	_, ok = p.behind(7, 20, t0.Add(peerTTL))
	assert.False(t, ok, "a has been silent for peerTTL")
	assert.Len(t, p.feeds, 2, "a is forgotten")

	p.report("c", history.ID{}, true, t0.Add(time.Second))
	_, ok = p.behind(7, 60, t0.Add(time.Second))
	assert.False(t, ok, "c said bye")
}

// TestPeersAwait: await returns when the lagging peer reports it caught
// up, when it goes silent for peerTTL, or false when its context ends.
func TestPeersAwait(t *testing.T) {
	p := newPeers()
	p.report("a", history.ID{Epoch: 7, Seq: 10}, false, time.Now())
	done := make(chan bool)
	go func() { done <- p.await(context.Background(), 7, 20) }()
	p.report("a", history.ID{Epoch: 7, Seq: 20}, false, time.Now())
	assert.True(t, <-done, "a caught up")

	// Silent: it holds until peerTTL after its last report, then not.
	last := time.Now().Add(-peerTTL + 100*time.Millisecond)
	p.report("a", history.ID{Epoch: 7, Seq: 10}, false, last)
	assert.True(t, p.await(context.Background(), 7, 20))
	assert.GreaterOrEqual(t, time.Since(last), peerTTL, "await returned before a was gone")

	p.report("a", history.ID{Epoch: 7, Seq: 10}, false, time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.False(t, p.await(ctx, 7, 20), "a context that ends")
}
