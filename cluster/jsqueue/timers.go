package jsqueue

import (
	"log/slog"
	"time"
)

// guard is how long before its lease ends this instance stops acting on a
// task: an ack or nak sent later could reach JetStream after it delivered
// the task to another instance.
func guard(t *jtask) time.Duration { return t.ackWait / 4 }

// renewAt is when t's lease is renewed: halfway through it.
func renewAt(t *jtask) time.Time {
	at := t.leaseEnd.Add(-t.ackWait / 2)
	if at.Before(t.renewMin) {
		at = t.renewMin
	}
	return at
}

// wake recomputes t's earliest timer and puts it in the heap (or takes it
// out when it is not held).
func (b *Broker) wake(t *jtask) {
	if !t.held() {
		b.unschedule(t)
		return
	}
	var next time.Time
	switch t.state {
	case offered, working:
		next = earliest(t.leaseEnd.Add(-guard(t)), t.deadline)
	case parked:
		next = earliest(t.leaseEnd.Add(-guard(t)), t.parkedAt.Add(b.tm.parkMax))
	}
	// An ack under way ends by itself when the lease does: only its
	// renewals are timed.
	if !t.renewing {
		next = earliest(next, renewAt(t))
	}
	if next.IsZero() {
		b.unschedule(t)
		return
	}
	t.next = next
	if b.timers.Set(t) && (b.armed.IsZero() || next.Before(b.armed)) {
		b.armed = next
		select {
		case b.wakeTimer <- struct{}{}:
		default:
		}
	}
}

// earliest is the earlier of a and b; a zero a is none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func (b *Broker) unschedule(t *jtask) { b.timers.Remove(t) }

// runTimers sleeps until the earliest timer, or until wake arms an earlier
// one, and handles what is due.
func (b *Broker) runTimers() {
	defer b.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		b.mu.Lock()
		for !b.closed {
			t, ok := b.timers.PopDue(now)
			if !ok {
				break
			}
			b.fire(t, now)
			if t.hidx >= 0 && !t.next.After(now) {
				// Nothing it could do now (cannot happen): not again at once.
				t.next = now.Add(b.tm.retry)
				b.timers.Set(t)
			}
		}
		next, _ := b.timers.Next()
		b.armed = next
		b.unlock()
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-b.ctx.Done():
			return
		case <-b.wakeTimer:
		case <-timer.C:
		}
	}
}

// fire handles t's timers that are due: the lease lost, the offer or the
// task timed out, a parked task waited long enough for other instances to
// have it, a renewal due.
func (b *Broker) fire(t *jtask, now time.Time) {
	if !t.held() {
		return
	}
	if t.state != acking && !now.Before(t.leaseEnd.Add(-guard(t))) {
		b.lose(t)
		return
	}
	switch t.state {
	case offered:
		if !now.Before(t.deadline) {
			b.expire(t)
			return
		}
	case working:
		if !now.Before(t.deadline) {
			b.expire(t)
			return
		}
	case parked:
		if !now.Before(t.parkedAt.Add(b.tm.parkMax)) {
			if b.peerWorks(t.q.name, now) {
				b.logf(slog.LevelDebug, "queue task given back for other instances' workers", "queue", t.q.name, "id", t.id)
				b.giveBack(t)
				return
			}
			t.parkedAt = now
		}
	}
	if !t.renewing && !now.Before(renewAt(t)) {
		t.renewing = true
		job := renewJob{t: t, gen: t.gen, reply: t.reply}
		select {
		case b.renewals <- job:
		default: // the renewer is behind: try again shortly
			t.renewing = false
			t.renewMin = now.Add(b.tm.retry)
		}
	}
	b.wake(t)
}
