package jsqueue

import (
	"cmp"
	"container/list"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"eventsrv/queue"
)

// Headers of a task's message besides Nats-Msg-Id, its ID.
const (
	hdrForced   = "Eventsrv-Forced"
	hdrComplete = "Eventsrv-Complete"
)

// Join starts a worker's work on the named queues, or widens it. It does
// nothing for a worker that has left, or once the Broker is closed.
func (b *Broker) Join(qw *queue.Worker, names []string) {
	b.mu.Lock()
	defer b.unlock()
	if b.closed {
		return
	}
	if _, ok := b.left[qw]; ok {
		return
	}
	w := b.workers[qw]
	if w == nil {
		w = &jw{w: qw, subject: qw.Subject(), max: qw.MaxInFlight(), queues: make(map[*jq]*list.Element), holds: make(map[*jtask]struct{})}
		b.clock++
		w.stamp = b.clock
		b.workers[qw] = w
	}
	for _, name := range names {
		q := b.queue(name)
		if _, ok := w.queues[q]; ok {
			continue
		}
		if len(q.workers) == 0 {
			b.tellPeers = true
		}
		q.workers[w] = struct{}{}
		w.queues[q] = nil
		if w.held < w.max {
			w.queues[q] = q.insertFree(w)
		}
		b.markDirty(q)
	}
}

// insertFree puts w into q's free list by its stamp.
func (q *jq) insertFree(w *jw) *list.Element {
	for e := q.free.Back(); e != nil; e = e.Prev() {
		if e.Value.(*jw).stamp < w.stamp {
			return q.free.InsertAfter(w, e)
		}
	}
	return q.free.PushFront(w)
}

// leftWorker is a worker that left, kept for a while so that it cannot
// join again and its late answers are told what became of its offers.
type leftWorker struct {
	w  *jw
	at time.Time
}

// Leave ends a worker's work: its open offers and its assigned tasks
// awaiting done are given back to JetStream, as refused by it. Leave is
// idempotent, and the worker cannot join again.
func (b *Broker) Leave(qw *queue.Worker) {
	b.mu.Lock()
	defer b.unlock()
	if _, ok := b.left[qw]; ok {
		return
	}
	w := b.workers[qw]
	delete(b.workers, qw)
	b.left[qw] = time.Now()
	qw.DropNotices()
	if w == nil {
		return
	}
	b.leftJW[qw] = w
	w.left = true
	for q, e := range w.queues {
		if e != nil {
			q.free.Remove(e)
		}
		delete(q.workers, w)
		if len(q.workers) == 0 {
			b.tellPeers = true
			b.forget(q)
		}
		b.markDirty(q) // the live workers changed: a parked task may now be refused by all
	}
	w.queues = nil
	returned := 0
	// Oldest first: JetStream delivers them again in the order given back.
	holds := slices.SortedFunc(maps.Keys(w.holds), func(a, b *jtask) int { return cmp.Compare(a.seq, b.seq) })
	for _, t := range holds {
		if t.state == acking {
			continue // settled by the ack under way
		}
		t.q.c.abandoned++
		t.marks[w] |= markRefused
		b.refused(t)
		returned++
	}
	w.holds, w.held = nil, 0
	if returned > 0 {
		b.logf(slog.LevelDebug, "queue worker left holding tasks", "subject", w.subject, "returned", returned)
	}
}

// forget drops a queue that has nothing left here: no workers, no task
// held or remembered, no pull request out, nothing added, delivered or
// finished here for Retain. Its counters go with it, as a
// forgotten queue's do in memory.
func (b *Broker) forget(q *jq) {
	if len(q.workers) == 0 && q.held == 0 && q.pulls == 0 && q.memory.Len() == 0 && !b.closed &&
		time.Since(q.active) > b.opts.Retain {
		delete(b.queues, q.name)
		delete(b.pullq, q)
		b.forgetConsumer(q.name)
	}
}

