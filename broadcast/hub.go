// Package broadcast owns the subscribing side: the hub that knows who is
// subscribed to what and fans each event out, and the WebSocket connections
// with their bounded queues, writers and readers.
package broadcast

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"eventsrv/auth"
	"eventsrv/history"
	"eventsrv/internal/logthrottle"
)

// ErrClosed is returned by Publish once the hub has begun to shut down.
var ErrClosed = errors.New("broadcast hub is closed")

// ErrFed is returned by Publish on a hub whose events come from Deliver.
var ErrFed = errors.New("broadcast hub is fed by a stream: publish to the stream")

// Options are the hub's limits and timings.
type Options struct {
	// QueueMaxBytes bounds the bytes queued for one subscriber; a subscriber
	// that falls this far behind is cut off as a slow consumer.
	QueueMaxBytes int
	// WriteTimeout bounds one write to a subscriber's socket.
	WriteTimeout time.Duration
	// PingInterval is how often subscribers are pinged. A subscriber that
	// sends nothing, not even a pong, for 1.5 intervals is dropped.
	PingInterval time.Duration
	// InitTimeout is how long a new connection may take to send a
	// successful init.
	InitTimeout time.Duration
	// MaxMessageBytes bounds a message from a subscriber.
	MaxMessageBytes int64
	// MaxSubscriptions bounds the event names one connection subscribes to.
	MaxSubscriptions int
	Log              *slog.Logger
	// Metrics, when set, counts closes and write waits. (Connections and
	// deliveries are counted by the hub itself: see Stats and Totals.)
	Metrics Metrics
	// CheckOrigin, when set, refuses WebSocket upgrades and SSE streams
	// whose request (its Origin header) it does not allow.
	CheckOrigin func(r *http.Request) bool
	// History, when set, keeps recent events for subscribers that resume.
	// Without it a resume is recovered only when nothing was published
	// since the subscriber's last ID.
	History History
	// Epoch is the first part of every event ID (see history.ID); zero
	// means the hub's start in Unix milliseconds.
	Epoch uint64
	// ResumeMaxEvents and ResumeMaxBytes bound one resume's replay (0: no
	// bound); a subscriber that missed more gets the newest that fit,
	// with recovered false.
	ResumeMaxEvents int
	ResumeMaxBytes  int
	// MaxEventNameBytes bounds an event name to subscribe to; 0: no bound.
	MaxEventNameBytes int
	// Elsewhere ends the answer to a plain HTTP request that is not for
	// this server: where to publish instead (", and publish with POST
	// /event on the listen server, port 8080").
	Elsewhere string
	// Queues, when set, lets connections take tasks from work queues
	// (work.go).
	Queues Queues
	// Fed makes the hub a follower of a shared, ordered stream (a cluster's
	// JetStream stream): its events and their IDs come from Deliver, the
	// epoch with them, and Publish is refused, so that no event reaches
	// local subscribers by a path of its own.
	Fed bool
	// ResumeWait, for a fed hub, bounds how long a resume waits for the
	// feed: for the hub to learn its epoch, and for an ID ahead of what the
	// hub has been fed (another instance may have delivered it a moment
	// ago) to arrive. Past it the ID counts as unknown.
	ResumeWait time.Duration
	// IOURing lets each flusher send a batch of subscribers' frames with
	// one io_uring submission where the kernel allows it (batchsend_linux.go);
	// otherwise, and without it, each is one send(2).
	IOURing bool
}

// History keeps recent events so that a subscriber can resume after a
// reconnect. The hub calls it under its publish lock, in ID order.
// history.Memory implements it.
type History interface {
	Append(e history.Event)
	// Since returns the kept events of names after sequence number after,
	// oldest first (the newest max when there are more, max > 0), and
	// whether they are all of them. It must not wait for Append for long:
	// the hub calls it outside its publish lock too.
	Since(names []string, after uint64, max int) (events []history.Event, complete bool)
	// Forget records that the events up to Seq through that were not
	// appended never will be (a fed hub's stream had dropped them).
	Forget(through uint64)
	// Reset empties the history for a new epoch.
	Reset()
}

