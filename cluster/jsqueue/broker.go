package jsqueue

import (
	"cmp"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"eventsrv/cluster"
	"eventsrv/internal/deque"
	"eventsrv/internal/logthrottle"
	"eventsrv/internal/timeheap"
	"eventsrv/queue"
)

// Options configure a Broker. Zero values take the queue package's
// defaults.
type Options struct {
	// Stream is NATS_STREAM. The work queues' stream is <Stream>_QUEUES,
	// its subjects <Stream>_QUEUES.<encoded queue name>; the instances
	// talk to each other on <Stream>_QCTL.presence and <Stream>_QCTL.ask.
	Stream string
	// Replicas is the queues' stream's replicas (NATS_REPLICAS).
	Replicas int
	// MaxTasks, OfferTimeout, TaskTimeout and Retain are as in
	// queue.Options. Every instance should have the same: MaxTasks and
	// OfferTimeout are stored in the stream and its consumers, and the
	// last instance to start sets them.
	MaxTasks int
	// MaxQueues bounds the queues that hold unfinished tasks, across the
	// instances (QUEUE_MAX_QUEUES): Add to a queue that holds none, past
	// it, returns queue.ErrTooManyQueues. The count is JetStream's, read
	// at most a second before, so concurrent Adds may pass it by a few.
	MaxQueues    int
	OfferTimeout time.Duration
	TaskTimeout  time.Duration
	Retain       time.Duration
	// PublishTimeout bounds Add's wait for JetStream (NATS_PUBLISH_TIMEOUT).
	PublishTimeout time.Duration
	Log            *slog.Logger
}

// timing is what the Broker derives from its Options; tests of this
// package shorten some of it.
type timing struct {
	ackWait    time.Duration // the consumers' AckWait: how long a dead instance's tasks stay out
	maxPulls   int           // pull requests out at once per queue and instance
	presence   time.Duration // how often an instance says which queues it works on
	peerTTL    time.Duration // an instance not heard of for this long is gone
	askTimeout time.Duration // the longest wait for other instances' answers
	parkMax    time.Duration // how long a task waits here for a worker before other instances may have it
	retry      time.Duration // between attempts at a request that failed
}

func newTiming(o Options) timing {
	return timing{
		ackWait:    min(max(o.OfferTimeout, 2*time.Second), time.Minute),
		maxPulls:   16,
		presence:   time.Second,
		peerTTL:    3500 * time.Millisecond,
		askTimeout: time.Second,
		parkMax:    o.OfferTimeout,
		retry:      100 * time.Millisecond,
	}
}

// Broker is the work queues of one eventsrv instance in cluster mode: a
// queue.Broker whose tasks live in a JetStream work-queue stream shared by
// every instance. Create it with New, hand it a NATS connection with
// Start, and Close it before the connection. The package documentation
// says how it works and what it promises.
type Broker struct {
	opts  Options
	tm    timing
	log   *slog.Logger
	quiet *logthrottle.Limiter
	id    string // this instance, in presence and ask messages

	stream string // <Stream>_QUEUES: its name and its subjects' prefix
	ctl    string // <Stream>_QCTL: the instances' control subjects

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Broker started

	nc       *nats.Conn
	js       jetstream.JetStream
	started  atomic.Bool
	ready    atomic.Pointer[string] // why the queues cannot be used yet; nil when they can
	consumMu sync.Mutex
	consum   map[string]*consumerRef // by queue name
	subs     []*nats.Subscription
	resetup  atomic.Bool // the stream is gone: set it up again
	asks     asks
	askMu    sync.Mutex
	waiting  map[string]chan *nats.Msg // replies awaited, by token

	mu      sync.Mutex
	closed  bool
	queues  map[string]*jq
	tasks   map[string]*jtask // held here, or remembered (finished, given back)
	workers map[*queue.Worker]*jw
	left    map[*queue.Worker]time.Time // workers that left, so that they cannot join again
	leftJW  map[*queue.Worker]*jw       // and what they were, for their late answers
	streamH jetstream.Stream
	subjN   int              // queues holding tasks, as JetStream last said
	subjAt  time.Time        // when
	pullq   map[*jq]struct{} // queues that may need a pull request
	peers   map[string]*peer // other instances, by id
	clock   uint64           // worker stamps
	// timers holds the tasks held here, by their earliest timer: the end
	// of an offer or of TaskTimeout, the renewal of their lease, the
	// lease's end, and how long a parked task has waited. A task is in
	// it at most once.
	timers    timeheap.Heap[*jtask]
	armed     time.Time
	dirty     []*jq
	touched   []*jw
	after     []func() // network sends and logs, after the unlock, in order
	naks      []string // ack subjects to nak after the unlock, before the puller looks again
	nakWith   []byte   // the nak sent: ackNak, or ackNakStored once closed
	pullNow   bool     // a queue may need a pull request: wake the puller after the unlock
	tellPeers bool     // the set of queues worked on here changed

	wakeTimer  chan struct{}
	wakePuller chan struct{}
	renewals   chan renewJob
}