// actor is who answers: a worker (Assign, Reject, Done), or a subject (the
// *As methods, and other instances' questions; detached limits those to
// takes, for a worker of another instance).
type actor struct {
	w        *jw
	subject  string
	detached bool
}

// is reports whether h acts for a.
func (a actor) is(h *jw) bool {
	switch {
	case h == nil:
		return false
	case a.w != nil:
		return h == a.w || (h.detached && h.subject == a.w.subject)
	case a.detached:
		return h.detached && h.subject == a.subject
	default:
		return h.subject == a.subject
	}
}

func (a actor) marked(t *jtask, marks mark) bool {
	for h, mk := range t.marks {
		if mk&marks != 0 && a.is(h) {
			return true
		}
	}
	return false
}

type op uint8

const (
	opAssign op = iota
	opReject
	opDone
)

var opNames = [...]string{"assign", "reject", "done"}

// ackKind is what an ack under way settles.
type ackKind uint8

const (
	ackAssign ackKind = iota // an offer accepted (no Complete)
	ackDone                  // a Complete task done
	ackForced                // a forced delivery (no Complete), told once acked
	ackTake                  // a take (no Complete), answered once acked
)

// result is what this instance can say about an answer.
type result struct {
	auth                       bool // it holds the task, or finished it: err is the answer
	err                        error
	exists, seen, lost, forced bool // what it knows otherwise (seen and lost: by the actor)
	ack                        *jtask
	ackGen                     uint64
}

// Assign accepts an offer made to w. For a task added with Complete, Done
// is due within TaskTimeout; otherwise the task is acked and finished.
func (b *Broker) Assign(w *queue.Worker, id string) error { return b.answerWorker(w, id, opAssign) }

// Reject refuses an offer made to w: the task goes back to JetStream.
func (b *Broker) Reject(w *queue.Worker, id string) error { return b.answerWorker(w, id, opReject) }

// Done marks a task assigned to w as done.
func (b *Broker) Done(w *queue.Worker, id string) error { return b.answerWorker(w, id, opDone) }

// AssignAs is Assign for an HTTP caller: it acts as whichever worker of
// subject holds the task, on any instance.
func (b *Broker) AssignAs(subject, queue, id string) error {
	return b.answer(actor{subject: subject}, queue, id, opAssign)
}

// RejectAs is Reject for an HTTP caller; see AssignAs.
func (b *Broker) RejectAs(subject, queue, id string) error {
	return b.answer(actor{subject: subject}, queue, id, opReject)
}

// DoneAs is Done for an HTTP caller, including one that took the task;
// see AssignAs.
func (b *Broker) DoneAs(subject, queue, id string) error {
	return b.answer(actor{subject: subject}, queue, id, opDone)
}

func (b *Broker) answerWorker(qw *queue.Worker, id string, o op) error {
	b.mu.Lock()
	w := b.workers[qw]
	if w == nil {
		w = b.leftJW[qw]
	}
	b.mu.Unlock()
	if w == nil {
		// Never joined: it holds nothing; what is the task?
		w = &jw{w: qw, subject: qw.Subject(), left: true}
	}
	return b.answer(actor{w: w}, "", id, o)
}

// answer settles an answer here, or asks the other instances when this one
// does not hold the task.
func (b *Broker) answer(a actor, queueName, id string, o op) error {
	r := b.answerHere(a, queueName, id, o)
	if r.auth {
		return r.err
	}
	return b.askPeers(a, queueName, id, o, r)
}

// answerHere is what this instance answers: settled (err) when it holds
// the task or finished it (auth), otherwise what it knows.
func (b *Broker) answerHere(a actor, queueName, id string, o op) result {
	for {
		now := time.Now()
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return result{auth: true, err: queue.ErrClosed}
		}
		t := b.lookup(id, now)
		if t != nil && queueName != "" && t.q.name != queueName {
			t = nil // a permission checked on the queue in the path covers only its tasks
		}
		if t != nil && t.busy != nil {
			ch := t.busy
			b.unlock()
			select {
			case <-ch:
			case <-b.ctx.Done():
			}
			continue
		}
		r := b.answerLocked(a, t, o, now)
		b.unlock()
		if r.ack != nil {
			r.err = b.settle(r.ack, r.ackGen)
		}
		return r
	}
}