// Metrics is what the hub reports, for metrics.
type Metrics interface {
	Closed(reason string)
	WriteWaited(d time.Duration)
}

type noMetrics struct{}

func (noMetrics) Closed(string)             {}
func (noMetrics) WriteWaited(time.Duration) {}

// Authenticator checks a subscriber's credentials.
type Authenticator interface {
	Authenticate(credentials, remote, via string) (auth.Permissions, error)
}

// Hub holds the subscriptions and fans events out. Its zero value is not
// usable; create it with NewHub and stop it with Close.
type Hub struct {
	opts    Options
	auth    Authenticator
	metrics Metrics

	// pubMu orders publishes: it is held for a whole fan-out, so every
	// subscriber sees one and the same order of events, across event names
	// too. It guards topics. (A lock per group of names would let
	// publishes of different names run in parallel, but then two
	// subscribers of both names could see them interleaved differently;
	// the fan-out under it is a few nanoseconds per subscriber, so one
	// lock is not what limits throughput; see the README's figures.)
	pubMu  sync.Mutex
	topics map[string]*topic // exact names
	// patterns are the subscriptions to names ending in "*", by the prefix
	// before it ("" for "*"); prefixLens holds the distinct lengths of those
	// prefixes, ascending, so that a publish looks its name's prefixes up
	// once per length: its cost grows with the distinct lengths, not with
	// the number of patterns.
	patterns   map[string]*topic
	prefixLens []int
	matched    []*topic // Publish's scratch list of the topics an event matches
	// stamp counts fan-outs; a subscriber of several topics that one event
	// matches is stamped with it, so that it gets the event once.
	stamp uint64
	// epoch is the first part of every ID; written under pubMu, read
	// without it by resumes. A fed hub's is 0 until the feed gives one.
	epoch atomic.Uint64
	seq   uint64 // the last event's sequence number
	// kept is seq once the event is in the history (at once without
	// one): a resume reads the history up to it without the publish lock
	// (see subscribe).
	kept  atomic.Uint64
	ready []*client // Publish's scratch list of subscribers to schedule

	// Resumes of a fed hub that wait for the feed (see awaitFeed) are
	// woken by closing fed; waiting counts them, so that a delivery
	// with none waiting costs one atomic load.
	waitMu  sync.Mutex
	fed     chan struct{}
	waiting atomic.Int32

	flush flushers
	// quiet throttles the log lines that anyone may cause without a
	// credential: connections opened, closed before an init, refused for
	// their origin.
	quiet *logthrottle.Limiter

	mu      sync.Mutex // guards clients and closed
	clients map[*client]struct{}
	closed  bool
	closing atomic.Bool // read by Publish without taking mu

	nextID      atomic.Uint64 // client IDs
	connections atomic.Uint64
	published   atomic.Uint64
	deliveries  atomic.Uint64

	readers sync.WaitGroup // one per connection, done at its teardown
	stop    chan struct{}  // ends the ping loop
	pinger  sync.WaitGroup
	// The sweep enforces timeouts (sweep.go); it runs until the last
	// connection is gone.
	stopSweep chan struct{}
	sweeper   sync.WaitGroup
	poll      *poller // nil: a reader goroutine per connection
}

// topic is the set of subscribers of one event name.
type topic struct {
	members map[*client]struct{}
	// list is members as a slice, for fan-out without map iteration; it is
	// rebuilt on the first publish after a change (nil means stale).
	list []*client
}

