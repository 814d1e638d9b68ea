package queue

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// long is an offer timeout no test reaches, so that nothing happens behind
// its back.
const long = time.Hour

func TestOfferAssignDone(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long})
	defer m.Close()
	w := newProbe(t, "alice", 1)
	m.Join(w.Worker, []string{"tickets"})
	w.quiet(t)

	id, err := m.Add("tickets", json.RawMessage(`{"ticket":42}`), AddOptions{Complete: true})
	require.NoError(t, err)
	require.Len(t, id, 32)
	n := w.now(t)
	assert.Equal(t, Notice{Kind: KindTask, Queue: "tickets", ID: id, Attempt: 1, Data: json.RawMessage(`{"ticket":42}`)}, n)

	require.ErrorIs(t, m.Done(w.Worker, id), ErrNotAssigned, "done before assign")
	require.NoError(t, m.Assign(w.Worker, id))
	require.NoError(t, m.Assign(w.Worker, id), "a repeated assign is harmless")
	require.ErrorIs(t, m.Reject(w.Worker, id), ErrOfferExpired, "reject after assign")

	// The Complete task holds the only slot until done.
	id2 := add(t, m, "tickets", AddOptions{})
	w.quiet(t)
	require.NoError(t, m.Done(w.Worker, id))
	require.NoError(t, m.Done(w.Worker, id), "a repeated done is harmless")
	assert.Equal(t, id2, w.now(t).ID)
	require.NoError(t, m.Assign(w.Worker, id2))
	require.NoError(t, m.Done(w.Worker, id2), "done of a task without Complete is accepted")
	checkInvariants(t, m)

	s := statsOf(t, m, "tickets")
	assert.Equal(t, QueueStats{Name: "tickets", Workers: 1, Added: 2, Offered: 2, Assigned: 2, Done: 1}, s)
}

func TestEmptyDataIsNull(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long})
	defer m.Close()
	w := newProbe(t, "a", 1)
	m.Join(w.Worker, []string{"q"})
	_, err := m.Add("q", nil, AddOptions{})
	require.NoError(t, err)
	assert.Equal(t, json.RawMessage("null"), w.now(t).Data)
}

// TestRefusedTaskGoesToHead follows the issue: a refused task goes back
// ahead of newer tasks, to a worker that has not refused it, waiting for
// one to be free.
func TestRefusedTaskGoesToHead(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long})
	defer m.Close()
	w := newProbe(t, "w", 1)
	v := newProbe(t, "v", 1)
	m.Join(w.Worker, []string{"q"})
	m.Join(v.Worker, []string{"q"})

	t1 := add(t, m, "q", AddOptions{})
	require.Equal(t, t1, w.now(t).ID, "w has waited longest")
	t2 := add(t, m, "q", AddOptions{})
	require.Equal(t, t2, v.now(t).ID)
	t3 := add(t, m, "q", AddOptions{})
	w.quiet(t)
	v.quiet(t)

	// w refuses t1: v, which has not, is busy, so w gets the newer t3.
	require.NoError(t, m.Reject(w.Worker, t1))
	require.Equal(t, t3, w.now(t).ID)
	t4 := add(t, m, "q", AddOptions{})

	// v refuses t2 and is free: t1 (refused by w only) comes before t4.
	require.NoError(t, m.Reject(v.Worker, t2))
	n := v.now(t)
	require.Equal(t, t1, n.ID)
	require.Equal(t, 2, n.Attempt)

	// w refuses t3: t2, refused by v only, is next for w, ahead of t3 and t4.
	require.NoError(t, m.Reject(w.Worker, t3))
	n = w.now(t)
	require.Equal(t, t2, n.ID)
	require.Equal(t, 2, n.Attempt)
	checkInvariants(t, m)

	// t3 (refused by w) goes to v when v is done with t1; then t4 to w.
	require.NoError(t, m.Assign(v.Worker, t1))
	require.Equal(t, t3, v.now(t).ID)
	require.NoError(t, m.Assign(w.Worker, t2))
	require.Equal(t, t4, w.now(t).ID)

	s := statsOf(t, m, "q")
	assert.Equal(t, 0, s.Depth)
	assert.Equal(t, 2, s.Offering)
	assert.Equal(t, uint64(3), s.Rejected)
	assert.Equal(t, uint64(7), s.Offered)
	assert.Equal(t, uint64(3), s.Reoffered)
	checkInvariants(t, m)
}

