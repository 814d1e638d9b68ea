package queue

import (
	"cmp"
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"eventsrv/internal/deque"
	"eventsrv/internal/timeheap"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxTasks     = 10_000
	DefaultMaxQueues    = 1000
	DefaultOfferTimeout = 40 * time.Second // QueueTasks' 40 s to answer an offer
	DefaultTaskTimeout  = 5 * time.Minute
	DefaultRetain       = time.Minute
)

// Options configure a Manager. Zero values take the defaults above.
type Options struct {
	// MaxTasks bounds the unfinished tasks (waiting, offered, or assigned
	// and awaiting Done) of each queue (QUEUE_MAX_TASKS); Add past it
	// returns ErrQueueFull.
	MaxTasks int
	// MaxQueues bounds the queues that hold tasks (QUEUE_MAX_QUEUES):
	// unfinished ones, or finished ones still remembered (Retain). Add to
	// a queue that holds none, past it, returns ErrTooManyQueues. Queues
	// that only have workers do not count: a worker's queues last as long
	// as its connection.
	MaxQueues int
	// OfferTimeout is how long a worker has to answer an offer
	// (OFFER_TIMEOUT).
	OfferTimeout time.Duration
	// TaskTimeout is how long after assignment a task added with Complete
	// has to be done (TASK_TIMEOUT) before it goes back to the queue.
	TaskTimeout time.Duration
	// Retain is how long a finished task is remembered, so that a repeated
	// Assign or Done is answered nil rather than ErrUnknownTask; at most
	// MaxTasks finished tasks are remembered per queue.
	Retain time.Duration
	Log    *slog.Logger
}

// AddOptions are a task's options, from the query of POST /queue/{name}.
type AddOptions struct {
	Forced   bool // ?mode=assign: the task arrives assigned and cannot be refused
	Complete bool // ?complete=1: the task also needs Done within TaskTimeout
}

// Notice kinds.
const (
	KindTask    = "task"    // an offer, or a forced assignment (Assigned)
	KindExpired = "expired" // the worker's offer timed out, or its Complete task's TaskTimeout passed
)

// Notice is what a worker is told.
type Notice struct {
	Kind     string // KindTask or KindExpired
	Queue    string
	ID       string
	Assigned bool            // forced mode: already assigned, cannot be refused
	Attempt  int             // 1 on the first delivery of the task, counting every delivery
	Data     json.RawMessage // the task's data as added; nil for KindExpired
}

// Broker is what the transports need from work queues. Manager implements
// it in memory; a NATS JetStream implementation could fill it too (see the
// package documentation).
type Broker interface {
	Add(queue string, data json.RawMessage, o AddOptions) (id string, err error)
	Join(w *Worker, queues []string)
	Leave(w *Worker)
	Assign(w *Worker, id string) error
	Reject(w *Worker, id string) error
	Done(w *Worker, id string) error
	AssignAs(subject, queue, id string) error
	RejectAs(subject, queue, id string) error
	DoneAs(subject, queue, id string) error
	Take(subject, queue string) (Notice, bool)
	Stats() []QueueStats
	Close()
}

var _ Broker = (*Manager)(nil)

// Manager keeps work queues in memory; it is safe for concurrent use. Create
// one with NewManager and Close it when done: it owns one goroutine, which
// expires offers and assignments.
//
// All state is guarded by one mutex. An operation changes state, marks the
// queues where an offer may now be possible as dirty, and before unlocking
// makes every offer it can (pump); notices are queued on their workers and
// delivered after the unlock.
type Manager struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	closed  bool
	queues  map[string]*queue
	tasks   map[string]*task     // unfinished tasks and remembered finished ones
	seq     uint64               // task order across all queues
	clock   uint64               // worker stamps
	timers  timeheap.Heap[*task] // offered and working tasks, by deadline
	armed   time.Time            // the deadline the timer goroutine sleeps until; zero: none
	dirty   []*queue
	touched []*Worker // workers with notices to deliver after the unlock
	holding int       // queues with holding set, bounded by MaxQueues
	// fading are the queues whose tasks have all finished but are still
	// remembered: when those are forgotten (Retain), the queue no longer
	// counts against MaxQueues, and without workers it is forgotten too.
	fading map[*queue]struct{}
	logs   []logEntry

	wake    chan struct{} // the earliest deadline changed
	done    chan struct{} // Close
	stopped chan struct{} // the timer goroutine has returned
}