// New returns a Broker that holds workers but has no tasks until Start.
func New(opts Options) *Broker {
	if opts.MaxTasks <= 0 {
		opts.MaxTasks = queue.DefaultMaxTasks
	}
	if opts.MaxQueues <= 0 {
		opts.MaxQueues = queue.DefaultMaxQueues
	}
	if opts.OfferTimeout <= 0 {
		opts.OfferTimeout = queue.DefaultOfferTimeout
	}
	if opts.TaskTimeout <= 0 {
		opts.TaskTimeout = queue.DefaultTaskTimeout
	}
	if opts.Retain <= 0 {
		opts.Retain = queue.DefaultRetain
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = 2 * time.Second
	}
	if opts.Stream == "" {
		opts.Stream = "EVENTSRV"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		opts:       opts,
		tm:         newTiming(opts),
		log:        opts.Log.With("component", "queues"),
		quiet:      logthrottle.New(5, time.Second),
		id:         nats.NewInbox()[len(nats.InboxPrefix):],
		stream:     opts.Stream + "_QUEUES",
		ctl:        opts.Stream + "_QCTL",
		ctx:        ctx,
		cancel:     cancel,
		consum:     make(map[string]*consumerRef),
		queues:     make(map[string]*jq),
		tasks:      make(map[string]*jtask),
		workers:    make(map[*queue.Worker]*jw),
		left:       make(map[*queue.Worker]time.Time),
		leftJW:     make(map[*queue.Worker]*jw),
		pullq:      make(map[*jq]struct{}),
		waiting:    make(map[string]chan *nats.Msg),
		peers:      make(map[string]*peer),
		timers:     timeheap.New(func(t *jtask) time.Time { return t.next }, func(t *jtask) *int { return &t.hidx }),
		wakeTimer:  make(chan struct{}, 1),
		wakePuller: make(chan struct{}, 1),
		renewals:   make(chan renewJob, 1024),
		nakWith:    ackNak,
	}
	b.setNotReady("the work queues are not connected to NATS yet")
	return b
}

var _ queue.Broker = (*Broker)(nil)

// Start connects the Broker to NATS: it makes sure the queues' stream
// exists (retrying in the background while NATS cannot be reached) and
// starts serving. nc stays the caller's: Close the Broker before it.
func (b *Broker) Start(nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	b.nc, b.js = nc, js
	if err := b.startAsks(); err != nil {
		return err
	}
	for _, s := range []struct {
		subject string
		handle  nats.MsgHandler
	}{
		{b.ctl + ".presence", b.onPresence},
		{b.ctl + ".ask", b.onAsk},
	} {
		sub, err := nc.Subscribe(s.subject, s.handle)
		if err != nil {
			b.unsubscribe()
			return err
		}
		b.subs = append(b.subs, sub)
	}
	b.started.Store(true)
	b.wg.Add(4)
	go b.runTimers()
	go b.runRenewals()
	go b.runPuller()
	go b.runPresence()
	return nil
}

func (b *Broker) unsubscribe() {
	for _, s := range b.subs {
		_ = s.Unsubscribe()
	}
	b.subs = nil
}

func (b *Broker) setNotReady(reason string) { b.ready.Store(&reason) }

// Ready returns nil once the queues' stream is ready, or what is wrong.
func (b *Broker) Ready() error {
	if r := b.ready.Load(); r != nil {
		return errors.New(*r)
	}
	return nil
}

// Close gives every task this instance holds back to JetStream (so that
// other instances offer them at once, rather than after their ack wait),
// stops the Broker's goroutines and says goodbye to the other instances.
// Workers are not notified: the servers close their connections. Close is
// idempotent; the NATS connection is left open.
func (b *Broker) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	var held []*jtask
	for _, t := range b.tasks {
		if t.held() {
			held = append(held, t)
		}
	}
	slices.SortFunc(held, func(a, b *jtask) int { return cmp.Compare(a.seq, b.seq) })
	for _, t := range held {
		if t.state != acking { // an ack under way settles itself
			b.giveBack(t)
		}
	}
	// A nak with a delay (of a nanosecond) is stored with the consumer's
	// state, so that the tasks come back at once even when the NATS
	// server stops too (NATS_EMBED); a plain nak lives in its memory.
	b.nakWith = ackNakStored
	b.unlock()
	if b.started.Load() {
		b.sayGoodbye()
	}
	b.cancel()
	b.wg.Wait()
	b.unsubscribe()
}

// ---------------------------------------------------------------------------
// State

// state is where a task is, as this instance knows it.
type state uint8

const (
	parked   state = iota // delivered here, waiting for a local worker
	offered               // offered to holder, until OfferTimeout
	working               // assigned to holder, done due within TaskTimeout
	acking                // an ack is on its way (assign, done, forced delivery, take)
	finished              // acked: remembered for Retain
	gone                  // given back to JetStream, or its lease lost: remembered for Retain
)

// mark records what a worker did with a task.
type mark uint8

const (
	markSeen    mark = 1 << iota // was given the task at least once
	markRefused                  // refused it since the task last went around here
	markLost                     // had it assigned and lost it to TaskTimeout
)