func TestRefusedByEveryoneGoesAround(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long})
	defer m.Close()
	w := newProbe(t, "w", 1)
	v := newProbe(t, "v", 1)
	m.Join(w.Worker, []string{"q"})
	m.Join(v.Worker, []string{"q"})
	id := add(t, m, "q", AddOptions{})
	require.Equal(t, id, w.now(t).ID)
	require.NoError(t, m.Reject(w.Worker, id))
	require.Equal(t, 2, v.now(t).Attempt)
	require.NoError(t, m.Reject(v.Worker, id))
	// Both refused: around again, to the longest free (w).
	n := w.now(t)
	require.Equal(t, id, n.ID)
	require.Equal(t, 3, n.Attempt)
	v.quiet(t)

	// A lone worker gets its refused task again at once.
	m2 := NewManager(Options{OfferTimeout: long})
	defer m2.Close()
	u := newProbe(t, "u", 1)
	m2.Join(u.Worker, []string{"q"})
	id = add(t, m2, "q", AddOptions{})
	u.now(t)
	require.NoError(t, m2.Reject(u.Worker, id))
	assert.Equal(t, 2, u.now(t).Attempt)
}

// TestRefusalWaitsForBusyWorker: a task refused by the only free worker
// waits for the busy one rather than going around.
func TestRefusalWaitsForBusyWorker(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long})
	defer m.Close()
	w := newProbe(t, "w", 1)
	v := newProbe(t, "v", 1)
	m.Join(w.Worker, []string{"q"})
	m.Join(v.Worker, []string{"q"})
	a := add(t, m, "q", AddOptions{Complete: true})
	w.now(t)
	require.NoError(t, m.Assign(w.Worker, a)) // w busy until done
	b := add(t, m, "q", AddOptions{})
	v.now(t)
	require.NoError(t, m.Reject(v.Worker, b))
	v.quiet(t)
	w.quiet(t)
	assert.Equal(t, 1, statsOf(t, m, "q").Depth)
	require.NoError(t, m.Done(w.Worker, a))
	assert.Equal(t, b, w.now(t).ID)
	v.quiet(t)
}

func TestLeaveCountsAsRefusal(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long})
	defer m.Close()
	w := newProbe(t, "w", 2)
	v := newProbe(t, "v", 1)
	m.Join(w.Worker, []string{"q"})
	m.Join(v.Worker, []string{"q"})
	offeredID := add(t, m, "q", AddOptions{})
	require.Equal(t, offeredID, w.now(t).ID)
	vID := add(t, m, "q", AddOptions{}) // v has waited longer than w, which just got one
	require.Equal(t, vID, v.now(t).ID)
	workID := add(t, m, "q", AddOptions{Complete: true})
	require.Equal(t, workID, w.now(t).ID)
	require.NoError(t, m.Assign(w.Worker, workID))

	m.Leave(w.Worker)
	m.Leave(w.Worker) // idempotent
	w.quiet(t)
	// Both go back, oldest first, to v when it is free.
	require.NoError(t, m.Assign(v.Worker, vID))
	n := v.now(t)
	require.Equal(t, offeredID, n.ID)
	require.Equal(t, 2, n.Attempt)
	require.NoError(t, m.Assign(v.Worker, offeredID))
	n = v.now(t)
	require.Equal(t, workID, n.ID)
	require.Equal(t, 2, n.Attempt)

	require.ErrorIs(t, m.Assign(w.Worker, workID), ErrOfferExpired)
	require.ErrorIs(t, m.Done(w.Worker, workID), ErrNotAssigned)
	m.Join(w.Worker, []string{"q"}) // a worker that left stays out
	s := statsOf(t, m, "q")
	assert.Equal(t, 1, s.Workers)
	assert.Equal(t, uint64(2), s.Abandoned)
	checkInvariants(t, m)
}

