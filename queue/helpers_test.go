package queue

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// probe is a worker whose notices land in a channel. Offers are delivered
// before the call that made them returns (unless a timer made them), so a
// test reads them at once, without waiting.
type probe struct {
	*Worker
	ch chan Notice
}

func newProbe(t testing.TB, subject string, maxInFlight int) *probe {
	p := &probe{ch: make(chan Notice, 4096)}
	p.Worker = NewWorker(subject, maxInFlight, func(n Notice) {
		select {
		case p.ch <- n:
		default:
			t.Errorf("%s: notice channel full", subject)
		}
	})
	return p
}

// next returns the next notice, waiting for a timer to make it.
func (p *probe) next(t testing.TB) Notice {
	t.Helper()
	select {
	case n := <-p.ch:
		return n
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no notice", p.subject)
		return Notice{}
	}
}

// now returns the notice already delivered.
func (p *probe) now(t testing.TB) Notice {
	t.Helper()
	select {
	case n := <-p.ch:
		return n
	default:
		t.Fatalf("%s: no notice delivered", p.subject)
		return Notice{}
	}
}

// quiet checks that nothing was delivered.
func (p *probe) quiet(t testing.TB) {
	t.Helper()
	select {
	case n := <-p.ch:
		t.Fatalf("%s: unexpected notice %+v", p.subject, n)
	default:
	}
}

func add(t testing.TB, m *Manager, queue string, o AddOptions) string {
	t.Helper()
	id, err := m.Add(queue, json.RawMessage(`{"n":1}`), o)
	require.NoError(t, err)
	return id
}

// checkInvariants checks the manager's bookkeeping against its tasks and
// workers.
func checkInvariants(t testing.TB, m *Manager) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	require.NoError(t, invariants(m))
}

func invariants(m *Manager) error {
	timed := 0
	for _, q := range m.queues {
		nUnfinished, nOffers, nWorking, nWaiting := 0, 0, 0, 0
		for _, t := range m.tasks {
			if t.q != q {
				continue
			}
			switch t.state {
			case waiting:
				nWaiting++
			case offered:
				nOffers++
			case working:
				nWorking++
			}
			if t.state != finished {
				nUnfinished++
			}
			if (t.state == offered || t.state == working) != (t.hidx >= 0) {
				return fmt.Errorf("task %s in state %d has heap index %d", t.id, t.state, t.hidx)
			}
			if t.hidx >= 0 {
				timed++
			}
		}
		if nWaiting != len(q.retry)+q.fresh.Len() || nUnfinished != q.tasks || nOffers != q.offers || nWorking != q.working {
			return fmt.Errorf("queue %s: waiting %d/%d+%d, unfinished %d/%d, offers %d/%d, working %d/%d",
				q.name, nWaiting, len(q.retry), q.fresh.Len(), nUnfinished, q.tasks, nOffers, q.offers, nWorking, q.working)
		}
		for i := 1; i < len(q.retry); i++ {
			if q.retry[i-1].seq >= q.retry[i].seq {
				return fmt.Errorf("queue %s: retry out of order", q.name)
			}
		}
		free := 0
		var last uint64
		for e := q.free.Front(); e != nil; e = e.Next() {
			w := e.Value.(*Worker)
			if w.left || w.held >= w.max || w.queues[q] != e || w.stamp < last {
				return fmt.Errorf("queue %s: bad free worker %s (held %d/%d)", q.name, w.subject, w.held, w.max)
			}
			last = w.stamp
			free++
		}
		for w := range q.workers {
			if w.held != len(w.holds) {
				return fmt.Errorf("worker %s holds %d, counts %d", w.subject, len(w.holds), w.held)
			}
			for h := range w.holds {
				if h.holder != w || (h.state != offered && h.state != working) {
					return fmt.Errorf("worker %s holds task %s in state %d", w.subject, h.id, h.state)
				}
			}
			if (w.held < w.max) != (w.queues[q] != nil) {
				return fmt.Errorf("worker %s: held %d/%d, in free list %v", w.subject, w.held, w.max, w.queues[q] != nil)
			}
		}
		// A free worker and a task it may take must not both wait.
		if free > 0 && q.fresh.Len() > 0 {
			return fmt.Errorf("queue %s: fresh tasks wait while %d workers are free", q.name, free)
		}
	}
	holding := 0
	for _, q := range m.queues {
		_, fading := m.fading[q]
		switch {
		case (q.tasks > 0 || q.tombs.Len() > 0) && !q.holding:
			return fmt.Errorf("queue %s holds tasks and does not count", q.name)
		case fading != (q.holding && q.tasks == 0):
			return fmt.Errorf("queue %s: fading %v, holding %v, %d tasks", q.name, fading, q.holding, q.tasks)
		case !q.holding && len(q.workers) == 0 && !m.closed:
			return fmt.Errorf("queue %s holds nothing and has no worker, yet is kept", q.name)
		}
		if q.holding {
			holding++
		}
	}
	if holding != m.holding || len(m.fading) > holding {
		return fmt.Errorf("%d queues hold tasks, %d counted, %d fading", holding, m.holding, len(m.fading))
	}
	for q := range m.fading {
		if m.queues[q.name] != q {
			return fmt.Errorf("fading queue %s is forgotten", q.name)
		}
	}
	if timed != m.timers.Len() {
		return fmt.Errorf("timer heap holds %d, %d tasks are timed", m.timers.Len(), timed)
	}
	return nil
}

func statsOf(t testing.TB, m *Manager, name string) QueueStats {
	t.Helper()
	for _, s := range m.Stats() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no queue %q in stats", name)
	return QueueStats{}
}
