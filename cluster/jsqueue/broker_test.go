package jsqueue

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/internal/natstest"
	"eventsrv/queue"
)

// The model of package queue's tests, on one instance: offer, assign,
// done, repeats, and the counters.
func TestOfferAssignDone(t *testing.T) {
	s := natstest.StartServer(t)
	o := short()
	o.OfferTimeout = time.Hour
	b := start(t, s, o)
	w := newProbe(t, "alice", 1)
	b.Join(w.Worker, []string{"tickets"})

	id := add(t, b, "tickets", `{"ticket":42}`, queue.AddOptions{Complete: true})
	require.Len(t, id, 32)
	n := w.offer(t, id, 1)
	assert.Equal(t, queue.Notice{Kind: queue.KindTask, Queue: "tickets", ID: id, Attempt: 1, Data: json.RawMessage(`{"ticket":42}`)}, n)

	require.ErrorIs(t, b.Done(w.Worker, id), queue.ErrNotAssigned, "done before assign")
	require.NoError(t, b.Assign(w.Worker, id))
	require.NoError(t, b.Assign(w.Worker, id), "a repeated assign is harmless")
	require.ErrorIs(t, b.Reject(w.Worker, id), queue.ErrOfferExpired, "reject after assign")

	// The Complete task holds the only slot until done.
	id2 := add(t, b, "tickets", `2`, queue.AddOptions{})
	w.quiet(t, 200*time.Millisecond)
	require.NoError(t, b.Done(w.Worker, id))
	require.NoError(t, b.Done(w.Worker, id), "a repeated done is harmless")
	w.offer(t, id2, 1)
	require.NoError(t, b.Assign(w.Worker, id2))
	require.NoError(t, b.Done(w.Worker, id2), "done of a task without Complete is accepted")

	// Unknown IDs and other workers' tasks.
	v := newProbe(t, "bob", 1)
	b.Join(v.Worker, []string{"tickets"})
	require.ErrorIs(t, b.Assign(v.Worker, "nope"), queue.ErrUnknownTask)
	require.ErrorIs(t, b.Assign(v.Worker, id2), queue.ErrNotOfferedToYou)
	require.ErrorIs(t, b.AssignAs("bob", "tickets", id2), queue.ErrNotOfferedToYou)
	require.ErrorIs(t, b.AssignAs("alice", "other", id2), queue.ErrUnknownTask, "a task of another queue")
	require.NoError(t, b.AssignAs("alice", "tickets", id2), "alice's repeat, over HTTP")

	assert.Equal(t, queue.QueueStats{Name: "tickets", Workers: 2, Added: 2, Offered: 2, Assigned: 2, Done: 1}, statsOf(t, b, "tickets"))
}

// A queue holds QUEUE_MAX_TASKS unfinished tasks, across instances: the
// stream refuses the next.
func TestQueueFull(t *testing.T) {
	s := natstest.StartServer(t)
	o := short()
	o.MaxTasks = 2
	a, b := start(t, s, o), start(t, s, o)
	add(t, a, "q", `1`, queue.AddOptions{})
	add(t, b, "q", `2`, queue.AddOptions{})
	_, err := a.Add("q", json.RawMessage(`3`), queue.AddOptions{})
	require.ErrorIs(t, err, queue.ErrQueueFull)
	add(t, a, "other", `1`, queue.AddOptions{})

	// A task taken makes room.
	n, ok := b.Take("taker", "q")
	require.True(t, ok)
	assert.True(t, n.Assigned)
	add(t, a, "q", `3`, queue.AddOptions{})
	assert.Equal(t, uint64(1), statsOf(t, a, "q").Full)
	assert.Equal(t, 2, statsOf(t, a, "q").Depth)
}

