package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestThousandTasksFiveWorkers is the test: five workers reject 20%
// of their offers at random and stay silent on 5%; one leaves mid-task. In
// the end every task was assigned exactly once (without Complete) or done
// exactly once (with Complete), and none is lost.
func TestThousandTasksFiveWorkers(t *testing.T) {
	for _, complete := range []bool{false, true} {
		t.Run(fmt.Sprint("complete=", complete), func(t *testing.T) {
			runLoad(t, complete)
		})
	}
}

func runLoad(t *testing.T, complete bool) {
	const tasks, workers, killAfter = 1000, 5, 60
	m := NewManager(Options{MaxTasks: tasks, OfferTimeout: 10 * time.Millisecond, TaskTimeout: time.Minute})
	defer m.Close()

	var (
		mu       sync.Mutex
		assigned = make(map[string]int)
		done     = make(map[string]int)
		finished = 0
		killed   string // the task the leaving worker held
		all      = make(chan struct{})
	)
	record := func(id string, assign bool) {
		mu.Lock()
		defer mu.Unlock()
		if assign {
			assigned[id]++
			if complete {
				return
			}
		} else {
			done[id]++
		}
		if finished++; finished == tasks {
			close(all)
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	ps := make([]*probe, workers)
	for i := range ps {
		ps[i] = newProbe(t, fmt.Sprint("worker-", i), 1)
		m.Join(ps[i].Worker, []string{"jobs"})
	}
	for i, p := range ps {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 15))
			seen := 0
			for {
				var n Notice
				select {
				case n = <-p.ch:
				case <-stop:
					return
				}
				if n.Kind == KindExpired {
					continue
				}
				seen++
				if i == 0 && seen == killAfter {
					// Killed mid-task: with an open offer, or after
					// assigning a Complete task and before done.
					if complete {
						if m.Assign(p.Worker, n.ID) == nil {
							record(n.ID, true)
							mu.Lock()
							killed = n.ID
							mu.Unlock()
						}
					}
					m.Leave(p.Worker)
					return
				}
				switch r := rng.Float64(); {
				case r < 0.20:
					if err := m.Reject(p.Worker, n.ID); err != nil && !errors.Is(err, ErrOfferExpired) {
						t.Errorf("reject: %v", err)
					}
				case r < 0.25:
					// silent: the offer expires
				default:
					err := m.Assign(p.Worker, n.ID)
					if errors.Is(err, ErrOfferExpired) {
						continue // lost the race with the offer timeout
					}
					if err != nil {
						t.Errorf("assign: %v", err)
						continue
					}
					record(n.ID, true)
					if complete {
						if err := m.Done(p.Worker, n.ID); err != nil {
							t.Errorf("done: %v", err)
							continue
						}
						record(n.ID, false)
					}
				}
			}
		})
	}

	ids := make(map[string]bool, tasks)
	for i := range tasks {
		id, err := m.Add("jobs", json.RawMessage(fmt.Sprint(i)), AddOptions{Complete: complete})
		require.NoError(t, err)
		ids[id] = true
	}
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		mu.Lock()
		t.Fatalf("only %d of %d tasks finished; stats %+v", finished, tasks, m.Stats())
	}
	close(stop)
	wg.Wait()
	for _, p := range ps {
		m.Leave(p.Worker)
	}

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, ids, tasks)
	for id := range assigned {
		require.True(t, ids[id], "unknown task %s assigned", id)
	}
	twice := 0
	for id := range ids {
		if complete {
			require.Equal(t, 1, done[id], "task %s done", id)
			if id == killed {
				require.Equal(t, 2, assigned[id], "the killed worker's task is assigned again")
				twice++
				continue
			}
		}
		require.Equal(t, 1, assigned[id], "task %s assigned", id)
	}
	if complete {
		require.Equal(t, 1, twice, "the killed worker held a task")
	}

	s := statsOf(t, m, "jobs")
	t.Logf("stats %+v", s)
	assert.Equal(t, 0, s.Depth)
	assert.Equal(t, 0, s.Offering)
	assert.Equal(t, 0, s.Working)
	assert.Equal(t, uint64(tasks), s.Added)
	assert.Equal(t, uint64(tasks+twice), s.Assigned)
	assert.Positive(t, s.Rejected)
	assert.Positive(t, s.TimedOut)
	assert.Positive(t, s.Reoffered)
	assert.Equal(t, uint64(1), s.Abandoned)
	if complete {
		assert.Equal(t, uint64(tasks), s.Done)
	}
	assert.Equal(t, s.Offered, s.Assigned+s.Rejected+s.TimedOut+s.Abandoned-uint64(twice),
		"every offer answered once: assigned, rejected, expired or abandoned")
	checkInvariants(t, m)
}