// NewHub returns a running hub; it pings subscribers until Close.
func NewHub(a Authenticator, opts Options) *Hub {
	h := &Hub{
		opts:      opts,
		auth:      a,
		metrics:   opts.Metrics,
		topics:    make(map[string]*topic),
		patterns:  make(map[string]*topic),
		clients:   make(map[*client]struct{}),
		stop:      make(chan struct{}),
		stopSweep: make(chan struct{}),
		quiet:     logthrottle.New(10, time.Second),
	}
	if h.metrics == nil {
		h.metrics = noMetrics{}
	}
	switch {
	case opts.Fed:
		// Unknown until the feed's first Deliver.
	case opts.Epoch != 0:
		h.epoch.Store(opts.Epoch)
	default:
		h.epoch.Store(uint64(time.Now().UnixMilli()))
	}
	if p, err := newPoller(opts.Log); err == nil {
		h.poll = p
	} else {
		opts.Log.Info("no socket poller; one reader goroutine per subscriber", "err", err)
	}
	h.flush.ioURing = opts.IOURing
	h.flush.onRefused = func(err error) {
		opts.Log.Info("io_uring refused: one send(2) per subscriber write", "err", err)
	}
	// One CPU fewer than the machine has: the rest accept publishes and
	// run the readers. Fewer flushers also batch more (publishes queue up
	// while a flusher works through the list), which on two cores tripled
	// deliveries per second; see writer.go.
	h.flush.start(max(1, runtime.GOMAXPROCS(0)-1), opts.Fed)
	h.pinger.Add(1)
	go h.pingLoop()
	h.sweeper.Add(1)
	go h.sweepLoop()
	return h
}

// Publish gives event an ID, keeps it in the history and queues it to every
// current subscriber of event, and returns the ID. It never waits for a
// subscriber: a full queue cuts that subscriber off. data must be valid
// JSON; it is relayed as is.
func (h *Hub) Publish(event string, data json.RawMessage) (string, error) {
	if h.closing.Load() {
		return "", ErrClosed
	}
	if h.opts.Fed {
		return "", ErrFed
	}
	h.published.Add(1)
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	h.seq++
	id := history.ID{Epoch: h.epoch.Load(), Seq: h.seq}
	h.publish(id, event, data)
	return id.String(), nil
}

// Deliver fans out an event of a fed hub's stream, with the ID the stream
// gave it; the feed calls it in stream order, from one goroutine. An ID of
// another epoch starts the hub afresh in that epoch (the stream was
// created anew: the history is emptied, subscriptions stay). An ID at or
// below the last one delivered is ignored (a feed that restarted from an
// earlier position); a gap before it tells the history that the events in
// it are lost to resumes (the stream's limits dropped them first).
func (h *Hub) Deliver(id history.ID, event string, data json.RawMessage) {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	if h.closing.Load() {
		// Checked under the lock, which Close takes once after setting
		// closing: no delivery reaches the flushers after Close stops
		// them. The subscribers get the event where they resume.
		return
	}
	if id.Epoch != h.epoch.Load() {
		h.resetLocked(id.Epoch)
	}
	if id.Seq <= h.seq {
		return
	}
	if id.Seq > h.seq+1 {
		h.lost(id.Seq - 1)
	}
	h.seq = id.Seq
	h.published.Add(1)
	h.publish(id, event, data)
	if h.waiting.Load() > 0 {
		h.wakeWaiters()
	}
}

// lost handles a gap in a fed hub's sequence up to through: events the
// stream dropped (its limits) before this hub was fed them. Resumes from
// before it are not recovered; and subscribers connected now may have
// missed some, so they are closed with 4005 "events lost", to resume and
// learn that they were not recovered. (The first events after the hub
// learned its epoch are no loss: nobody was fed anything before them.)
// Under pubMu.
func (h *Hub) lost(through uint64) {
	if h.opts.History != nil {
		h.opts.History.Forget(through)
	}
	if h.seq == 0 {
		return
	}
	closed := 0
	for _, c := range h.snapshot() {
		// subList, not subs, which the connection's reader owns.
		if list := c.subList.Load(); list != nil && len(*list) > 0 && !c.isClosing() {
			c.close(closeEventsLost, reasonEventsLost)
			closed++
		}
	}
	// Throttled: a feed that cannot keep up falls behind again and again.
	h.quiet.Log(h.opts.Log, slog.LevelWarn, "the stream dropped events before this instance was fed them; subscribers closed to resume",
		"through_seq", through, "subscribers", closed)
}

