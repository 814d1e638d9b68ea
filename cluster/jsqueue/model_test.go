package jsqueue

// Package queue's model tests (manager_test.go), against one Broker on
// JetStream: on one instance the model holds as it does in memory. Offers
// come over the network here, so a test waits for each (next) where the
// Manager's tests find them delivered (now), and "nothing more" is checked
// over a short wait (quiet).

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

// long is an offer timeout no test reaches.
const long = time.Hour

// settle is how long "nothing more" is waited for.
const settle = 150 * time.Millisecond

func one(t *testing.T, o Options) *instance {
	t.Helper()
	return start(t, natstest.StartServer(t), o)
}

func opts(offer, task time.Duration) Options {
	o := short()
	o.OfferTimeout, o.TaskTimeout = offer, task
	return o
}

func TestModelRefusedTaskGoesToHead(t *testing.T) {
	m := one(t, opts(long, long))
	w, v := newProbe(t, "w", 1), newProbe(t, "v", 1)
	m.Join(w.Worker, []string{"q"})
	m.Join(v.Worker, []string{"q"})

	t1 := add(t, m, "q", `1`, queue.AddOptions{})
	w.offer(t, t1, 1) // w has waited longest
	t2 := add(t, m, "q", `2`, queue.AddOptions{})
	v.offer(t, t2, 1)
	t3 := add(t, m, "q", `3`, queue.AddOptions{})
	w.quiet(t, settle)
	v.quiet(t, 0)

	// w refuses t1: v, which has not, is busy, so w gets the newer t3.
	require.NoError(t, m.Reject(w.Worker, t1))
	w.offer(t, t3, 1)
	t4 := add(t, m, "q", `4`, queue.AddOptions{})

	// v refuses t2 and is free: t1 (refused by w only) comes before t4.
	require.NoError(t, m.Reject(v.Worker, t2))
	v.offer(t, t1, 2)

	// w refuses t3: t2, refused by v only, is next for w, ahead of t3 and t4.
	require.NoError(t, m.Reject(w.Worker, t3))
	w.offer(t, t2, 2)

	// t3 (refused by w) goes to v when v is done with t1; then t4 to w.
	require.NoError(t, m.Assign(v.Worker, t1))
	v.offer(t, t3, 2)
	require.NoError(t, m.Assign(w.Worker, t2))
	w.offer(t, t4, 1)

	s := statsOf(t, m, "q")
	assert.Equal(t, 0, s.Depth)
	assert.Equal(t, 2, s.Offering)
	assert.Equal(t, uint64(3), s.Rejected)
	assert.Equal(t, uint64(7), s.Offered)
	assert.Equal(t, uint64(3), s.Reoffered)
}

func TestModelRefusedByEveryoneGoesAround(t *testing.T) {
	m := one(t, opts(long, long))
	w, v := newProbe(t, "w", 1), newProbe(t, "v", 1)
	m.Join(w.Worker, []string{"q"})
	m.Join(v.Worker, []string{"q"})
	id := add(t, m, "q", `1`, queue.AddOptions{})
	w.offer(t, id, 1)
	require.NoError(t, m.Reject(w.Worker, id))
	v.offer(t, id, 2)
	require.NoError(t, m.Reject(v.Worker, id))
	// Both refused: around again, to the longest free (w).
	w.offer(t, id, 3)
	v.quiet(t, settle)

	// A lone worker gets its refused task again at once.
	u := newProbe(t, "u", 1)
	m.Join(u.Worker, []string{"lone"})
	id = add(t, m, "lone", `1`, queue.AddOptions{})
	u.offer(t, id, 1)
	require.NoError(t, m.Reject(u.Worker, id))
	u.offer(t, id, 2)
}