func TestReofferTiming(t *testing.T) {
	const timeout = 50 * time.Millisecond
	m := NewManager(Options{OfferTimeout: timeout})
	defer m.Close()
	w := newProbe(t, "w", 1)
	v := newProbe(t, "v", 1)
	m.Join(w.Worker, []string{"q"})
	m.Join(v.Worker, []string{"q"})

	start := time.Now()
	id := add(t, m, "q", AddOptions{})
	require.Equal(t, id, w.now(t).ID)
	// w stays silent: it is told the offer expired, and v is offered it.
	n := w.next(t)
	expiredAfter := time.Since(start)
	assert.Equal(t, Notice{Kind: KindExpired, Queue: "q", ID: id, Attempt: 1}, n)
	n = v.next(t)
	assert.Equal(t, id, n.ID)
	assert.Equal(t, 2, n.Attempt)
	assert.GreaterOrEqual(t, expiredAfter, timeout)
	assert.Less(t, expiredAfter, timeout+2*time.Second, "expired long after the offer timeout")
	require.ErrorIs(t, m.Assign(w.Worker, id), ErrOfferExpired)
	require.ErrorIs(t, m.Reject(w.Worker, id), ErrOfferExpired)

	// v is silent too: around again, to w, after another timeout. (Its
	// offer was made when w's expired, at least one timeout after start,
	// and before this test saw either: so the bound is from start.)
	assert.Equal(t, KindExpired, v.next(t).Kind)
	assert.GreaterOrEqual(t, time.Since(start), 2*timeout)
	n = w.next(t)
	assert.Equal(t, 3, n.Attempt)
	require.NoError(t, m.Assign(w.Worker, id))

	s := statsOf(t, m, "q")
	assert.Equal(t, uint64(2), s.TimedOut)
	assert.Equal(t, uint64(3), s.Offered)
	assert.Equal(t, uint64(2), s.Reoffered)
	assert.Equal(t, uint64(1), s.Assigned)
	checkInvariants(t, m)
}

func TestTaskTimeout(t *testing.T) {
	const timeout = 50 * time.Millisecond
	m := NewManager(Options{OfferTimeout: long, TaskTimeout: timeout})
	defer m.Close()
	w := newProbe(t, "w", 1)
	v := newProbe(t, "v", 1)
	m.Join(w.Worker, []string{"q"})
	m.Join(v.Worker, []string{"q"})
	id := add(t, m, "q", AddOptions{Complete: true})
	w.now(t)
	assigned := time.Now()
	require.NoError(t, m.Assign(w.Worker, id))

	n := w.next(t)
	assert.Equal(t, KindExpired, n.Kind)
	assert.GreaterOrEqual(t, time.Since(assigned), timeout)
	n = v.next(t)
	assert.Equal(t, id, n.ID)
	assert.Equal(t, 2, n.Attempt, "a re-delivery is visible")
	err := m.Done(w.Worker, id)
	require.ErrorIs(t, err, ErrNotAssigned)
	assert.Contains(t, err.Error(), "timeout")
	require.NoError(t, m.Assign(v.Worker, id))
	require.NoError(t, m.Done(v.Worker, id))
	s := statsOf(t, m, "q")
	assert.Equal(t, uint64(1), s.TaskTimedOut)
	assert.Equal(t, uint64(1), s.Done)
	assert.Equal(t, uint64(2), s.Assigned)
	checkInvariants(t, m)
}