func (b *Broker) answerLocked(a actor, t *jtask, o op, now time.Time) result {
	if t == nil {
		return result{}
	}
	r := result{exists: true, seen: a.marked(t, markSeen), lost: a.marked(t, markLost), forced: t.forced}
	if t.state == gone {
		return r // it went back to JetStream: another instance may hold it
	}
	r.auth = true
	switch o {
	case opAssign:
		r.err = b.assign(a, t, now, &r)
	case opReject:
		r.err = b.reject(a, t)
	default:
		r.err = b.finishWork(a, t, &r)
	}
	return r
}

// startAck makes t's ack under way; the caller sends it with settle.
func (b *Broker) startAck(t *jtask, kind ackKind, r *result) {
	t.ackFrom, t.ackKind = t.state, kind
	t.state = acking
	t.busy = make(chan struct{})
	r.ack, r.ackGen = t, t.gen
}

func (b *Broker) assign(a actor, t *jtask, now time.Time, r *result) error {
	if a.is(t.holder) {
		switch t.state {
		case offered:
			q := t.q
			if t.complete {
				q.offers--
				q.c.assigned++
				t.state = working
				q.working++
				t.deadline = now.Add(b.opts.TaskTimeout)
				b.wake(t)
				return nil
			}
			b.startAck(t, ackAssign, r)
			return nil
		case working, finished:
			return nil // already assigned to the caller: a repeat
		}
	}
	if a.marked(t, markSeen) {
		return queue.ErrOfferExpired
	}
	return queue.ErrNotOfferedToYou
}

func (b *Broker) reject(a actor, t *jtask) error {
	if a.is(t.holder) && t.state == offered {
		t.q.c.rejected++
		t.marks[t.holder] |= markRefused
		b.refused(t)
		return nil
	}
	switch {
	case t.forced && (a.is(t.holder) || a.marked(t, markSeen)):
		return queue.ErrForced
	case a.is(t.holder):
		return fmt.Errorf("%w: the task is assigned to you", queue.ErrOfferExpired)
	case a.marked(t, markSeen):
		return queue.ErrOfferExpired
	}
	return queue.ErrNotOfferedToYou
}

var errLost = fmt.Errorf("%w: its task timeout passed and it went back to the queue", queue.ErrNotAssigned)

func (b *Broker) finishWork(a actor, t *jtask, r *result) error {
	if a.is(t.holder) {
		switch t.state {
		case working:
			b.startAck(t, ackDone, r)
			return nil
		case finished:
			return nil // done already, or assigned without Complete
		case offered:
			return fmt.Errorf("%w: assign it first", queue.ErrNotAssigned)
		}
	}
	if a.marked(t, markLost) {
		return errLost
	}
	return queue.ErrNotAssigned
}

// errUnavailable answers an action whose ack could not be sent.
var errUnavailable = fmt.Errorf("%w: NATS JetStream could not be reached; try again in a moment", queue.ErrClosed)

// settle sends the ack that t's answer needs and applies its outcome. An
// ack sent but not confirmed before the lease's guard counts as done: the
// task may then be delivered again (at least once), but is never lost.
func (b *Broker) settle(t *jtask, gen uint64) error {
	confirmed, sent := b.ack(t, gen)
	b.mu.Lock()
	defer b.unlock()
	close(t.busy)
	t.busy = nil
	if t.gen != gen || t.state != acking {
		return queue.ErrOfferExpired
	}
	t.state = t.ackFrom
	q := t.q
	if !sent {
		if t.ackKind == ackForced || t.ackKind == ackTake || (t.holder != nil && t.holder.left) {
			b.giveBack(t)
		} else {
			b.wake(t)
		}
		return errUnavailable
	}
	if !confirmed {
		b.logf(slog.LevelWarn, "queue task ack not confirmed by JetStream; it may be delivered again", "queue", q.name, "id", t.id)
	}
	switch t.ackKind {
	case ackAssign:
		q.c.assigned++
	case ackDone:
		q.c.doneCount++
	case ackForced:
		q.c.assigned++
		n := b.notice(t)
		n.Assigned = true
		b.tell(t.holder, n)
	case ackTake:
		q.c.assigned++
		q.c.taken++
	}
	b.drop(t, finished)
	return nil
}