// A task refused by the only free worker waits for the busy one rather
// than going around.
func TestModelRefusalWaitsForBusyWorker(t *testing.T) {
	m := one(t, opts(long, long))
	w, v := newProbe(t, "w", 1), newProbe(t, "v", 1)
	m.Join(w.Worker, []string{"q"})
	m.Join(v.Worker, []string{"q"})
	a := add(t, m, "q", `1`, queue.AddOptions{Complete: true})
	w.offer(t, a, 1)
	require.NoError(t, m.Assign(w.Worker, a)) // w busy until done
	b := add(t, m, "q", `2`, queue.AddOptions{})
	v.offer(t, b, 1)
	require.NoError(t, m.Reject(v.Worker, b))
	v.quiet(t, settle)
	w.quiet(t, 0)
	// Delivered again and parked here for w: out of the stream, yet
	// waiting, which Depth counts.
	assert.Equal(t, 1, statsOf(t, m, "q").Depth)
	require.NoError(t, m.Done(w.Worker, a))
	w.offer(t, b, 2)
	v.quiet(t, settle)
}

func TestModelLeaveCountsAsRefusal(t *testing.T) {
	m := one(t, opts(long, long))
	w, v := newProbe(t, "w", 2), newProbe(t, "v", 1)
	m.Join(w.Worker, []string{"q"})
	m.Join(v.Worker, []string{"q"})
	offeredID := add(t, m, "q", `1`, queue.AddOptions{})
	w.offer(t, offeredID, 1)
	vID := add(t, m, "q", `2`, queue.AddOptions{}) // v has waited longer than w, which just got one
	v.offer(t, vID, 1)
	workID := add(t, m, "q", `3`, queue.AddOptions{Complete: true})
	w.offer(t, workID, 1)
	require.NoError(t, m.Assign(w.Worker, workID))

	m.Leave(w.Worker)
	m.Leave(w.Worker) // idempotent
	w.quiet(t, settle)
	// Both go back, oldest first, to v when it is free.
	require.NoError(t, m.Assign(v.Worker, vID))
	v.offer(t, offeredID, 2)
	require.NoError(t, m.Assign(v.Worker, offeredID))
	v.offer(t, workID, 2)

	require.ErrorIs(t, m.Assign(w.Worker, workID), queue.ErrOfferExpired)
	require.ErrorIs(t, m.Done(w.Worker, workID), queue.ErrNotAssigned)
	m.Join(w.Worker, []string{"q"}) // a worker that left stays out
	s := statsOf(t, m, "q")
	assert.Equal(t, 1, s.Workers)
	assert.Equal(t, uint64(2), s.Abandoned)

	// A worker that leaves before it joins never joins.
	x := newProbe(t, "x", 1)
	m.Leave(x.Worker)
	m.Join(x.Worker, []string{"q"})
	assert.Equal(t, 1, statsOf(t, m, "q").Workers)
}

func TestModelReofferTiming(t *testing.T) {
	const timeout = 100 * time.Millisecond
	m := one(t, opts(timeout, long))
	w, v := newProbe(t, "w", 1), newProbe(t, "v", 1)
	m.Join(w.Worker, []string{"q"})
	m.Join(v.Worker, []string{"q"})

	start := time.Now()
	id := add(t, m, "q", `1`, queue.AddOptions{})
	w.offer(t, id, 1)
	// w stays silent: it is told the offer expired, and v is offered it.
	n := w.next(t)
	expiredAfter := time.Since(start)
	assert.Equal(t, queue.Notice{Kind: queue.KindExpired, Queue: "q", ID: id, Attempt: 1}, n)
	v.offer(t, id, 2)
	assert.GreaterOrEqual(t, expiredAfter, timeout)
	assert.Less(t, expiredAfter, timeout+2*time.Second, "expired long after the offer timeout")
	require.ErrorIs(t, m.Assign(w.Worker, id), queue.ErrOfferExpired)
	require.ErrorIs(t, m.Reject(w.Worker, id), queue.ErrOfferExpired)

	// v is silent too: around again, to w, after another timeout.
	assert.Equal(t, queue.KindExpired, v.next(t).Kind)
	assert.GreaterOrEqual(t, time.Since(start), 2*timeout)
	w.offer(t, id, 3)
	require.NoError(t, m.Assign(w.Worker, id))

	s := statsOf(t, m, "q")
	assert.Equal(t, uint64(2), s.TimedOut)
	assert.Equal(t, uint64(3), s.Offered)
	assert.Equal(t, uint64(2), s.Reoffered)
	assert.Equal(t, uint64(1), s.Assigned)
}

