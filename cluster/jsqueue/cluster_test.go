package jsqueue

// Several instances on one NATS: an instance that dies with tasks out, and
// a load with refusals, silences, takes and a death, watched for a task
// held by two instances at once.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/internal/natstest"
	"eventsrv/queue"
)

// die cuts an instance off NATS without a word, as a killed process: its
// Broker keeps running, but nothing it sends arrives any more.
func (in *instance) die() { in.nc.Close() }

// An instance dies holding offers nobody answered and assigned tasks not
// done: after the ack wait the other instance's worker is offered each of
// them, once, on a later attempt; tasks assigned there without completion
// (acked) do not come back; every one is done once.
func TestInstanceDies(t *testing.T) {
	s := natstest.StartServer(t)
	o := short()
	o.OfferTimeout = 2 * time.Second // the ack wait: how long a dead instance's tasks stay out
	a, b := start(t, s, o), start(t, s, o)
	stop := watchHolders(t, a, b)
	defer stop()
	wa := newProbe(t, "wa", 4)
	a.Join(wa.Worker, []string{"q"})
	var offered, working []string
	for i := range 2 {
		offered = append(offered, add(t, a, "q", fmt.Sprint(i), queue.AddOptions{}))
	}
	for i := range 2 {
		working = append(working, add(t, b, "q", fmt.Sprint(10+i), queue.AddOptions{Complete: true}))
	}
	for range 4 {
		wa.offer(t, "", 1)
	}
	for _, id := range working {
		require.NoError(t, a.Assign(wa.Worker, id))
	}
	// One more, assigned without completion: finished, acked.
	wa2 := newProbe(t, "wa2", 1)
	a.Join(wa2.Worker, []string{"q"})
	acked := add(t, b, "q", `"acked"`, queue.AddOptions{})
	wa2.offer(t, acked, 1)
	require.NoError(t, a.Assign(wa2.Worker, acked))

	wb := newProbe(t, "wb", 10)
	b.Join(wb.Worker, []string{"q"})
	wb.quiet(t, 300*time.Millisecond)
	died := time.Now()
	a.die()
	want := map[string]bool{}
	for _, id := range append(offered, working...) {
		want[id] = true
	}
	got := map[string]int{}
	for range want {
		n := wb.next(t)
		require.True(t, want[n.ID], "offered %s, not one of the dead instance's", n.ID)
		assert.Equal(t, 2, n.Attempt)
		got[n.ID]++
		require.NoError(t, b.Assign(wb.Worker, n.ID))
		if slicesContains(working, n.ID) {
			require.NoError(t, b.Done(wb.Worker, n.ID))
		}
	}
	took := time.Since(died)
	t.Logf("the dead instance's %d tasks were offered elsewhere within %v (ack wait %v)", len(want), took.Round(time.Millisecond), a.tm.ackWait)
	assert.Less(t, took, a.tm.ackWait+3*time.Second)
	wb.quiet(t, time.Second) // the acked one is not offered again, and none twice
	for id := range want {
		assert.Equal(t, 1, got[id], id)
	}
	// The dead instance's workers were told their offers ended (its
	// leases ran out), and their late answers fail.
	for range 4 {
		n := wa.next(t)
		assert.Equal(t, queue.KindExpired, n.Kind)
	}
	require.Error(t, a.Done(wa.Worker, working[0]))
	st := statsOf(t, b, "q")
	assert.Equal(t, uint64(4), st.Assigned)
	assert.Equal(t, uint64(2), st.Done)
	assert.Zero(t, st.Depth)
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// The load, over three instances: tasks added round-robin, 2
// workers per instance rejecting 20% and silent on 5%, a taker per
// instance, some forced tasks; one instance dies halfway. No task is held
// by two instances at once; in the end every task was assigned once (done
// once with completion), but for those the dead instance's workers held
// assigned and not done, which were assigned again elsewhere; none lost.
func TestLoadAcrossInstances(t *testing.T) {
	s := natstest.StartServer(t)
	o := short()
	o.OfferTimeout = 300 * time.Millisecond
	ins := []*instance{start(t, s, o), start(t, s, o), start(t, s, o)}
	peers(t, ins...)
	stopWatch := watchHolders(t, ins...)
	defer stopWatch()
	const tasks = 600
	const dying = 2

	type rec struct {
		assigned, done int
		onDead         bool // assigned (Complete) by a worker of the dead instance, not done
	}
	var (
		mu       sync.Mutex
		recs     = map[string]*rec{}
		problems []string
		finished int
		all      = make(chan struct{})
		dead     = make(chan struct{})
	)
	problem := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	r := func(id string) *rec {
		if recs[id] == nil {
			recs[id] = &rec{}
		}
		return recs[id]
	}
	finish := func() {
		if finished++; finished == tasks {
			close(all)
		}
	}
	type taskData struct {
		N        int  `json:"n"`
		Complete bool `json:"complete"`
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, in := range ins {
		for j := range 2 {
			p := newProbe(t, fmt.Sprintf("w%d-%d", i, j), 1+j)
			in.Join(p.Worker, []string{"load"})
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(i*10+j), 13))
				for {
					var n queue.Notice
					select {
					case n = <-p.ch:
					case <-stop:
						return
					}
					if i == dying {
						select {
						case <-dead:
							continue // a dead instance's workers do nothing more
						default:
						}
					}
					if n.Kind != queue.KindTask {
						continue
					}
					var d taskData
					_ = json.Unmarshal(n.Data, &d)
					x := rng.Float64()
					switch {
					case n.Assigned && !d.Complete:
						mu.Lock()
						r(n.ID).assigned++
						finish()
						mu.Unlock()
						continue
					case n.Assigned:
					case x < 0.2:
						if err := in.Reject(p.Worker, n.ID); err != nil && !isLate(err) {
							problem("%s: reject %s: %v", p.name, n.ID, err)
						}
						continue
					case x < 0.25:
						continue // silent: OFFER_TIMEOUT
					default:
						err := in.Assign(p.Worker, n.ID)
						if isLate(err) {
							continue
						}
						if err != nil {
							problem("%s: assign %s: %v", p.name, n.ID, err)
							continue
						}
					}
					mu.Lock()
					r(n.ID).assigned++
					if !d.Complete {
						finish()
						mu.Unlock()
						continue
					}
					if i == dying && rng.Float64() < 0.3 {
						select {
						case <-dead:
						default:
							r(n.ID).onDead = true // holds it, never done: the death gives it back
							mu.Unlock()
							continue
						}
					}
					mu.Unlock()
					err := in.Done(p.Worker, n.ID)
					mu.Lock()
					switch {
					case err == nil:
						r(n.ID).done++
						finish()
					case i == dying && errors.Is(err, queue.ErrClosed):
						// Assigned just before the death, done just after:
						// the death gives it back, as for onDead above.
						r(n.ID).onDead = true
					case !isLate(err):
						problems = append(problems, fmt.Sprintf("%s: done %s: %v", p.name, n.ID, err))
					}
					mu.Unlock()
				}
			})
		}
		// A taker.
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if i == dying {
					select {
					case <-dead:
						return
					default:
					}
				}
				n, ok := in.Take(fmt.Sprint("taker-", i), "load")
				if !ok {
					continue
				}
				var d taskData
				_ = json.Unmarshal(n.Data, &d)
				mu.Lock()
				r(n.ID).assigned++
				mu.Unlock()
				if d.Complete {
					if err := in.DoneAs(fmt.Sprint("taker-", i), "load", n.ID); err != nil {
						if i == dying && errors.Is(err, queue.ErrClosed) {
							mu.Lock()
							r(n.ID).onDead = true // taken just before the death
							mu.Unlock()
						} else {
							problem("taker %d: done %s: %v", i, n.ID, err)
						}
						continue
					}
					mu.Lock()
					r(n.ID).done++
					mu.Unlock()
				}
				mu.Lock()
				finish()
				mu.Unlock()
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	ids := make([]string, tasks)
	for k := range tasks {
		if k == tasks/2 {
			ins[dying].die()
			close(dead)
		}
		in := ins[k%2] // the dying instance adds none: its adds would fail after death
		ao := queue.AddOptions{Complete: k%2 == 1, Forced: k%7 == 0}
		data, _ := json.Marshal(taskData{N: k, Complete: ao.Complete})
		id, err := in.Add("load", data, ao)
		require.NoError(t, err)
		ids[k] = id
		if k%50 == 0 {
			time.Sleep(20 * time.Millisecond) // now and then the workers catch up
		}
	}
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		mu.Lock()
		n, ps := finished, problems
		var missing []string
		for k, id := range ids {
			if rc := recs[id]; rc == nil || rc.assigned == 0 || (k%2 == 1 && rc.done == 0) {
				missing = append(missing, fmt.Sprintf("task %d (%s): %+v", k, id, rc))
			}
		}
		mu.Unlock()
		t.Fatalf("%d of %d tasks finished; not finished: %v; problems %v", n, tasks, missing, ps)
	}
	time.Sleep(200 * time.Millisecond) // anything more would show now
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, problems)
	again := 0
	for k, id := range ids {
		rc := recs[id]
		require.NotNil(t, rc, "task %d never went out", k)
		complete := k%2 == 1
		want := 1
		if rc.onDead {
			want = 2
			again++
		}
		assert.Equal(t, want, rc.assigned, "task %d assigned", k)
		if complete {
			assert.Equal(t, 1, rc.done, "task %d done", k)
		} else {
			assert.Zero(t, rc.done)
		}
	}
	assert.Len(t, recs, tasks, "only added tasks went out")
	var taken, offered uint64
	for _, in := range ins {
		st := statsOf(t, in, "load")
		taken += st.Taken
		offered += st.Offered
	}
	t.Logf("%d tasks; %d offers, %d taken; %d held by the dead instance's workers were done elsewhere", tasks, offered, taken, again)
	assert.Zero(t, statsOf(t, ins[0], "load").Depth)
}

// isLate: an answer that came after the offer ended, or to a dead
// instance.
func isLate(err error) bool {
	return err != nil && (errors.Is(err, queue.ErrOfferExpired) || errors.Is(err, queue.ErrClosed) || errors.Is(err, queue.ErrNotAssigned))
}
