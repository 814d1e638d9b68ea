package queue

import (
	"log/slog"
	"time"
)

// schedule sets t's deadline, waking the timer goroutine when it is
// earlier than the one the goroutine sleeps until. Deadlines mostly grow
// (now plus a fixed timeout), so that the goroutine is rarely woken early.
func (m *Manager) schedule(t *task, at time.Time) {
	t.deadline = at
	if m.timers.Set(t) {
		m.wakeBy(at)
	}
}

// wakeBy wakes the timer goroutine when at is earlier than the time it
// sleeps until.
func (m *Manager) wakeBy(at time.Time) {
	if m.armed.IsZero() || at.Before(m.armed) {
		m.armed = at
		select {
		case m.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

func (m *Manager) unschedule(t *task) { m.timers.Remove(t) }

// run is the timer goroutine: it sleeps until the earliest deadline, or
// until schedule wakes it for an earlier one, and expires what is due; it
// also forgets the remembered tasks of fading queues when they expire. A
// deadline removed by an answer is not unarmed: the goroutine wakes for it
// and sleeps again until the next.
func (m *Manager) run() {
	defer close(m.stopped)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		m.mu.Lock()
		m.expire(now)
		next := m.fade(now)
		if at, ok := m.timers.Next(); ok && (next.IsZero() || at.Before(next)) {
			next = at
		}
		m.armed = next
		m.unlock()
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-m.done:
			return
		case <-m.wake:
		case <-timer.C:
		}
	}
}

// expire handles the deadlines due by now: an offer left unanswered is
// refused, and a Complete task not done goes back; either way the worker is
// told "expired".
func (m *Manager) expire(now time.Time) {
	for {
		t, ok := m.timers.PopDue(now)
		if !ok {
			return
		}
		h, q := t.holder, t.q
		switch t.state {
		case offered:
			q.offers--
			q.c.timedOut++
			t.marks[h] |= markRefused
		case working:
			q.working--
			q.c.taskTimedOut++
			t.marks[h] |= markRefused | markLost
			m.logf(slog.LevelInfo, "queue task timed out before done", "queue", q.name, "id", t.id, "subject", h.subject, "attempt", t.attempt)
		default:
			continue
		}
		m.release(h, t)
		m.requeue(t)
		m.tell(h, Notice{Kind: KindExpired, Queue: q.name, ID: t.id, Attempt: t.attempt})
	}
}