// TaskTimeout longer than the ack wait (2 s at least): the lease is renewed
// meanwhile, and the task goes back only at TaskTimeout.
func TestModelTaskTimeout(t *testing.T) {
	const timeout = 3 * time.Second
	m := one(t, opts(long, timeout))
	w, v := newProbe(t, "w", 1), newProbe(t, "v", 1)
	m.Join(w.Worker, []string{"q"})
	m.Join(v.Worker, []string{"q"})
	id := add(t, m, "q", `1`, queue.AddOptions{Complete: true})
	w.offer(t, id, 1)
	assigned := time.Now()
	require.NoError(t, m.Assign(w.Worker, id))

	n := w.next(t)
	assert.Equal(t, queue.KindExpired, n.Kind)
	assert.GreaterOrEqual(t, time.Since(assigned), timeout)
	v.offer(t, id, 2) // a re-delivery is visible
	err := m.Done(w.Worker, id)
	require.ErrorIs(t, err, queue.ErrNotAssigned)
	assert.Contains(t, err.Error(), "timeout")
	require.NoError(t, m.Assign(v.Worker, id))
	require.NoError(t, m.Done(v.Worker, id))
	s := statsOf(t, m, "q")
	assert.Equal(t, uint64(1), s.TaskTimedOut)
	assert.Equal(t, uint64(1), s.Done)
	assert.Equal(t, uint64(2), s.Assigned)
}

func TestModelForcedAssign(t *testing.T) {
	m := one(t, opts(long, long))
	w := newProbe(t, "w", 1)
	m.Join(w.Worker, []string{"q"})

	// Without Complete a forced task holds no slot: they all arrive.
	var ids []string
	for i := range 3 {
		ids = append(ids, add(t, m, "q", string(rune('1'+i)), queue.AddOptions{Forced: true}))
	}
	got := map[string]bool{}
	for range ids {
		n := w.next(t)
		assert.True(t, n.Assigned)
		got[n.ID] = true
		require.ErrorIs(t, m.Reject(w.Worker, n.ID), queue.ErrForced)
		require.NoError(t, m.Assign(w.Worker, n.ID), "assign of an assigned task is harmless")
		require.NoError(t, m.Done(w.Worker, n.ID))
	}
	for _, id := range ids {
		assert.True(t, got[id])
	}

	// With Complete it holds the slot until done.
	a := add(t, m, "q", `4`, queue.AddOptions{Forced: true, Complete: true})
	n := w.offer(t, a, 1)
	assert.True(t, n.Assigned)
	require.ErrorIs(t, m.Reject(w.Worker, a), queue.ErrForced)
	b := add(t, m, "q", `5`, queue.AddOptions{Forced: true})
	w.quiet(t, settle)
	require.NoError(t, m.Done(w.Worker, a))
	w.offer(t, b, 1)

	other := newProbe(t, "x", 1)
	m.Join(other.Worker, []string{"q"})
	require.ErrorIs(t, m.Reject(other.Worker, b), queue.ErrNotOfferedToYou)
	s := statsOf(t, m, "q")
	assert.Equal(t, uint64(5), s.Assigned)
	assert.Equal(t, uint64(5), s.Offered)
	assert.Equal(t, uint64(1), s.Done)
}