// Skip passes over an event of a fed hub's stream that is not one of
// eventsrv's (published to the stream by something else): the sequence
// moves on, with nothing lost.
func (h *Hub) Skip(id history.ID) {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	if h.closing.Load() || id.Epoch != h.epoch.Load() || id.Seq <= h.seq {
		return
	}
	if id.Seq > h.seq+1 {
		h.lost(id.Seq - 1)
	}
	h.seq = id.Seq
	h.kept.Store(id.Seq)
	if h.waiting.Load() > 0 {
		h.wakeWaiters()
	}
}

// Fed reports the ID of the last event a fed hub was given (its epoch is 0
// before the first), for a feed that must restart after it.
func (h *Hub) Fed() history.ID {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	return history.ID{Epoch: h.epoch.Load(), Seq: h.seq}
}

// SetEpoch starts a fed hub in epoch with nothing delivered yet, unless it
// is in that epoch already: a feed calls it as soon as it knows its
// stream, so that resumes need not wait for the first event.
func (h *Hub) SetEpoch(epoch uint64) {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	if epoch != h.epoch.Load() {
		h.resetLocked(epoch)
	}
}

// resetLocked starts epoch with nothing delivered; under pubMu.
func (h *Hub) resetLocked(epoch uint64) {
	h.epoch.Store(epoch)
	h.seq = 0
	h.kept.Store(0)
	if h.opts.History != nil {
		h.opts.History.Reset()
	}
	h.wakeWaiters()
}

// wakeWaiters wakes the resumes waiting in awaitFeed.
func (h *Hub) wakeWaiters() {
	h.waitMu.Lock()
	defer h.waitMu.Unlock()
	if h.fed != nil {
		close(h.fed)
		h.fed = nil
	}
}

// awaitFeed waits, up to ResumeWait, until a fed hub knows its epoch and,
// when since is an ID of that epoch, has been fed up to it.
func (h *Hub) awaitFeed(since string) {
	id, err := history.ParseID(since)
	caughtUp := func() bool {
		epoch := h.epoch.Load()
		return epoch != 0 && (err != nil || id.Epoch != epoch || h.kept.Load() >= id.Seq)
	}
	if caughtUp() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.ResumeWait)
	defer cancel()
	h.waitFed(ctx.Done(), caughtUp)
}

// AwaitFed waits until a fed hub has been fed through id, or is in
// another epoch than id's, or ctx ends; it reports whether it did not
// end with ctx. The cluster bus waits with it to hold a publish's answer
// while this instance's feed lags far behind, and to drain the feed
// before a shutdown.
func (h *Hub) AwaitFed(ctx context.Context, id history.ID) bool {
	caughtUp := func() bool { return h.epoch.Load() != id.Epoch || h.kept.Load() >= id.Seq }
	return caughtUp() || h.waitFed(ctx.Done(), caughtUp)
}

// waitFed waits until caughtUp, which is checked after every delivery to
// the fed hub, or until done; it reports whether caughtUp held.
func (h *Hub) waitFed(done <-chan struct{}, caughtUp func() bool) bool {
	h.waiting.Add(1)
	defer h.waiting.Add(-1)
	for {
		h.waitMu.Lock()
		if h.fed == nil {
			h.fed = make(chan struct{})
		}
		woken := h.fed
		h.waitMu.Unlock()
		if caughtUp() {
			return true
		}
		select {
		case <-woken:
		case <-done:
			return caughtUp()
		}
	}
}

// publish stores and fans out the event with id; under pubMu.
func (h *Hub) publish(id history.ID, event string, data json.RawMessage) {
	matched := h.match(event)
	if h.opts.History == nil {
		h.kept.Store(id.Seq)
		if len(matched) == 0 {
			return
		}
	}
	f := eventFrame(id, event, data)
	if h.opts.History != nil {
		h.opts.History.Append(history.Event{Seq: id.Seq, Name: event, Data: eventData(f, len(data)), Frame: f})
		h.kept.Store(id.Seq)
	}
	if len(matched) == 0 {
		return
	}
	e := outgoing{id: id, event: event, data: data, frame: f}
	h.stamp++
	delivered := 0
	for _, t := range matched {
		// One topic, the usual case, needs no stamps: its members are
		// distinct.
		delivered += h.fanout(t, &e, len(matched) > 1)
	}
	clear(matched)
	h.matched = matched[:0]
	if len(h.ready) > 0 {
		h.flush.add(h.ready...)
		clear(h.ready)
		h.ready = h.ready[:0]
	}
	h.deliveries.Add(uint64(delivered))
}