type logEntry struct {
	level slog.Level
	msg   string
	args  []any
}

// NewManager returns a running Manager.
func NewManager(opts Options) *Manager {
	if opts.MaxTasks <= 0 {
		opts.MaxTasks = DefaultMaxTasks
	}
	if opts.MaxQueues <= 0 {
		opts.MaxQueues = DefaultMaxQueues
	}
	if opts.OfferTimeout <= 0 {
		opts.OfferTimeout = DefaultOfferTimeout
	}
	if opts.TaskTimeout <= 0 {
		opts.TaskTimeout = DefaultTaskTimeout
	}
	if opts.Retain <= 0 {
		opts.Retain = DefaultRetain
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		opts:    opts,
		log:     log,
		queues:  make(map[string]*queue),
		tasks:   make(map[string]*task),
		fading:  make(map[*queue]struct{}),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
		timers:  timeheap.New(func(t *task) time.Time { return t.deadline }, func(t *task) *int { return &t.hidx }),
	}
	go m.run()
	return m
}

// state is where a task is in its life.
type state uint8

const (
	waiting  state = iota // in its queue's retry list or fresh ring
	offered               // offered to holder, until OfferTimeout
	working               // assigned to holder, Done due within TaskTimeout
	finished              // assigned (without Complete) or done; remembered for Retain
)

// mark records what a worker did with a task.
type mark uint8

const (
	markSeen    mark = 1 << iota // was given the task at least once
	markRefused                  // refused it since the task last went around
	markLost                     // had it assigned and lost it to TaskTimeout
)

type task struct {
	id       string
	q        *queue
	seq      uint64
	data     json.RawMessage
	forced   bool
	complete bool
	added    time.Time

	state    state
	holder   *Worker // offered to or assigned to; kept once finished
	attempt  int
	marks    map[*Worker]mark
	deadline time.Time // while offered or working
	hidx     int       // index in the timer heap, -1 when not in it
	finished time.Time
}

// queue is one named queue. Its waiting tasks are retry (tasks given out
// before and refused, in the order they were added) followed by fresh
// (tasks never given out, in order): every task in retry is older than every
// task in fresh, since fresh tasks are given out from the front.
type queue struct {
	name    string
	retry   []*task
	fresh   deque.Deque[*task]
	workers map[*Worker]struct{} // live workers that joined
	free    list.List            // of *Worker with a free slot, longest free at the front
	tasks   int                  // unfinished
	offers  int                  // offered now
	working int                  // assigned, awaiting Done
	tombs   deque.Deque[*task]   // finished tasks still remembered, oldest first
	lastFin time.Time            // when the newest of tombs finished
	holding bool                 // it has unfinished or remembered tasks: it counts against MaxQueues
	dirty   bool
	c       counters
}

type counters struct {
	added, full, offered, reoffered, assigned, taken       uint64
	rejected, timedOut, taskTimedOut, abandoned, doneCount uint64
}

// unlock makes the offers the operation made possible, releases the lock,
// then delivers notices and writes logs.
func (m *Manager) unlock() {
	if !m.closed {
		m.pump()
	}
	touched := m.touched
	for _, w := range touched {
		w.touched = false
	}
	m.touched = nil
	logs := m.logs
	m.logs = nil
	m.mu.Unlock()
	for _, w := range touched {
		w.drain()
	}
	for _, l := range logs {
		m.log.Log(context.Background(), l.level, l.msg, l.args...)
	}
}

func (m *Manager) logf(level slog.Level, msg string, args ...any) {
	m.logs = append(m.logs, logEntry{level, msg, args})
}

// tell queues n for w.
func (m *Manager) tell(w *Worker, n Notice) {
	if w.detached || w.left {
		return
	}
	w.push(n)
	if !w.touched {
		w.touched = true
		m.touched = append(m.touched, w)
	}
}

func (m *Manager) markDirty(q *queue) {
	if !q.dirty {
		q.dirty = true
		m.dirty = append(m.dirty, q)
	}
}