// Tasks added one at a time while every worker is free go to the worker
// free longest: in turn.
func TestModelFairness(t *testing.T) {
	m := one(t, opts(long, long))
	const workers, tasks = 5, 100
	ps := make([]*probe, workers)
	for i := range ps {
		ps[i] = newProbe(t, "w", 1)
		m.Join(ps[i].Worker, []string{"q"})
	}
	counts := make([]int, workers)
	for k := range tasks {
		id := add(t, m, "q", `1`, queue.AddOptions{Complete: k%2 == 1})
		got := waitOffer(t, ps, id)
		counts[got]++
		assert.Equal(t, k%workers, got, "task %d", k)
		require.NoError(t, m.Assign(ps[got].Worker, id))
		if k%2 == 1 {
			require.NoError(t, m.Done(ps[got].Worker, id))
		}
	}
	t.Logf("counts %v", counts)
}

// waitOffer waits for the one offer of id among ps and returns whose.
func waitOffer(t *testing.T, ps []*probe, id string) int {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for i, p := range ps {
			select {
			case n := <-p.ch:
				require.Equal(t, id, n.ID, "%d: %+v", i, n)
				for _, o := range ps {
					o.quiet(t, 0)
				}
				return i
			default:
			}
		}
		select {
		case <-deadline:
			t.Fatalf("%s not offered", id)
		case <-time.After(time.Millisecond):
		}
	}
}

func TestModelMaxInFlight(t *testing.T) {
	m := one(t, opts(long, long))
	w := newProbe(t, "w", 3)
	m.Join(w.Worker, []string{"q"})
	var ids []string
	for i := range 5 {
		ids = append(ids, add(t, m, "q", string(rune('1'+i)), queue.AddOptions{Complete: true}))
	}
	for _, id := range ids[:3] {
		w.offer(t, id, 1)
	}
	w.quiet(t, settle)
	require.NoError(t, m.Assign(w.Worker, ids[0]))
	w.quiet(t, settle) // an assigned Complete task still holds its slot
	require.NoError(t, m.Reject(w.Worker, ids[1]))
	// The lone worker refused it: around again, ahead of newer tasks.
	w.offer(t, ids[1], 2)
	require.NoError(t, m.Done(w.Worker, ids[0]))
	w.offer(t, ids[3], 1)
	w.quiet(t, settle)
}

func TestModelBadInput(t *testing.T) {
	o := opts(long, long)
	o.MaxTasks = 2
	m := one(t, o)
	w, x := newProbe(t, "alice", 1), newProbe(t, "bob", 1)
	m.Join(w.Worker, []string{"q"})
	id := add(t, m, "q", `1`, queue.AddOptions{})
	w.offer(t, id, 1)
	m.Join(x.Worker, []string{"q"})

	for _, f := range []func(*queue.Worker, string) error{m.Assign, m.Reject, m.Done} {
		require.ErrorIs(t, f(w.Worker, "nope"), queue.ErrUnknownTask)
	}
	require.ErrorIs(t, m.Assign(x.Worker, id), queue.ErrNotOfferedToYou)
	require.ErrorIs(t, m.Reject(x.Worker, id), queue.ErrNotOfferedToYou)
	require.ErrorIs(t, m.Done(x.Worker, id), queue.ErrNotAssigned)
	require.ErrorIs(t, m.Done(w.Worker, id), queue.ErrNotAssigned)

	// The *As methods check the queue and the subject.
	require.ErrorIs(t, m.AssignAs("alice", "other", id), queue.ErrUnknownTask)
	require.ErrorIs(t, m.AssignAs("bob", "q", id), queue.ErrNotOfferedToYou)
	require.ErrorIs(t, m.DoneAs("alice", "q", id), queue.ErrNotAssigned)
	require.NoError(t, m.RejectAs("alice", "q", id))
	x.offer(t, id, 2)
	require.ErrorIs(t, m.AssignAs("alice", "q", id), queue.ErrOfferExpired)
	require.NoError(t, m.AssignAs("bob", "q", id))
	require.NoError(t, m.AssignAs("bob", "q", id))
	require.NoError(t, m.DoneAs("bob", "q", id))

	// Full: two unfinished tasks fill the queue; Add does not drop them.
	a := add(t, m, "q", `2`, queue.AddOptions{})
	add(t, m, "q", `3`, queue.AddOptions{})
	_, err := m.Add("q", json.RawMessage(`1`), queue.AddOptions{})
	require.ErrorIs(t, err, queue.ErrQueueFull)
	// Both are free: one is offered a, the other the third.
	for _, p := range []*probe{w, x} {
		if n := p.next(t); n.ID == a {
			require.NoError(t, m.AssignAs(p.name, "q", a))
		}
	}
	add(t, m, "q", `4`, queue.AddOptions{})
	assert.Equal(t, uint64(1), statsOf(t, m, "q").Full)
}