// notice is t's task notice.
func (b *Broker) notice(t *jtask) queue.Notice {
	return queue.Notice{Kind: queue.KindTask, Queue: t.q.name, ID: t.id, Attempt: t.attempt, Data: t.data}
}

// Take assigns a task that waits right now (parked here, or the next of
// the queue in JetStream) to an HTTP caller of subject; false when there
// is none.
func (b *Broker) Take(subject, name string) (queue.Notice, bool) {
	if !b.started.Load() || b.Ready() != nil {
		return queue.Notice{}, false
	}
	b.mu.Lock()
	var t *jtask
	if q := b.queues[name]; q != nil && len(q.parked) > 0 && !b.closed {
		t = q.parked[0]
		b.unpark(t)
	}
	if t == nil {
		b.mu.Unlock()
		start := time.Now()
		m, ackWait, err := b.fetchOne(name)
		if err != nil {
			b.quiet.Log(b.log, slog.LevelWarn, "queue take: fetching a task failed", "queue", name, "err", err)
			return queue.Notice{}, false
		}
		if m == nil {
			return queue.Notice{}, false
		}
		b.mu.Lock()
		if t = b.arrive(name, m, start, ackWait); t == nil {
			b.unlock()
			return queue.Notice{}, false
		}
	}
	now := time.Now()
	h := &jw{subject: subject, detached: true}
	n := b.give(t, h)
	n.Assigned = true
	q := t.q
	if t.complete {
		q.c.taken++
		q.c.assigned++
		t.state = working
		q.working++
		t.deadline = now.Add(b.opts.TaskTimeout)
		b.wake(t)
		b.unlock()
		return n, true
	}
	var r result
	b.startAck(t, ackTake, &r)
	b.unlock()
	if err := b.settle(t, r.ackGen); err != nil {
		return queue.Notice{}, false
	}
	return n, true
}

// give makes h t's holder and returns its task notice.
func (b *Broker) give(t *jtask, h *jw) queue.Notice {
	t.holder = h
	if t.marks == nil {
		t.marks = make(map[*jw]mark, 1)
	}
	t.marks[h] |= markSeen
	return b.notice(t)
}