func TestForcedAssign(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long})
	defer m.Close()
	w := newProbe(t, "w", 1)
	m.Join(w.Worker, []string{"q"})

	// Without Complete a forced task holds no slot: they all arrive.
	var ids []string
	for range 3 {
		ids = append(ids, add(t, m, "q", AddOptions{Forced: true}))
	}
	for _, id := range ids {
		n := w.now(t)
		assert.Equal(t, id, n.ID)
		assert.True(t, n.Assigned)
		require.ErrorIs(t, m.Reject(w.Worker, id), ErrForced)
		require.NoError(t, m.Assign(w.Worker, id), "assign of an assigned task is harmless")
		require.NoError(t, m.Done(w.Worker, id))
	}

	// With Complete it holds the slot until done.
	a := add(t, m, "q", AddOptions{Forced: true, Complete: true})
	n := w.now(t)
	assert.True(t, n.Assigned)
	require.ErrorIs(t, m.Reject(w.Worker, a), ErrForced)
	b := add(t, m, "q", AddOptions{Forced: true})
	w.quiet(t)
	require.NoError(t, m.Done(w.Worker, a))
	assert.Equal(t, b, w.now(t).ID)

	other := newProbe(t, "x", 1)
	m.Join(other.Worker, []string{"q"})
	require.ErrorIs(t, m.Reject(other.Worker, b), ErrNotOfferedToYou)
	s := statsOf(t, m, "q")
	assert.Equal(t, uint64(5), s.Assigned)
	assert.Equal(t, uint64(5), s.Offered)
	assert.Equal(t, uint64(1), s.Done)
	checkInvariants(t, m)
}

func TestFairness(t *testing.T) {
	for _, complete := range []bool{false, true} {
		t.Run(map[bool]string{false: "assign", true: "assign and done"}[complete], func(t *testing.T) {
			m := NewManager(Options{OfferTimeout: long})
			defer m.Close()
			const workers, tasks = 5, 500
			ps := make([]*probe, workers)
			who := make(map[*Worker]int)
			for i := range ps {
				ps[i] = newProbe(t, "w", 1)
				who[ps[i].Worker] = i
				m.Join(ps[i].Worker, []string{"q"})
			}
			counts := make([]int, workers)
			for range tasks {
				id := add(t, m, "q", AddOptions{Complete: complete})
				got := -1
				for i, p := range ps {
					select {
					case n := <-p.ch:
						require.Equal(t, id, n.ID)
						require.Equal(t, -1, got, "offered twice")
						got = i
					default:
					}
				}
				require.NotEqual(t, -1, got, "not offered")
				counts[got]++
				require.NoError(t, m.Assign(ps[got].Worker, id))
				if complete {
					require.NoError(t, m.Done(ps[got].Worker, id))
				}
			}
			mean := tasks / workers
			for i, c := range counts {
				assert.InDelta(t, mean, c, float64(max(2, mean/5)), "worker %d", i)
			}
			t.Logf("counts %v", counts)
		})
	}
}

// TestFairnessAcrossQueues: a worker of two queues is offered the oldest
// waiting task first.
func TestOldestQueueFirst(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long})
	defer m.Close()
	w := newProbe(t, "w", 1)
	m.Join(w.Worker, []string{"a"})
	first := add(t, m, "a", AddOptions{})
	w.now(t)
	b1 := add(t, m, "b", AddOptions{})
	a2 := add(t, m, "a", AddOptions{})
	b3 := add(t, m, "b", AddOptions{})
	m.Join(w.Worker, []string{"b"}) // widen: still busy
	w.quiet(t)
	require.NoError(t, m.Assign(w.Worker, first))
	for _, want := range []string{b1, a2, b3} {
		n := w.now(t)
		require.Equal(t, want, n.ID)
		require.NoError(t, m.Assign(w.Worker, n.ID))
	}
	checkInvariants(t, m)
}