// match returns the topics event goes to: its name's, and those of the
// patterns it matches, in h.matched (reused by each publish). Under pubMu.
func (h *Hub) match(event string) []*topic {
	matched := h.matched[:0]
	if t := h.topics[event]; t != nil {
		matched = append(matched, t)
	}
	for _, n := range h.prefixLens {
		if n > len(event) {
			break
		}
		if t := h.patterns[event[:n]]; t != nil {
			matched = append(matched, t)
		}
	}
	return matched
}

// outgoing is an event being fanned out, with its frames.
type outgoing struct {
	id    history.ID
	event string
	data  json.RawMessage
	frame []byte // the WebSocket frame
	sse   []byte // the SSE frame, built at the first SSE subscriber
}

// fanout queues e to t's members and returns how many it reached; with
// stamped, a member already stamped for this event is skipped, and the
// others are stamped. Under pubMu.
func (h *Hub) fanout(t *topic, e *outgoing, stamped bool) int {
	if t.list == nil {
		t.list = make([]*client, 0, len(t.members))
		for c := range t.members {
			t.list = append(t.list, c)
		}
	}
	n := 0
	for _, c := range t.list {
		if stamped {
			if c.stamp == h.stamp {
				continue
			}
			c.stamp = h.stamp
		}
		n++
		frame := e.frame
		if c.sse {
			if e.sse == nil {
				e.sse = sseEventFrame(e.id, e.event, e.data)
			}
			frame = e.sse
		}
		if c.add(frame) {
			if c.raw == nil {
				h.schedule(c)
			} else {
				h.ready = append(h.ready, c)
			}
		}
	}
	return n
}

// topicOf returns the topic of a subscription name (an exact name, or a
// pattern ending in "*"), creating it when create is set; nil when there is
// none. Under pubMu.
func (h *Hub) topicOf(name string, create bool) *topic {
	prefix, wild := strings.CutSuffix(name, "*")
	if !wild {
		t := h.topics[name]
		if t == nil && create {
			t = &topic{members: make(map[*client]struct{})}
			h.topics[name] = t
		}
		return t
	}
	t := h.patterns[prefix]
	if t == nil && create {
		t = &topic{members: make(map[*client]struct{})}
		h.patterns[prefix] = t
		h.prefixLensChanged()
	}
	return t
}

// dropTopic removes name's topic, which has no members left. Under pubMu.
func (h *Hub) dropTopic(name string) {
	if prefix, wild := strings.CutSuffix(name, "*"); wild {
		delete(h.patterns, prefix)
		h.prefixLensChanged()
		return
	}
	delete(h.topics, name)
}

// prefixLensChanged recomputes prefixLens after a pattern came or went:
// rare next to publishes, so a rebuild is cheaper than bookkeeping.
func (h *Hub) prefixLensChanged() {
	lens := h.prefixLens[:0]
	for prefix := range h.patterns {
		lens = append(lens, len(prefix))
	}
	slices.Sort(lens)
	h.prefixLens = slices.Compact(lens)
}

// resumed is what a subscription that resumes is told: the events it
// missed, oldest first, encoded for its transport, the position it
// continues from (the last event published before it went live), and
// whether the events are all it missed.
type resumed struct {
	frames    [][]byte
	position  history.ID
	recovered bool
}

// subscribe adds c to the topics of events (which the caller has made
// distinct and new for c) and queues the frames that reply returns, both
// under the publish lock: the frames reach c before any event published
// after them, and every event published after them reaches c. With since
// (a client's last event ID), reply gets the events of these names
// published after since: replayed and then live, with no gap or duplicate
// at the seam.
//
// The replay is read from the history and encoded before the publish lock
// is taken, so that a storm of resumes does not hold up publishing; under
// the lock only what was published meanwhile is added.
func (h *Hub) subscribe(c *client, events []string, since *string, reply func(*resumed) [][]byte) {
	var pre *replay
	if since != nil {
		pre = h.readReplay(c, events, *since)
	}
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	var r *resumed
	if since != nil {
		r = h.finishReplay(c, events, pre)
	}
	c.addReplay(reply(r))
	for _, e := range events {
		t := h.topicOf(e, true)
		t.members[c] = struct{}{}
		t.list = nil
	}
}

