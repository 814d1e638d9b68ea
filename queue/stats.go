package queue

import (
	"cmp"
	"slices"
	"time"
)

// QueueStats is one queue's state and counters, for /admin/queues and
// metrics. Counters only grow.
type QueueStats struct {
	Name     string
	Depth    int // tasks waiting for an offer
	Offering int // offers open now
	Working  int // assigned tasks awaiting Done (Complete)
	Workers  int // live workers joined to the queue

	Added        uint64 // tasks added
	Full         uint64 // Adds refused with ErrQueueFull
	Offered      uint64 // deliveries to workers: offers and forced assignments
	Reoffered    uint64 // of those, deliveries of a task given out before
	Assigned     uint64 // assignments: accepted offers, forced deliveries and takes
	Taken        uint64 // of those, by Take
	Rejected     uint64 // offers rejected
	TimedOut     uint64 // offers that expired after OfferTimeout
	TaskTimedOut uint64 // Complete tasks taken back after TaskTimeout
	Abandoned    uint64 // offers and assigned tasks returned when their worker left
	Done         uint64 // Complete tasks done

	OldestWaiting time.Duration // age of the oldest waiting task since Add; 0 when none wait
}

// Stats returns every queue's state, by name.
func (m *Manager) Stats() []QueueStats {
	now := time.Now()
	m.mu.Lock()
	out := make([]QueueStats, 0, len(m.queues))
	for _, q := range m.queues {
		s := QueueStats{
			Name:     q.name,
			Depth:    len(q.retry) + q.fresh.Len(),
			Offering: q.offers,
			Working:  q.working,
			Workers:  len(q.workers),

			Added:        q.c.added,
			Full:         q.c.full,
			Offered:      q.c.offered,
			Reoffered:    q.c.reoffered,
			Assigned:     q.c.assigned,
			Taken:        q.c.taken,
			Rejected:     q.c.rejected,
			TimedOut:     q.c.timedOut,
			TaskTimedOut: q.c.taskTimedOut,
			Abandoned:    q.c.abandoned,
			Done:         q.c.doneCount,
		}
		var oldest *task
		switch {
		case len(q.retry) > 0:
			oldest = q.retry[0]
		case q.fresh.Len() > 0:
			oldest = q.fresh.Front()
		}
		if oldest != nil {
			s.OldestWaiting = max(0, now.Sub(oldest.added))
		}
		out = append(out, s)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b QueueStats) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