func TestMaxInFlight(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long})
	defer m.Close()
	w := newProbe(t, "w", 3)
	m.Join(w.Worker, []string{"q"})
	var ids []string
	for range 5 {
		ids = append(ids, add(t, m, "q", AddOptions{Complete: true}))
	}
	for _, id := range ids[:3] {
		require.Equal(t, id, w.now(t).ID)
	}
	w.quiet(t)
	require.NoError(t, m.Assign(w.Worker, ids[0]))
	w.quiet(t) // an assigned Complete task still holds its slot
	require.NoError(t, m.Reject(w.Worker, ids[1]))
	// The lone worker refused it: around again, ahead of newer tasks.
	n := w.now(t)
	require.Equal(t, ids[1], n.ID)
	require.Equal(t, 2, n.Attempt)
	require.NoError(t, m.Done(w.Worker, ids[0]))
	require.Equal(t, ids[3], w.now(t).ID)
	w.quiet(t)
	checkInvariants(t, m)
}

func TestBadInput(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long, MaxTasks: 2})
	defer m.Close()
	w := newProbe(t, "alice", 1)
	x := newProbe(t, "bob", 1)
	m.Join(w.Worker, []string{"q"})
	id := add(t, m, "q", AddOptions{})
	w.now(t)
	m.Join(x.Worker, []string{"q"})

	for _, f := range []func(*Worker, string) error{m.Assign, m.Reject, m.Done} {
		require.ErrorIs(t, f(w.Worker, "nope"), ErrUnknownTask)
	}
	require.ErrorIs(t, m.Assign(x.Worker, id), ErrNotOfferedToYou)
	require.ErrorIs(t, m.Reject(x.Worker, id), ErrNotOfferedToYou)
	require.ErrorIs(t, m.Done(x.Worker, id), ErrNotAssigned)
	require.ErrorIs(t, m.Done(w.Worker, id), ErrNotAssigned)

	// The *As methods check the queue and the subject.
	require.ErrorIs(t, m.AssignAs("alice", "other", id), ErrUnknownTask)
	require.ErrorIs(t, m.AssignAs("bob", "q", id), ErrNotOfferedToYou)
	require.ErrorIs(t, m.DoneAs("alice", "q", id), ErrNotAssigned)
	require.NoError(t, m.RejectAs("alice", "q", id))
	require.Equal(t, id, x.now(t).ID)
	require.ErrorIs(t, m.AssignAs("alice", "q", id), ErrOfferExpired)
	require.NoError(t, m.AssignAs("bob", "q", id))
	require.NoError(t, m.AssignAs("bob", "q", id))
	require.NoError(t, m.DoneAs("bob", "q", id))

	// Full: two unfinished tasks fill the queue; Add does not drop them.
	a := add(t, m, "q", AddOptions{})
	add(t, m, "q", AddOptions{})
	_, err := m.Add("q", json.RawMessage(`1`), AddOptions{})
	require.ErrorIs(t, err, ErrQueueFull)
	require.NoError(t, m.Assign(w.Worker, a))
	add(t, m, "q", AddOptions{})
	assert.Equal(t, uint64(1), statsOf(t, m, "q").Full)

	for _, err := range []error{ErrQueueFull, ErrTooManyQueues, ErrUnknownTask, ErrNotOfferedToYou, ErrOfferExpired, ErrNotAssigned, ErrForced, ErrClosed} {
		assert.NotEmpty(t, err.Error())
	}
	checkInvariants(t, m)
}

func TestRetainForgetsFinishedTasks(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long, MaxTasks: 3, Retain: long})
	defer m.Close()
	w := newProbe(t, "w", 1)
	m.Join(w.Worker, []string{"q"})
	var ids []string
	for range 5 {
		id := add(t, m, "q", AddOptions{})
		w.now(t)
		require.NoError(t, m.Assign(w.Worker, id))
		ids = append(ids, id)
	}
	// At most MaxTasks finished tasks are remembered.
	require.ErrorIs(t, m.Assign(w.Worker, ids[0]), ErrUnknownTask)
	require.ErrorIs(t, m.Assign(w.Worker, ids[1]), ErrUnknownTask)
	require.NoError(t, m.Assign(w.Worker, ids[2]))

	m2 := NewManager(Options{OfferTimeout: long, Retain: time.Nanosecond})
	defer m2.Close()
	v := newProbe(t, "v", 1)
	m2.Join(v.Worker, []string{"q"})
	id := add(t, m2, "q", AddOptions{})
	v.now(t)
	require.NoError(t, m2.Assign(v.Worker, id))
	// Retain has passed once the clock moves on.
	require.Eventually(t, func() bool { return errors.Is(m2.Assign(v.Worker, id), ErrUnknownTask) }, 5*time.Second, time.Millisecond)
	m2.mu.Lock()
	assert.Empty(t, m2.tasks)
	m2.mu.Unlock()
}