// queue returns the named queue, creating it.
func (m *Manager) queue(name string) *queue {
	q := m.queues[name]
	if q == nil {
		q = &queue{name: name, workers: make(map[*Worker]struct{})}
		m.queues[name] = q
	}
	return q
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Add adds a task to the named queue and returns its ID. The data is kept,
// not copied: the caller must not modify it; empty data is kept as null.
func (m *Manager) Add(name string, data json.RawMessage, o AddOptions) (string, error) {
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	id := newID()
	now := time.Now()
	m.mu.Lock()
	defer m.unlock()
	if m.closed {
		return "", ErrClosed
	}
	if q := m.queues[name]; (q == nil || !q.holding) && m.holding >= m.opts.MaxQueues {
		m.fade(now) // the remembered tasks that have expired free their queues
		if m.holding >= m.opts.MaxQueues {
			return "", fmt.Errorf("%w: %d queues hold tasks", ErrTooManyQueues, m.holding)
		}
	}
	q := m.queue(name)
	if q.tasks >= m.opts.MaxTasks {
		q.c.full++
		return "", fmt.Errorf("%w: %d tasks", ErrQueueFull, q.tasks)
	}
	for m.tasks[id] != nil { // 128 random bits: never, in practice
		id = newID()
	}
	m.seq++
	t := &task{id: id, q: q, seq: m.seq, data: data, forced: o.Forced, complete: o.Complete, added: now, hidx: -1}
	m.tasks[id] = t
	q.tasks++
	q.c.added++
	if !q.holding {
		q.holding = true
		m.holding++
	}
	delete(m.fading, q)
	q.fresh.PushBack(t)
	m.markDirty(q)
	return id, nil
}

// Join starts a worker's work on the named queues, or widens it; offers
// follow at once. It does nothing for a worker that has left, or once the
// manager is closed.
func (m *Manager) Join(w *Worker, names []string) {
	m.mu.Lock()
	defer m.unlock()
	if m.closed || w.left || (w.m != nil && w.m != m) {
		return
	}
	if w.m == nil {
		w.m = m
		w.queues = make(map[*queue]*list.Element)
		w.holds = make(map[*task]struct{})
		m.clock++
		w.stamp = m.clock
	}
	for _, name := range names {
		q := m.queue(name)
		if _, ok := w.queues[q]; ok {
			continue
		}
		q.workers[w] = struct{}{}
		w.queues[q] = nil
		if w.held < w.max {
			w.queues[q] = q.insertFree(w)
		}
		m.markDirty(q)
	}
}

// insertFree puts w into q's free list by its stamp: at the back, unless it
// has been free since before workers already there (a worker widening its
// queues).
func (q *queue) insertFree(w *Worker) *list.Element {
	for e := q.free.Back(); e != nil; e = e.Prev() {
		if e.Value.(*Worker).stamp < w.stamp {
			return q.free.InsertAfter(w, e)
		}
	}
	return q.free.PushFront(w)
}

// Leave ends a worker's work: its open offers count as refused and its
// assigned tasks awaiting Done go back to their queues. Undelivered notices
// are dropped. Leave is idempotent, and the worker cannot join again.
func (m *Manager) Leave(w *Worker) {
	m.mu.Lock()
	defer m.unlock()
	if w.left || (w.m != nil && w.m != m) {
		return
	}
	w.left = true
	w.close()
	for q, e := range w.queues {
		if e != nil {
			q.free.Remove(e)
		}
		delete(q.workers, w)
		if len(q.workers) == 0 && !q.holding && !m.closed {
			delete(m.queues, q.name) // no task, none remembered: nothing to keep
			continue
		}
		m.markDirty(q) // the live workers changed: a task may now have been refused by all
	}
	w.queues = nil
	returned := 0
	for t := range w.holds {
		q := t.q
		q.c.abandoned++
		if t.state == offered {
			q.offers--
		} else {
			q.working--
		}
		t.marks[w] |= markRefused
		m.requeue(t)
		returned++
	}
	w.holds, w.held = nil, 0
	if returned > 0 {
		m.logf(slog.LevelDebug, "queue worker left holding tasks", "subject", w.subject, "returned", returned)
	}
}

// actor is who answers: a worker (Assign, Reject, Done) or a subject (the
// *As methods).
type actor struct {
	w       *Worker
	subject string
}

// is reports whether h acts for a: h is the worker itself or, for a
// subject, any worker of that subject. A take's holder is the subject's,
// so a worker of the same subject may answer for it too.
func (a actor) is(h *Worker) bool {
	switch {
	case h == nil:
		return false
	case a.w != nil:
		return h == a.w || (h.detached && h.subject == a.w.subject)
	default:
		return h.subject == a.subject
	}
}

// marked reports whether a worker acting for a has any of marks on t.
func (a actor) marked(t *task, marks mark) bool {
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

// Assign accepts an offer made to w. For a task added with Complete, Done
// is due within TaskTimeout; otherwise the task is finished.
func (m *Manager) Assign(w *Worker, id string) error {
	return m.answer(actor{w: w}, "", id, opAssign)
}

// Reject refuses an offer made to w: the task goes back to the head of its
// queue, for a worker that has not refused it yet.
func (m *Manager) Reject(w *Worker, id string) error {
	return m.answer(actor{w: w}, "", id, opReject)
}

// Done marks a task assigned to w as done.
func (m *Manager) Done(w *Worker, id string) error {
	return m.answer(actor{w: w}, "", id, opDone)
}

// AssignAs is Assign for an HTTP caller (an SSE worker's POST): it acts as
// whichever of subject's workers holds the task, which must be in the named
// queue.
func (m *Manager) AssignAs(subject, queue, id string) error {
	return m.answer(actor{subject: subject}, queue, id, opAssign)
}

// RejectAs is Reject for an HTTP caller; see AssignAs.
func (m *Manager) RejectAs(subject, queue, id string) error {
	return m.answer(actor{subject: subject}, queue, id, opReject)
}

// DoneAs is Done for an HTTP caller, including one that took the task with
// Take; see AssignAs.
func (m *Manager) DoneAs(subject, queue, id string) error {
	return m.answer(actor{subject: subject}, queue, id, opDone)
}

func (m *Manager) answer(a actor, queue, id string, o op) error {
	now := time.Now()
	m.mu.Lock()
	defer m.unlock()
	if m.closed {
		return ErrClosed
	}
	t := m.lookup(id, now)
	if t == nil || (a.w == nil && t.q.name != queue) {
		return ErrUnknownTask
	}
	switch o {
	case opAssign:
		return m.assign(a, t, now)
	case opReject:
		return m.reject(a, t)
	default:
		return m.finishWork(a, t, now)
	}
}

// lookup finds a task, forgetting finished tasks older than Retain.
func (m *Manager) lookup(id string, now time.Time) *task {
	t := m.tasks[id]
	if t != nil && t.state == finished && now.Sub(t.finished) > m.opts.Retain {
		m.evict(t.q, now)
		return nil
	}
	return t
}

func (m *Manager) assign(a actor, t *task, now time.Time) error {
	if a.is(t.holder) {
		switch t.state {
		case offered:
			h, q := t.holder, t.q
			q.offers--
			q.c.assigned++
			if t.complete {
				t.state = working
				q.working++
				m.schedule(t, now.Add(m.opts.TaskTimeout))
				return nil
			}
			m.release(h, t)
			m.finish(t, now)
			return nil
		case working, finished:
			return nil // already assigned to the caller: a repeat
		}
	}
	if a.marked(t, markSeen) {
		return ErrOfferExpired
	}
	return ErrNotOfferedToYou
}

func (m *Manager) reject(a actor, t *task) error {
	if a.is(t.holder) && t.state == offered {
		h, q := t.holder, t.q
		q.offers--
		q.c.rejected++
		t.marks[h] |= markRefused
		m.release(h, t)
		m.requeue(t)
		return nil
	}
	switch {
	case t.forced && (a.is(t.holder) || a.marked(t, markSeen)):
		return ErrForced
	case a.is(t.holder):
		return fmt.Errorf("%w: the task is assigned to you", ErrOfferExpired)
	case a.marked(t, markSeen):
		return ErrOfferExpired
	}
	return ErrNotOfferedToYou
}

func (m *Manager) finishWork(a actor, t *task, now time.Time) error {
	if a.is(t.holder) {
		switch t.state {
		case working:
			h, q := t.holder, t.q
			q.working--
			q.c.doneCount++
			m.release(h, t)
			m.finish(t, now)
			return nil
		case finished:
			return nil // done already, or assigned without Complete: nothing to do
		case offered:
			return fmt.Errorf("%w: assign it first", ErrNotAssigned)
		}
	}
	if a.marked(t, markLost) {
		return fmt.Errorf("%w: its task timeout passed and it went back to the queue", ErrNotAssigned)
	}
	return ErrNotAssigned
}

// Take assigns a task that is waiting right now (not one on offer) to an
// HTTP caller of subject, head of the queue first, refusals ignored; false
// when there is none. A task added with Complete then needs DoneAs within
// TaskTimeout.
func (m *Manager) Take(subject, name string) (Notice, bool) {
	now := time.Now()
	m.mu.Lock()
	defer m.unlock()
	q := m.queues[name]
	if m.closed || q == nil {
		return Notice{}, false
	}
	var t *task
	switch {
	case len(q.retry) > 0:
		t = q.retry[0]
		q.retry = slices.Delete(q.retry, 0, 1)
	case q.fresh.Len() > 0:
		t = q.fresh.PopFront()
	default:
		return Notice{}, false
	}
	h := &Worker{subject: subject, detached: true}
	n := m.give(t, h)
	n.Assigned = true
	q.c.taken++
	q.c.assigned++
	if t.complete {
		t.state = working
		q.working++
		m.schedule(t, now.Add(m.opts.TaskTimeout))
	} else {
		m.finish(t, now)
	}
	return n, true
}

// give makes h t's holder and returns the task notice.
func (m *Manager) give(t *task, h *Worker) Notice {
	t.holder = h
	t.attempt++
	if t.marks == nil {
		t.marks = make(map[*Worker]mark, 1)
	}
	t.marks[h] |= markSeen
	return Notice{Kind: KindTask, Queue: t.q.name, ID: t.id, Attempt: t.attempt, Data: t.data}
}

// deliver offers t to the free worker w, or assigns it for a forced task.
func (m *Manager) deliver(t *task, w *Worker, now time.Time) {
	q := t.q
	n := m.give(t, w)
	q.c.offered++
	if t.attempt > 1 {
		q.c.reoffered++
	}
	m.clock++
	w.stamp = m.clock // to the back of the line
	if !t.forced || t.complete {
		w.held++
		w.holds[t] = struct{}{}
	}
	full := w.held >= w.max
	for wq, e := range w.queues {
		switch {
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
		m.schedule(t, now.Add(m.opts.OfferTimeout))
	case t.complete:
		n.Assigned = true
		t.state = working
		q.working++
		q.c.assigned++
		m.schedule(t, now.Add(m.opts.TaskTimeout))
	default:
		n.Assigned = true
		q.c.assigned++
		m.finish(t, now)
	}
	m.tell(w, n)
}

// release frees the slot t held on h.
func (m *Manager) release(h *Worker, t *task) {
	if h.detached || h.left {
		return
	}
	delete(h.holds, t)
	h.held--
	if h.held == h.max-1 { // it was full: free from now on
		m.clock++
		h.stamp = m.clock
		for q := range h.queues {
			h.queues[q] = q.free.PushBack(h)
			m.markDirty(q)
		}
	}
}

// requeue puts a refused task back among its queue's waiting tasks, ahead
// of every newer task.
func (m *Manager) requeue(t *task) {
	m.unschedule(t)
	t.state = waiting
	t.holder = nil
	q := t.q
	i, _ := slices.BinarySearchFunc(q.retry, t.seq, func(x *task, seq uint64) int { return cmp.Compare(x.seq, seq) })
	q.retry = slices.Insert(q.retry, i, t)
	m.markDirty(q)
}

// finish ends a task's life in its queue; it is remembered for Retain.
func (m *Manager) finish(t *task, now time.Time) {
	m.unschedule(t)
	t.state = finished
	t.data = nil
	t.finished = now
	q := t.q
	q.tasks--
	q.tombs.PushBack(t)
	q.lastFin = now
	m.evict(q, now)
	if q.tasks == 0 {
		m.fading[q] = struct{}{}
		m.wakeBy(now.Add(m.opts.Retain))
	}
}

// fade forgets the remembered tasks of the fading queues that have
// expired: a queue left with none no longer counts against MaxQueues, and
// one without workers is forgotten, its counters with it. It returns when
// the next fading queue's tasks expire; zero when none fade.
func (m *Manager) fade(now time.Time) (next time.Time) {
	for q := range m.fading {
		m.evict(q, now)
		if q.tombs.Len() > 0 {
			if at := q.lastFin.Add(m.opts.Retain); next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		delete(m.fading, q)
		q.holding = false
		m.holding--
		if len(q.workers) == 0 {
			delete(m.queues, q.name)
		}
	}
	return next
}

// evict forgets q's finished tasks older than Retain, and the oldest past
// MaxTasks.
func (m *Manager) evict(q *queue, now time.Time) {
	for q.tombs.Len() > 0 {
		t := q.tombs.Front()
		if q.tombs.Len() <= m.opts.MaxTasks && now.Sub(t.finished) <= m.opts.Retain {
			return
		}
		q.tombs.PopFront()
		delete(m.tasks, t.id)
	}
}

// pump makes every offer possible in the dirty queues. Queues take turns,
// one offer each, the queue with the oldest waiting task first, so that a
// worker of several queues is not flooded from one. A queue that cannot
// offer drops out: later offers only fill workers, never free them.
func (m *Manager) pump() {
	if len(m.dirty) == 0 {
		return
	}
	qs := m.dirty
	m.dirty = nil
	for _, q := range qs {
		q.dirty = false
	}
	slices.SortFunc(qs, func(a, b *queue) int { return cmp.Compare(a.headSeq(), b.headSeq()) })
	now := time.Now()
	for len(qs) > 0 {
		n := 0
		for _, q := range qs {
			if m.offerOne(q, now) {
				qs[n] = q
				n++
			}
		}
		qs = qs[:n]
	}
}

// headSeq is the order of q's oldest waiting task; queues with none sort
// last.
func (q *queue) headSeq() uint64 {
	switch {
	case len(q.retry) > 0:
		return q.retry[0].seq
	case q.fresh.Len() > 0:
		return q.fresh.Front().seq
	}
	return ^uint64(0)
}

// offerOne makes q's next offer, if a free worker can take a waiting task:
// the oldest refused task that a free worker has not refused yet, else the
// oldest fresh task, to the longest-free worker that may take it.
func (m *Manager) offerOne(q *queue, now time.Time) bool {
	if q.free.Len() == 0 {
		return false
	}
	for i, t := range q.retry {
		w := q.firstFree(t)
		if w == nil && q.refusedByAll(t) {
			for h := range t.marks {
				t.marks[h] &^= markRefused // around again
			}
			w = q.free.Front().Value.(*Worker)
		}
		if w != nil {
			q.retry = slices.Delete(q.retry, i, i+1)
			m.deliver(t, w, now)
			return true
		}
	}
	if q.fresh.Len() == 0 {
		return false
	}
	m.deliver(q.fresh.PopFront(), q.free.Front().Value.(*Worker), now)
	return true
}

// firstFree returns the longest-free worker of q that has not refused t.
func (q *queue) firstFree(t *task) *Worker {
	for e := q.free.Front(); e != nil; e = e.Next() {
		w := e.Value.(*Worker)
		if t.marks[w]&markRefused == 0 {
			return w
		}
	}
	return nil
}

// refusedByAll reports whether every live worker of q has refused t.
func (q *queue) refusedByAll(t *task) bool {
	for w := range q.workers {
		if t.marks[w]&markRefused == 0 {
			return false
		}
	}
	return true
}

// Close stops the timer goroutine. Every task is lost (Stats still shows
// them); see the package documentation for what the methods do afterwards.
// Close is idempotent.
func (m *Manager) Close() {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		m.timers.Clear()
		close(m.done)
	}
	m.unlock()
	<-m.stopped
}
