package jsqueue

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"eventsrv/cluster"
	"eventsrv/queue"
)

// Stats returns every queue's state, by name: the queues this instance
// knows and those with tasks in the stream. Depth and OldestWaiting are
// the queue's, read from JetStream (the same on every instance); Workers,
// Offering, Working and the counters are this instance's.
//
// Depth is the queue's unfinished tasks in the stream less those out with
// workers (offered, assigned awaiting done) on the live instances, as each
// last said (within a second): a task that waits in the stream, or that
// was delivered to an instance and waits there for a free worker, counts.
// OldestWaiting is the age of its oldest unfinished task not out with a
// worker of this instance, while any wait.
func (b *Broker) Stats() []queue.QueueStats {
	now := time.Now()
	ctx, cancel := context.WithTimeout(b.ctx, time.Second)
	defer cancel()
	b.mu.Lock()
	s := b.streamH
	b.mu.Unlock()
	var unfinished map[string]uint64
	if s != nil && b.Ready() == nil {
		if info, err := s.Info(ctx, jetstream.WithSubjectFilter(b.stream+".>")); err == nil {
			unfinished = make(map[string]uint64, len(info.State.Subjects))
			for subj, n := range info.State.Subjects {
				if name, ok := cluster.Name(b.stream, subj); ok {
					unfinished[name] = n
				}
			}
		}
	}
	b.mu.Lock()
	held := make(map[string]int)
	for _, p := range b.peers {
		if p.live(now, b.tm.peerTTL) {
			for name, c := range p.queues {
				held[name] += c[1]
			}
		}
	}
	out := make([]queue.QueueStats, 0, len(b.queues))
	seen := make(map[string]bool, len(b.queues))
	for name, q := range b.queues {
		seen[name] = true
		st := queue.QueueStats{
			Name: name, Offering: q.offers, Working: q.working, Workers: len(q.workers),
			Added: q.c.added, Full: q.c.full, Offered: q.c.offered, Reoffered: q.c.reoffered,
			Assigned: q.c.assigned, Taken: q.c.taken, Rejected: q.c.rejected, TimedOut: q.c.timedOut,
			TaskTimedOut: q.c.taskTimedOut, Abandoned: q.c.abandoned, Done: q.c.doneCount,
		}
		if unfinished != nil {
			q.depth = max(0, int(unfinished[name])-held[name]-q.out())
		}
		st.Depth = q.depth
		out = append(out, st)
	}
	for name, n := range unfinished {
		if !seen[name] {
			out = append(out, queue.QueueStats{Name: name, Depth: max(0, int(n)-held[name])})
		}
	}
	mine := make(map[string]bool)
	for id, t := range b.tasks {
		if t.held() && t.state != parked {
			mine[id] = true
		}
	}
	b.mu.Unlock()
	if s != nil && unfinished != nil {
		for i := range out {
			if out[i].Depth > 0 {
				out[i].OldestWaiting = b.oldest(ctx, s, out[i].Name, mine, now)
			}
		}
	}
	slices.SortFunc(out, func(a, b queue.QueueStats) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// oldest is the age of the queue's oldest unfinished task not held here.
func (b *Broker) oldest(ctx context.Context, s jetstream.Stream, name string, mine map[string]bool, now time.Time) time.Duration {
	subj := cluster.Subject(b.stream, name)
	seq := uint64(1)
	for range 8 {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if err != nil {
			return 0
		}
		if !mine[m.Header.Get("Nats-Msg-Id")] {
			return max(0, now.Sub(m.Time))
		}
		seq = m.Sequence + 1
	}
	return 0
}