// arrive takes in a delivery of the named queue, started (its pull
// request sent) at start, as a parked task held here (not in the parked
// list), or nil when it is not a task or this instance cannot take it.
func (b *Broker) arrive(name string, m jetstream.Msg, start time.Time, ackWait time.Duration) *jtask {
	md, err := m.Metadata()
	if err != nil {
		return nil
	}
	q := b.queue(name)
	q.active = time.Now()
	id := m.Headers().Get("Nats-Msg-Id")
	if id == "" || !json.Valid(m.Data()) {
		// Not added by eventsrv: taken out of the queue, which loses nothing.
		reply := m.Reply()
		b.later(func() { _ = b.nc.Publish(reply, ackTerm) })
		b.logf(slog.LevelWarn, "queue message that eventsrv did not add removed from the stream", "queue", name, "seq", md.Sequence.Stream)
		return nil
	}
	if b.closed {
		reply := m.Reply()
		b.later(func() { _ = b.nc.Publish(reply, ackNak) })
		return nil
	}
	t := b.tasks[id]
	if t != nil && t.q != q {
		t = nil // an ID of another queue: not ours to mix up
	}
	if t != nil && t.held() {
		// Delivered again while held here: this instance's lease ended
		// without it noticing.
		if t.state == acking {
			reply := m.Reply()
			b.later(func() { _ = b.nc.Publish(reply, ackNak) })
			b.logf(slog.LevelWarn, "queue task delivered again while its ack is under way", "queue", name, "id", id)
			return nil
		}
		b.lose(t)
	}
	if t == nil {
		t = &jtask{id: id, q: q, hidx: -1}
		b.tasks[id] = t
	}
	t.memo++ // its place in q.memory, if any, is stale
	delete(q.awaiting, md.Sequence.Stream)
	t.seq = md.Sequence.Stream
	t.data = m.Data()
	t.forced = m.Headers().Get(hdrForced) != ""
	t.complete = m.Headers().Get(hdrComplete) != ""
	t.added = md.Timestamp
	t.state = parked
	t.reply = m.Reply()
	t.attempt = int(md.NumDelivered)
	t.ackWait = ackWait
	t.leaseEnd = start.Add(ackWait)
	t.renewing = false
	t.renewMin = time.Time{}
	t.holder = nil
	t.parkedAt = time.Now()
	q.held++
	b.wake(t)
	return t
}

// arrived places a delivery of a pull request.
func (b *Broker) arrived(name string, m jetstream.Msg, start time.Time, ackWait time.Duration) {
	b.mu.Lock()
	defer b.unlock()
	q := b.queue(name)
	if q.want > 0 {
		q.want--
	}
	t := b.arrive(name, m, start, ackWait)
	if t == nil {
		return
	}
	if !b.place(t, time.Now()) {
		b.park(t)
	}
}

// park keeps t here for a worker of this instance, in stream order.
func (b *Broker) park(t *jtask) {
	q := t.q
	t.parkedAt = time.Now()
	i, _ := slices.BinarySearchFunc(q.parked, t.seq, func(x *jtask, seq uint64) int { return cmp.Compare(x.seq, seq) })
	q.parked = slices.Insert(q.parked, i, t)
	b.wake(t)
}

func (b *Broker) unpark(t *jtask) {
	q := t.q
	if i := slices.Index(q.parked, t); i >= 0 {
		q.parked = slices.Delete(q.parked, i, i+1)
	}
}

// place offers t (held here, on offer to no one) to the longest-free worker
// here that has not refused it. When every live worker here has refused
// it, it is handed back to JetStream once for other instances' workers, or
// goes around again here. It returns false when t must wait here for a
// worker to be free.
func (b *Broker) place(t *jtask, now time.Time) bool {
	q := t.q
	if len(q.workers) == 0 {
		b.giveBack(t)
		return true
	}
	if w := q.firstFree(t); w != nil {
		b.deliver(t, w, now)
		return true
	}
	if !q.refusedByAll(t) {
		return false // a worker here that has not refused it is busy: wait for it
	}
	if !t.bounced && b.peerWorks(q.name, now) {
		t.bounced = true
		b.giveBack(t)
		return true
	}
	for h := range t.marks {
		t.marks[h] &^= markRefused // around again
	}
	t.bounced = false
	if e := q.free.Front(); e != nil {
		b.deliver(t, e.Value.(*jw), now)
		return true
	}
	return false
}

// firstFree returns the longest-free worker of q that has not refused t.
func (q *jq) firstFree(t *jtask) *jw {
	for e := q.free.Front(); e != nil; e = e.Next() {
		w := e.Value.(*jw)
		if t.marks[w]&markRefused == 0 {
			return w
		}
	}
	return nil
}

// refusedByAll reports whether every live worker of q here has refused t.
func (q *jq) refusedByAll(t *jtask) bool {
	for w := range q.workers {
		if t.marks[w]&markRefused == 0 {
			return false
		}
	}
	return true
}