// Two instances share a queue: a task added on one is offered to a worker
// of the other; an answer to a task held by one, sent to the other (an
// HTTP worker behind a load balancer), is settled by the holder.
func TestSharedAcrossInstances(t *testing.T) {
	s := natstest.StartServer(t)
	o := short()
	o.OfferTimeout = time.Hour
	a, b := start(t, s, o), start(t, s, o)
	peers(t, a, b)
	w := newProbe(t, "alice", 1)
	b.Join(w.Worker, []string{"shared"})
	id := add(t, a, "shared", `{"x":1}`, queue.AddOptions{Complete: true})
	w.offer(t, id, 1)

	// Answers over HTTP to the instance that does not hold it.
	require.ErrorIs(t, a.AssignAs("bob", "shared", id), queue.ErrNotOfferedToYou)
	require.ErrorIs(t, a.AssignAs("alice", "other", id), queue.ErrUnknownTask)
	require.ErrorIs(t, a.AssignAs("alice", "shared", "0123"), queue.ErrUnknownTask)
	require.ErrorIs(t, a.DoneAs("alice", "shared", id), queue.ErrNotAssigned)
	require.NoError(t, a.AssignAs("alice", "shared", id))
	require.NoError(t, a.AssignAs("alice", "shared", id), "a repeat")
	require.NoError(t, a.DoneAs("alice", "shared", id))
	require.NoError(t, a.DoneAs("alice", "shared", id), "a repeat")

	// A take on one instance, done on the other.
	id2 := add(t, b, "nobody", `2`, queue.AddOptions{Complete: true})
	n, ok := a.Take("carol", "nobody")
	require.True(t, ok)
	assert.Equal(t, id2, n.ID)
	require.NoError(t, b.DoneAs("carol", "nobody", id2))

	stA, stB := statsOf(t, a, "shared"), statsOf(t, b, "shared")
	assert.Equal(t, uint64(1), stA.Added)
	assert.Equal(t, uint64(1), stB.Offered)
	assert.Equal(t, uint64(1), stB.Done)
	assert.Zero(t, stA.Depth+stB.Depth)
}

// A rejected task is offered to the other instance's worker: JetStream
// delivers it again to the pull request that has waited longest, the
// other instance's.
func TestRefusedHereGoesElsewhere(t *testing.T) {
	s := natstest.StartServer(t)
	o := short()
	o.OfferTimeout = time.Hour
	a, b := start(t, s, o), start(t, s, o)
	wa, wb := newProbe(t, "wa", 1), newProbe(t, "wb", 1)
	pulling := func(in *instance) func() bool {
		return func() bool {
			in.mu.Lock()
			defer in.mu.Unlock()
			q := in.queues["q"]
			return q != nil && q.pulls > 0
		}
	}
	a.Join(wa.Worker, []string{"q"})
	require.Eventually(t, pulling(a), 5*time.Second, time.Millisecond)
	time.Sleep(100 * time.Millisecond) // a's pull request reaches JetStream first
	b.Join(wb.Worker, []string{"q"})
	require.Eventually(t, pulling(b), 5*time.Second, time.Millisecond)
	for _, in := range []*instance{a, b} {
		require.Eventually(t, func() bool {
			in.mu.Lock()
			defer in.mu.Unlock()
			return in.peerWorks("q", time.Now())
		}, 5*time.Second, 5*time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	id := add(t, b, "q", `1`, queue.AddOptions{})
	wa.offer(t, id, 1) // a's request is older
	require.NoError(t, a.Reject(wa.Worker, id))
	wb.offer(t, id, 2)
	wa.quiet(t, settle)
	require.NoError(t, b.Reject(wb.Worker, id))
	// Refused by a worker of each: it goes around, to either.
	select {
	case n := <-wa.ch:
		assert.Equal(t, id, n.ID)
	case n := <-wb.ch:
		assert.Equal(t, id, n.ID)
	case <-time.After(10 * time.Second):
		t.Fatal("not offered again")
	}
}

// Close gives the tasks held back at once: the other instance's worker is
// offered them well within the ack wait.
func TestCloseGivesBack(t *testing.T) {
	s := natstest.StartServer(t)
	o := short()
	o.OfferTimeout = 10 * time.Second
	a, b := start(t, s, o), start(t, s, o)
	wa := newProbe(t, "wa", 2)
	a.Join(wa.Worker, []string{"q"})
	i1 := add(t, a, "q", `1`, queue.AddOptions{})
	i2 := add(t, a, "q", `2`, queue.AddOptions{Complete: true})
	wa.offer(t, i1, 1)
	wa.offer(t, i2, 1)
	require.NoError(t, a.Assign(wa.Worker, i2))
	wb := newProbe(t, "wb", 2)
	b.Join(wb.Worker, []string{"q"})
	wb.quiet(t, 100*time.Millisecond)
	closed := time.Now()
	a.Close()
	got := map[string]int{}
	for range 2 {
		n := wb.next(t)
		got[n.ID] = n.Attempt
	}
	assert.Equal(t, map[string]int{i1: 2, i2: 2}, got)
	assert.Less(t, time.Since(closed), 2*time.Second)
	require.ErrorIs(t, a.Assign(wa.Worker, i1), queue.ErrClosed)
	_, err := a.Add("q", nil, queue.AddOptions{})
	require.True(t, errors.Is(err, queue.ErrClosed))
}