func TestModelRetainForgetsFinishedTasks(t *testing.T) {
	o := opts(long, long)
	o.MaxTasks = 3
	m := one(t, o)
	w := newProbe(t, "w", 1)
	m.Join(w.Worker, []string{"q"})
	var ids []string
	for range 5 {
		id := add(t, m, "q", `1`, queue.AddOptions{})
		w.offer(t, id, 1)
		require.NoError(t, m.Assign(w.Worker, id))
		ids = append(ids, id)
	}
	// At most MaxTasks finished tasks are remembered.
	require.ErrorIs(t, m.Assign(w.Worker, ids[0]), queue.ErrUnknownTask)
	require.ErrorIs(t, m.Assign(w.Worker, ids[1]), queue.ErrUnknownTask)
	require.NoError(t, m.Assign(w.Worker, ids[2]))

	o.Retain = time.Nanosecond
	o.Stream = "T2"
	m2 := one(t, o)
	v := newProbe(t, "v", 1)
	m2.Join(v.Worker, []string{"q"})
	id := add(t, m2, "q", `1`, queue.AddOptions{})
	v.offer(t, id, 1)
	require.NoError(t, m2.Assign(v.Worker, id))
	require.Eventually(t, func() bool { return errors.Is(m2.Assign(v.Worker, id), queue.ErrUnknownTask) }, 5*time.Second, time.Millisecond)
}

func TestModelTake(t *testing.T) {
	m := one(t, opts(long, long))
	_, ok := m.Take("carol", "q")
	require.False(t, ok, "no such queue")

	w := newProbe(t, "w", 1)
	m.Join(w.Worker, []string{"q"})
	offeredID := add(t, m, "q", `1`, queue.AddOptions{})
	w.offer(t, offeredID, 1)
	_, ok = m.Take("carol", "q")
	require.False(t, ok, "an offered task is not free")

	id := add(t, m, "q", `{"n":1}`, queue.AddOptions{Complete: true})
	n, ok := m.Take("carol", "q")
	require.True(t, ok)
	assert.Equal(t, queue.Notice{Kind: queue.KindTask, Queue: "q", ID: id, Assigned: true, Attempt: 1, Data: json.RawMessage(`{"n":1}`)}, n)
	require.ErrorIs(t, m.DoneAs("dave", "q", id), queue.ErrNotAssigned)
	require.NoError(t, m.AssignAs("carol", "q", id))
	require.NoError(t, m.DoneAs("carol", "q", id))

	// A refused task is free for a take, ahead of newer ones.
	newer := add(t, m, "q", `2`, queue.AddOptions{})
	require.NoError(t, m.Reject(w.Worker, offeredID))
	w.offer(t, offeredID, 2) // around again to the lone worker
	n, ok = m.Take("carol", "q")
	require.True(t, ok)
	require.Equal(t, newer, n.ID)
	require.ErrorIs(t, m.Reject(w.Worker, newer), queue.ErrNotOfferedToYou)
	require.ErrorIs(t, m.Done(w.Worker, offeredID), queue.ErrNotAssigned, "offered, not assigned")
}