// freeSlots is how many more tasks q's free workers here can hold.
func (q *jq) freeSlots() int {
	n := 0
	for e := q.free.Front(); e != nil; e = e.Next() {
		w := e.Value.(*jw)
		n += w.max - w.held
	}
	return n
}

// deliver offers t to the free worker w, or assigns it for a forced task.
func (b *Broker) deliver(t *jtask, w *jw, now time.Time) {
	q := t.q
	b.unpark(t)
	n := b.give(t, w)
	q.c.offered++
	if t.attempt > 1 {
		q.c.reoffered++
	}
	b.clock++
	w.stamp = b.clock // to the back of the line
	if !t.forced || t.complete {
		w.held++
		w.holds[t] = struct{}{}
	}
	full := w.held >= w.max
	for wq, e := range w.queues {
		switch {
		case e == nil:
		case full:
			wq.free.Remove(e)
			w.queues[wq] = nil
		default:
			wq.free.MoveToBack(e)
		}
	}
	switch {
	case !t.forced:
		t.state = offered
		q.offers++
		t.deadline = now.Add(b.opts.OfferTimeout)
		b.wake(t)
		b.tell(w, n)
	case t.complete:
		n.Assigned = true
		t.state = working
		q.working++
		q.c.assigned++
		t.deadline = now.Add(b.opts.TaskTimeout)
		b.wake(t)
		b.tell(w, n)
	default:
		// Told once JetStream has its ack: a forced task is assigned once.
		var r result
		b.startAck(t, ackForced, &r)
		b.wg.Add(1)
		b.later(func() {
			go func() {
				defer b.wg.Done()
				_ = b.settle(t, r.ackGen)
			}()
		})
	}
}

// release frees the slot t held on h.
func (b *Broker) release(h *jw, t *jtask) {
	if h == nil || h.detached || h.left {
		return
	}
	if _, ok := h.holds[t]; !ok {
		return
	}
	delete(h.holds, t)
	h.held--
	if h.held == h.max-1 { // it was full: free from now on
		b.clock++
		h.stamp = b.clock
		for q := range h.queues {
			h.queues[q] = q.free.PushBack(h)
			b.markDirty(q)
		}
	}
}

// drop ends t's hold here: finished (acked) or gone (given back, or its
// lease lost). It is remembered for Retain.
func (b *Broker) drop(t *jtask, st state) {
	q := t.q
	switch t.state {
	case parked:
		b.unpark(t)
	case offered:
		q.offers--
		b.release(t.holder, t)
	case working:
		q.working--
		b.release(t.holder, t)
	}
	q.held--
	t.state = st
	t.reply = ""
	t.data = nil
	t.gen++
	t.ended = time.Now()
	q.active = t.ended
	if st == gone {
		t.holder = nil
	}
	b.unschedule(t)
	t.memo++
	q.memory.PushBack(memo{t, t.memo})
	b.evict(q, t.ended)
	b.markDirty(q)
}

// giveBack hands t back to JetStream (a nak: delivered again at once,
// ahead of newer tasks) unless its lease is too near its end for that.
func (b *Broker) giveBack(t *jtask) {
	if t.reply != "" && time.Now().Before(t.leaseEnd.Add(-guard(t))) {
		b.naks = append(b.naks, t.reply)
	}
	b.drop(t, gone)
}

// awaitFor is how long parked tasks newer than a refused one wait for it
// to be delivered here again.
const awaitFor = 250 * time.Millisecond

// refused hands back a task that a worker here refused: JetStream delivers
// it again at once, ahead of newer tasks; parked tasks newer than it wait
// for it a moment, so that they do not overtake it here.
func (b *Broker) refused(t *jtask) {
	q := t.q
	if t.reply != "" && len(q.parked) > 0 {
		if q.awaiting == nil {
			q.awaiting = make(map[uint64]time.Time)
		}
		until := time.Now().Add(awaitFor)
		q.awaiting[t.seq] = until
		b.later(func() {
			time.AfterFunc(awaitFor, func() {
				b.mu.Lock()
				defer b.unlock()
				b.markDirty(q)
			})
		})
	}
	b.giveBack(t)
}