func TestTake(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long, TaskTimeout: long})
	defer m.Close()
	_, ok := m.Take("carol", "q")
	require.False(t, ok, "no such queue")

	w := newProbe(t, "w", 1)
	m.Join(w.Worker, []string{"q"})
	offeredID := add(t, m, "q", AddOptions{})
	w.now(t)
	_, ok = m.Take("carol", "q")
	require.False(t, ok, "an offered task is not free")

	id := add(t, m, "q", AddOptions{Complete: true})
	n, ok := m.Take("carol", "q")
	require.True(t, ok)
	assert.Equal(t, Notice{Kind: KindTask, Queue: "q", ID: id, Assigned: true, Attempt: 1, Data: json.RawMessage(`{"n":1}`)}, n)
	require.ErrorIs(t, m.DoneAs("dave", "q", id), ErrNotAssigned)
	require.NoError(t, m.AssignAs("carol", "q", id))
	require.NoError(t, m.DoneAs("carol", "q", id))

	// A refused task is free for a take, ahead of newer ones.
	newer := add(t, m, "q", AddOptions{})
	require.NoError(t, m.Reject(w.Worker, offeredID))
	require.Equal(t, offeredID, w.now(t).ID, "around again to the lone worker")
	n, ok = m.Take("carol", "q")
	require.True(t, ok)
	require.Equal(t, newer, n.ID)
	require.ErrorIs(t, m.Reject(w.Worker, newer), ErrNotOfferedToYou)
	require.ErrorIs(t, m.Done(w.Worker, offeredID), ErrNotAssigned, "offered, not assigned")
}

// A held worker gets no notice until it is released: a transport sends
// its answer to a reject before the offer that the reject made possible.
func TestHoldDelaysNotices(t *testing.T) {
	m := NewManager(Options{})
	defer m.Close()
	w := newProbe(t, "w", 1)
	m.Join(w.Worker, []string{"q"})
	first, second := add(t, m, "q", AddOptions{}), add(t, m, "q", AddOptions{})
	require.Equal(t, first, w.now(t).ID)
	w.Hold()
	w.Hold() // holds nest
	require.NoError(t, m.Reject(w.Worker, first))
	w.Release()
	w.quiet(t)
	w.Release()
	// The only worker refused first, so it went around: it comes back
	// ahead of the newer task.
	n := w.now(t)
	require.Equal(t, first, n.ID)
	require.Equal(t, 2, n.Attempt)
	require.NoError(t, m.Assign(w.Worker, first))
	require.Equal(t, second, w.now(t).ID)
	checkInvariants(t, m)
}