// replay is a resume's replay as read before the publish lock.
type replay struct {
	epoch  uint64   // the hub's epoch when the replay was read
	after  uint64   // the resume's last seen sequence number; 0: all kept
	known  bool     // the ID was one of this hub's (not another epoch, a future or malformed one)
	upTo   uint64   // the history was read up to this sequence number
	frames [][]byte // the encoded events, oldest first
	// complete is false when events after the ID were dropped, or when
	// there were more than the replay bound.
	complete bool
	empty    bool // since was "": a first connection asks for nothing
}

// readReplay reads what a subscriber of names missed after since from the
// history, without the publish lock. An empty since asks for nothing: a
// first connection learns its position. An ID the hub does not know
// (another epoch, a process that has restarted, a future or malformed one)
// gets every kept event, not recovered.
func (h *Hub) readReplay(c *client, names []string, since string) *replay {
	if h.opts.Fed {
		h.awaitFeed(since)
	}
	p := &replay{empty: since == "", complete: true, epoch: h.epoch.Load()}
	if p.empty {
		return p
	}
	p.upTo = h.kept.Load()
	id, err := history.ParseID(since)
	p.known = err == nil && id.Epoch == p.epoch && p.epoch != 0 && id.Seq <= p.upTo
	if p.known {
		p.after = id.Seq
	}
	if h.opts.History == nil || p.after == p.upTo {
		return p
	}
	events, complete := h.opts.History.Since(names, p.after, h.opts.ResumeMaxEvents)
	// Events kept after upTo are read again under the lock, with the rest
	// published meanwhile.
	for len(events) > 0 && events[len(events)-1].Seq > p.upTo {
		events = events[:len(events)-1]
	}
	// What cannot fit the byte bound is not encoded (finishReplay bounds
	// the frames exactly).
	if limit := h.opts.ResumeMaxBytes; limit > 0 {
		size, first := 0, len(events)
		for first > 0 && size <= limit {
			first--
			size += len(events[first].Name) + len(events[first].Data)
		}
		if first > 0 {
			events, complete = events[first:], false
		}
	}
	p.frames, p.complete = h.encodeReplay(c, events), complete
	return p
}

// finishReplay, under the publish lock, adds to pre what was published
// since it was read, bounds the whole, and says where the subscription
// continues.
func (h *Hub) finishReplay(c *client, names []string, pre *replay) *resumed {
	r := &resumed{position: history.ID{Epoch: h.epoch.Load(), Seq: h.seq}, recovered: true}
	if pre.empty {
		return r
	}
	if pre.epoch != r.position.Epoch {
		// A fed hub's stream was created anew since pre was read: pre's ID
		// and frames belong to the old one.
		pre = &replay{complete: true}
	}
	r.frames, r.recovered = pre.frames, pre.known && pre.complete
	if h.opts.History == nil {
		r.recovered = pre.known && pre.after == h.seq
		return r
	}
	if from := max(pre.after, pre.upTo); from < h.seq {
		events, complete := h.opts.History.Since(names, from, h.opts.ResumeMaxEvents)
		r.frames = append(r.frames, h.encodeReplay(c, events)...)
		r.recovered = r.recovered && complete
	}
	if n := h.opts.ResumeMaxEvents; n > 0 && len(r.frames) > n {
		r.frames, r.recovered = r.frames[len(r.frames)-n:], false
	}
	if limit := h.opts.ResumeMaxBytes; limit > 0 {
		size, first := 0, len(r.frames)
		for first > 0 && size+len(r.frames[first-1]) <= limit {
			first--
			size += len(r.frames[first])
		}
		if first > 0 {
			r.frames, r.recovered = r.frames[first:], false
		}
	}
	return r
}