// awaited is the oldest refused task q waits for, or the largest sequence
// when none.
func (q *jq) awaited(now time.Time) uint64 {
	oldest := ^uint64(0)
	for seq, until := range q.awaiting {
		switch {
		case now.After(until):
			delete(q.awaiting, seq)
		case seq < oldest:
			oldest = seq
		}
	}
	return oldest
}

// lose ends t's hold when its lease ended without an answer: JetStream
// delivers it again by itself; its worker is told "expired".
func (b *Broker) lose(t *jtask) {
	q, h := t.q, t.holder
	switch t.state {
	case offered:
		q.c.timedOut++
		t.marks[h] |= markRefused
		b.tell(h, queue.Notice{Kind: queue.KindExpired, Queue: q.name, ID: t.id, Attempt: t.attempt})
	case working:
		q.c.taskTimedOut++
		t.marks[h] |= markRefused | markLost
		b.tell(h, queue.Notice{Kind: queue.KindExpired, Queue: q.name, ID: t.id, Attempt: t.attempt})
	}
	b.logf(slog.LevelWarn, "queue task's JetStream lease could not be renewed; it will be delivered again", "queue", q.name, "id", t.id)
	t.reply = ""
	b.drop(t, gone)
}

// expire ends an offer left unanswered for OfferTimeout, or a Complete
// task not done within TaskTimeout: the worker is told "expired", and the
// task goes back to JetStream.
func (b *Broker) expire(t *jtask) {
	q, h := t.q, t.holder
	if t.state == offered {
		q.c.timedOut++
		t.marks[h] |= markRefused
	} else {
		q.c.taskTimedOut++
		t.marks[h] |= markRefused | markLost
		b.logf(slog.LevelInfo, "queue task timed out before done", "queue", q.name, "id", t.id, "subject", h.subject, "attempt", t.attempt)
	}
	b.tell(h, queue.Notice{Kind: queue.KindExpired, Queue: q.name, ID: t.id, Attempt: t.attempt})
	b.refused(t)
}

// memo is a task's entry in its queue's memory; stale when the task's
// memo moved on.
type memo struct {
	t *jtask
	n uint64
}

// lookup finds a task, forgetting remembered ones older than Retain.
func (b *Broker) lookup(id string, now time.Time) *jtask {
	t := b.tasks[id]
	if t != nil && !t.held() && now.Sub(t.ended) > b.opts.Retain {
		b.evict(t.q, now)
		return b.tasks[id]
	}
	return t
}

// evict forgets q's remembered tasks older than Retain, and the oldest
// past MaxTasks.
func (b *Broker) evict(q *jq, now time.Time) {
	for q.memory.Len() > 0 {
		m := q.memory.Front()
		if m.t.memo == m.n && q.memory.Len() <= b.opts.MaxTasks && now.Sub(m.t.ended) <= b.opts.Retain {
			return
		}
		q.memory.PopFront()
		if m.t.memo == m.n && !m.t.held() {
			delete(b.tasks, m.t.id)
		}
	}
}

// pump makes every offer the dirty queues allow: parked tasks first,
// oldest first; and asks the puller for the rest of the free slots.
func (b *Broker) pump() {
	if len(b.dirty) == 0 {
		return
	}
	qs := b.dirty
	b.dirty = nil
	now := time.Now()
	for _, q := range qs {
		q.dirty = false
		hold := q.awaited(now)
		for i := 0; i < len(q.parked); {
			if q.free.Len() == 0 && len(q.workers) > 0 || q.parked[i].seq > hold {
				break
			}
			if b.place(q.parked[i], now) {
				continue // it left the list
			}
			i++
		}
		if q.free.Len() > 0 && q.freeSlots() > q.want && q.pulls < b.tm.maxPulls {
			b.pullq[q] = struct{}{}
			b.pullNow = true
		}
	}
}