// jtask is a task this instance holds (a JetStream delivery it has not
// acked or given back) or remembers.
type jtask struct {
	id       string
	q        *jq
	seq      uint64 // stream sequence
	data     json.RawMessage
	forced   bool
	complete bool
	added    time.Time

	state    state
	reply    string        // the current delivery's ack subject; "" once not held
	attempt  int           // the current (or last) delivery's number, from 1
	leaseEnd time.Time     // JetStream may deliver it again from then on
	ackWait  time.Duration // the consumer's, at the delivery
	renewing bool          // an in-progress ack is on its way
	renewMin time.Time     // no renewal before (after a failed one)
	holder   *jw
	marks    map[*jw]mark
	bounced  bool      // handed back for other instances' workers since it last went around here
	deadline time.Time // offered: OfferTimeout; working: TaskTimeout
	parkedAt time.Time
	busy     chan struct{} // closed when the ack under way is settled
	ackFrom  state         // the state an ack under way started from
	ackKind  ackKind
	gen      uint64    // bumped when a delivery ends, so that late results are ignored
	hidx     int       // index in the timer heap, -1 when not in it
	next     time.Time // its earliest timer
	ended    time.Time // when it was finished or given back
	memo     uint64    // its place in q.memory (stale entries there are skipped)
}

func (t *jtask) held() bool { return t.state <= acking }

// jw is a worker: a queue.Worker of this instance, or a take's holder
// (detached: no connection, no slots).
type jw struct {
	w        *queue.Worker
	subject  string
	max      int
	held     int // open offers plus tasks awaiting done
	stamp    uint64
	queues   map[*jq]*list.Element // the element in the queue's free list, nil while full
	holds    map[*jtask]struct{}
	left     bool
	detached bool
	touched  bool
}

// jq is one queue as this instance sees it.
type jq struct {
	name      string
	subject   string
	workers   map[*jw]struct{}
	free      list.List // of *jw with a free slot, longest free first
	parked    []*jtask  // in stream order
	held      int       // tasks held here: parked, offered, working, acking
	offers    int
	working   int
	pulls     int       // pull requests out
	want      int       // messages those may still bring
	pullAfter time.Time // no pull request before (after one failed)
	depth     int       // as last read
	active    time.Time // the last task added, delivered or finished here
	// awaiting are tasks refused here and handed back to JetStream, which
	// delivers them again at once: until one is back (or awaitFor has
	// passed, another instance having it), parked tasks newer than it wait,
	// so that a refused task stays ahead of newer ones.
	awaiting map[uint64]time.Time // stream sequence: until when
	dirty    bool
	memory   deque.Deque[memo] // finished and given-back tasks, oldest first
	c        counters
}

type counters struct {
	added, full, offered, reoffered, assigned, taken       uint64
	rejected, timedOut, taskTimedOut, abandoned, doneCount uint64
}

// out is how many of q's tasks are out with workers here: offered, or
// assigned and awaiting done.
func (q *jq) out() int { return q.held - len(q.parked) }

// queue returns the named queue, creating it.
func (b *Broker) queue(name string) *jq {
	q := b.queues[name]
	if q == nil {
		q = &jq{name: name, subject: cluster.Subject(b.stream, name), workers: make(map[*jw]struct{})}
		b.queues[name] = q
	}
	return q
}

// durable is the name of a queue's consumer: queue names may hold
// anything, consumer names may not.
func durable(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "q_" + hex.EncodeToString(sum[:16])
}

// unlock makes the offers the change made possible, releases the lock,
// then delivers notices and runs what must happen outside it.
func (b *Broker) unlock() {
	if !b.closed {
		b.pump()
	}
	touched, after, naks, nakWith := b.touched, b.after, b.naks, b.nakWith
	for _, w := range touched {
		w.touched = false
	}
	b.touched, b.after, b.naks = nil, nil, nil
	pull, tell := b.pullNow, b.tellPeers
	b.pullNow, b.tellPeers = false, false
	b.mu.Unlock()
	for _, w := range touched {
		w.w.DeliverNotices()
	}
	if len(naks) > 0 {
		b.nak(naks, nakWith)
	}
	for _, f := range after {
		f()
	}
	if pull {
		select {
		case b.wakePuller <- struct{}{}:
		default:
		}
	}
	if tell && b.started.Load() {
		b.sayPresence()
	}
}

// later runs f after the unlock; the caller holds the lock.
func (b *Broker) later(f func()) { b.after = append(b.after, f) }

func (b *Broker) logf(level slog.Level, msg string, args ...any) {
	b.later(func() { b.log.Log(context.Background(), level, msg, args...) })
}

// tell queues n for w, to be delivered after the unlock.
func (b *Broker) tell(w *jw, n queue.Notice) {
	if w == nil || w.detached || w.left {
		return
	}
	w.w.QueueNotice(n)
	if !w.touched {
		w.touched = true
		b.touched = append(b.touched, w)
	}
}

func (b *Broker) markDirty(q *jq) {
	if !q.dirty {
		q.dirty = true
		b.dirty = append(b.dirty, q)
	}
}