// encodeReplay encodes kept events for c's transport: a WebSocket shares
// the frames the history keeps; SSE encodes its own.
func (h *Hub) encodeReplay(c *client, events []history.Event) [][]byte {
	frames := make([][]byte, len(events))
	for i, e := range events {
		id := history.ID{Epoch: h.epoch.Load(), Seq: e.Seq}
		switch {
		case c.sse:
			frames[i] = sseEventFrame(id, e.Name, e.Data)
		case e.Frame != nil:
			frames[i] = e.Frame
		default:
			frames[i] = eventFrame(id, e.Name, e.Data)
		}
	}
	return frames
}

// unsubscribe removes c from the topics of events; empty topics go away.
func (h *Hub) unsubscribe(c *client, events map[string]struct{}) {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	for e := range events {
		if t := h.topicOf(e, false); t != nil {
			delete(t.members, c)
			t.list = nil
			if len(t.members) == 0 {
				h.dropTopic(e)
			}
		}
	}
}

// register adds a new connection; it fails once the hub is closing.
func (h *Hub) register(c *client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.clients[c] = struct{}{}
	h.readers.Add(1)
	h.connections.Add(1)
	return true
}

func (h *Hub) deregister(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
}

func (h *Hub) snapshot() []*client {
	h.mu.Lock()
	defer h.mu.Unlock()
	cs := make([]*client, 0, len(h.clients))
	for c := range h.clients {
		cs = append(cs, c)
	}
	return cs
}

// pingFrame is shared by every ping: pings carry no payload.
var pingFrame = controlFrame(opPing, nil)

func (h *Hub) pingLoop() {
	defer h.pinger.Done()
	t := time.NewTicker(h.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			for _, c := range h.snapshot() {
				if c.sse {
					c.enqueue(ssePing)
				} else {
					c.enqueue(pingFrame)
				}
			}
		}
	}
}

// Close stops the hub: new connections and publishes are refused, every
// subscriber is sent what was queued for it and then close 1001 "going
// away", and Close waits for the connections to end. When ctx ends first,
// the remaining connections are cut without ceremony, the log says how
// many and how much they had not been sent, and ctx's error is returned.
func (h *Hub) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.closing.Store(true)
	h.mu.Unlock()
	// A Deliver under way finishes before the drain below; later ones see
	// closing.
	h.pubMu.Lock()
	h.pubMu.Unlock() //nolint:staticcheck // an empty critical section, on purpose
	close(h.stop)
	h.pinger.Wait()

	// Every event published so far is queued; each subscriber gets it,
	// then the close.
	for _, c := range h.snapshot() {
		c.drain(closeGoingAway, "going away")
	}
	done := make(chan struct{})
	go func() {
		h.readers.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		cut, frames := 0, 0
		for _, c := range h.snapshot() {
			c.mu.Lock()
			if c.closeSent.IsZero() {
				cut++
				frames += max(len(c.queue)-1, 0) // the close frame is not an event
			}
			c.mu.Unlock()
			c.abort()
		}
		h.opts.Log.Warn("shutdown timeout: connections cut", "connections", cut, "queued_frames", frames)
		<-done
		err = ctx.Err()
	}
	// The sweep, the poller and the flushers serve the closing connections,
	// so they stop last.
	close(h.stopSweep)
	h.sweeper.Wait()
	h.poll.close()
	h.flush.close()
	return err
}

// Stats are the hub's counts since it started.
type Stats struct {
	Subscribers int    `json:"subscribers"`       // open connections
	Connections uint64 `json:"connections_total"` // connections accepted
	Published   uint64 `json:"events_published"`  // events accepted for fan-out
	Deliveries  uint64 `json:"deliveries"`        // events queued to subscribers
}

// Stats returns the hub's counts.
func (h *Hub) Stats() Stats {
	return Stats{
		Subscribers: h.Subscribers(),
		Connections: h.connections.Load(),
		Published:   h.published.Load(),
		Deliveries:  h.deliveries.Load(),
	}
}