// TestTakeRacesWithOffers: takers and workers compete for the same tasks;
// each task is given to exactly one.
func TestTakeRacesWithOffers(t *testing.T) {
	const tasks = 2000
	m := NewManager(Options{MaxTasks: tasks, OfferTimeout: long})
	defer m.Close()

	var (
		mu    sync.Mutex
		given = make(map[string]int)
		count int
		all   = make(chan struct{})
	)
	give := func(id string) {
		mu.Lock()
		defer mu.Unlock()
		given[id]++
		if count++; count == tasks {
			close(all)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		p := newProbe(t, fmt.Sprint("worker-", i), 2)
		m.Join(p.Worker, []string{"q"})
		wg.Go(func() {
			defer m.Leave(p.Worker)
			for {
				select {
				case n := <-p.ch:
					if err := m.Assign(p.Worker, n.ID); err != nil {
						t.Errorf("assign: %v", err)
						continue
					}
					give(n.ID)
				case <-stop:
					return
				}
			}
		})
	}
	for i := range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if n, ok := m.Take(fmt.Sprint("taker-", i), "q"); ok {
					give(n.ID)
				} else {
					runtime.Gosched()
				}
			}
		})
	}
	for range tasks {
		add(t, m, "q", AddOptions{})
	}
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Fatal("tasks not all given")
	}
	close(stop)
	wg.Wait()
	require.Len(t, given, tasks)
	for id, c := range given {
		require.Equal(t, 1, c, "task %s given %d times", id, c)
	}
	s := statsOf(t, m, "q")
	t.Logf("taken %d of %d", s.Taken, tasks)
	assert.Equal(t, uint64(tasks), s.Assigned)
	assert.Equal(t, s.Assigned-s.Taken, s.Offered)
}

// TestNotifyMayCallBack: notify runs outside the lock, so a worker may
// answer from inside it, and still sees its notices in order.
func TestNotifyMayCallBack(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long})
	defer m.Close()
	var got []string
	var w *Worker
	w = NewWorker("eager", 1, func(n Notice) {
		got = append(got, n.ID)
		if err := m.Assign(w, n.ID); err != nil {
			t.Errorf("assign: %v", err)
		}
	})
	m.Join(w, []string{"q"})
	var want []string
	for range 10 {
		want = append(want, add(t, m, "q", AddOptions{}))
	}
	assert.Equal(t, want, got)
	assert.Equal(t, uint64(10), statsOf(t, m, "q").Assigned)
}

func TestClose(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long})
	w := newProbe(t, "w", 1)
	m.Join(w.Worker, []string{"q"})
	id := add(t, m, "q", AddOptions{})
	w.now(t)
	m.Close()
	m.Close()

	_, err := m.Add("q", nil, AddOptions{})
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, m.Assign(w.Worker, id), ErrClosed)
	require.ErrorIs(t, m.DoneAs("w", "q", id), ErrClosed)
	_, ok := m.Take("w", "q")
	require.False(t, ok)
	v := newProbe(t, "v", 1)
	m.Join(v.Worker, []string{"q"})
	assert.Equal(t, 1, statsOf(t, m, "q").Workers, "no joining after Close")
	m.mu.Lock()
	assert.Zero(t, m.timers.Len(), "no deadline left")
	m.mu.Unlock()
	m.Leave(w.Worker) // the transports still end their connections
	assert.Equal(t, uint64(1), statsOf(t, m, "q").Abandoned)
	w.quiet(t)
	v.quiet(t)
}

func TestQueueWithoutTasksIsForgotten(t *testing.T) {
	m := NewManager(Options{OfferTimeout: long})
	defer m.Close()
	w := newProbe(t, "w", 1)
	m.Join(w.Worker, []string{"made-up", "real"})
	add(t, m, "real", AddOptions{})
	require.Len(t, m.Stats(), 2)
	m.Leave(w.Worker)
	stats := m.Stats()
	require.Len(t, stats, 1)
	assert.Equal(t, "real", stats[0].Name)
	assert.Equal(t, 1, stats[0].Depth)
	assert.Positive(t, stats[0].OldestWaiting)
}