// MaxQueues bounds the queues that hold tasks: adding to another is
// refused, to one that already holds tasks is not, and a queue that only
// has workers does not count until a task is added to it.
func TestMaxQueues(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long, MaxQueues: 2, Retain: long})
	defer m.Close()
	w := newProbe(t, "w", 1)
	m.Join(w.Worker, []string{"workers-only"})
	add(t, m, "a", AddOptions{})
	add(t, m, "b", AddOptions{})
	for _, tc := range []struct {
		queue string
		want  error
	}{
		{"a", nil},                         // holds tasks already
		{"b", nil},                         // likewise
		{"c", ErrTooManyQueues},            // a third queue with tasks
		{"workers-only", ErrTooManyQueues}, // it would hold tasks
		{"c", ErrTooManyQueues},            // a refusal creates nothing
		{"a", nil},                         // the others are unaffected
	} {
		_, err := m.Add(tc.queue, json.RawMessage(`1`), AddOptions{})
		if tc.want == nil {
			assert.NoError(t, err, tc.queue)
			continue
		}
		assert.ErrorIs(t, err, tc.want, tc.queue)
		assert.ErrorContains(t, err, "2 queues hold tasks")
	}
	names := []string{}
	for _, s := range m.Stats() {
		names = append(names, s.Name)
	}
	assert.Equal(t, []string{"a", "b", "workers-only"}, names, "a refused Add creates no queue")
	w.quiet(t)
	checkInvariants(t, m)
}

// A queue whose tasks have all finished, with no worker, is forgotten once
// its finished tasks are (Retain), counters and all, and no longer counts
// against MaxQueues; one with a worker stays listed but no longer counts.
func TestEmptyQueuesAreForgotten(t *testing.T) {
	const retain = 30 * time.Millisecond
	m := NewManager(Options{OfferTimeout: long, MaxQueues: 2, Retain: retain})
	defer m.Close()
	w := newProbe(t, "w", 1)
	m.Join(w.Worker, []string{"kept"})
	id := add(t, m, "kept", AddOptions{})
	require.Equal(t, id, w.now(t).ID)
	require.NoError(t, m.Assign(w.Worker, id))
	taken := add(t, m, "gone", AddOptions{Complete: true})
	n, ok := m.Take("http", "gone")
	require.True(t, ok)
	require.Equal(t, taken, n.ID)
	_, err := m.Add("third", json.RawMessage(`1`), AddOptions{})
	require.ErrorIs(t, err, ErrTooManyQueues, "gone's task is unfinished")
	require.NoError(t, m.DoneAs("http", "gone", taken))
	// Both hold finished tasks only, remembered for Retain: a repeated
	// answer is still known.
	require.NoError(t, m.DoneAs("http", "gone", taken))
	assert.Len(t, m.Stats(), 2)

	// Retain later the timer has forgotten gone, and kept stays for its
	// worker, with its counters.
	require.Eventually(t, func() bool { return len(m.Stats()) == 1 }, 5*time.Second, time.Millisecond)
	kept := statsOf(t, m, "kept")
	assert.Equal(t, uint64(1), kept.Assigned)
	assert.Equal(t, 1, kept.Workers)
	require.ErrorIs(t, m.DoneAs("http", "gone", taken), ErrUnknownTask)
	add(t, m, "third", AddOptions{})
	add(t, m, "fourth", AddOptions{})
	_, err = m.Add("fifth", json.RawMessage(`1`), AddOptions{})
	require.ErrorIs(t, err, ErrTooManyQueues)
	checkInvariants(t, m)

	// Its last worker gone, a queue that holds nothing is forgotten at once.
	m.Leave(w.Worker)
	_, found := findStats(m, "kept")
	assert.False(t, found)
	checkInvariants(t, m)
}

// At the bound, Add first forgets the finished tasks that have expired,
// rather than wait for the timer.
func TestMaxQueuesFreedByExpiredTasks(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long, MaxQueues: 1, Retain: time.Nanosecond})
	defer m.Close()
	id := add(t, m, "a", AddOptions{})
	_, ok := m.Take("http", "a")
	require.True(t, ok)
	require.Eventually(t, func() bool {
		_, err := m.Add("b", json.RawMessage(`1`), AddOptions{})
		return err == nil
	}, 5*time.Second, time.Millisecond)
	require.ErrorIs(t, m.DoneAs("http", "a", id), ErrUnknownTask)
	checkInvariants(t, m)
}

func findStats(m *Manager, name string) (QueueStats, bool) {
	for _, s := range m.Stats() {
		if s.Name == name {
			return s, true
		}
	}
	return QueueStats{}, false
}