// ClientInfo describes one subscriber for the admin client list. It holds
// no credential.
type ClientInfo struct {
	ID             uint64    `json:"id"`
	Remote         string    `json:"remote"`
	UserAgent      string    `json:"user_agent"`
	Transport      string    `json:"transport"`
	Subscriptions  []string  `json:"subscriptions"`
	MessagesSent   uint64    `json:"messages_sent"` // frames written, pings included
	QueueDepth     int       `json:"queue_depth"`   // frames waiting
	QueuedBytes    int       `json:"queued_bytes"`
	ConnectedSince time.Time `json:"connected_since"`
}

// Clients describes every open connection, oldest first.
func (h *Hub) Clients() []ClientInfo {
	cs := h.snapshot()
	out := make([]ClientInfo, 0, len(cs))
	for _, c := range cs {
		info := ClientInfo{
			ID: c.id, Remote: c.remote, UserAgent: c.userAgent, Transport: c.transport(),
			Subscriptions: []string{}, MessagesSent: c.sent.Load(), ConnectedSince: c.connectedAt.UTC(),
		}
		if list := c.subList.Load(); list != nil {
			info.Subscriptions = slices.Sorted(slices.Values(*list))
		}
		c.mu.Lock()
		info.QueueDepth, info.QueuedBytes = len(c.queue), c.queued
		c.mu.Unlock()
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b ClientInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// CloseClient closes the connection with the ID that Clients gives it: a
// WebSocket with 4002 "closed by admin", an SSE stream with the comment
// ": close closed by admin". It reports false when there is no such open
// connection.
func (h *Hub) CloseClient(id uint64) bool {
	for _, c := range h.snapshot() {
		if c.id == id && !c.isClosing() {
			c.close(closeByAdmin, reasonByAdmin)
			return true
		}
	}
	return false
}

// Totals reports the connections accepted and the deliveries queued.
func (h *Hub) Totals() (connections, deliveries uint64) {
	return h.connections.Load(), h.deliveries.Load()
}

// SubscribersByTransport reports the open connections by transport.
func (h *Hub) SubscribersByTransport() map[string]int {
	n := map[string]int{"websocket": 0, "sse": 0}
	for _, c := range h.snapshot() {
		n[c.transport()]++
	}
	return n
}

// QueuedBytes sums the bytes waiting in every subscriber's queue.
func (h *Hub) QueuedBytes() int {
	n := 0
	for _, c := range h.snapshot() {
		c.mu.Lock()
		n += c.queued
		c.mu.Unlock()
	}
	return n
}

// Subscribers reports the number of open connections.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// Rechecker looks a credential's permissions up again: the current ones,
// or false when the credential is no longer accepted.
// auth.Authenticator.Recheck is one.
type Rechecker func(auth.Permissions) (current auth.Permissions, ok bool)

// Recheck applies a change of credentials to the open connections: one
// whose credential is no longer accepted is closed with 4003 "token
// revoked"; one subscribed to a name its current permissions no longer
// allow is closed with 4003 "permissions changed" (it may reconnect, and
// resume, with what it may still read); the others keep their
// subscriptions and get the current permissions for later subscribes. Call
// it when the tokens file has changed.
func (h *Hub) Recheck(check Rechecker) (closed int) {
	for _, c := range h.snapshot() {
		if !c.initialized.Load() || c.isClosing() {
			continue
		}
		if reason := c.recheck(check); reason != "" {
			c.close(closeTokenRevoked, reason)
			closed++
		}
	}
	if closed > 0 {
		h.opts.Log.Info("connections closed after a change of credentials", "connections", closed)
	}
	return closed
}

// isClosing reports whether c has begun to close: a connection on its way
// out is not asked about again.
func (c *client) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// recheck re-checks c's credential and returns why c must be closed, or
// "" when it may go on (with its permissions brought up to date).
func (c *client) recheck(check Rechecker) string {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	current, ok := check(c.perms)
	if !ok {
		return reasonRevoked
	}
	for name := range c.subs {
		if !current.Subscribe.Covers(name) {
			return reasonNarrowed
		}
	}
	for _, q := range c.workQueues {
		if !current.Work.Allows(q) {
			return reasonNarrowed
		}
	}
	c.perms = current
	return ""
}
