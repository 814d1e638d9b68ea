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
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"eventsrv/auth"
	"eventsrv/history"
)

// ErrClosed is returned by Publish once the hub has begun to shut down.
var ErrClosed = errors.New("broadcast hub is closed")

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
	// CheckOrigin, when set, refuses WebSocket upgrades from browser
	// origins it does not allow.
	CheckOrigin func(origin string) bool
	// History, when set, keeps recent events for subscribers that resume.
	// Without it a resume is recovered only when nothing was published
	// since the subscriber's last ID.
	History History
	// Epoch is the first part of every event ID (see history.ID); zero
	// means the hub's start in Unix milliseconds.
	Epoch uint64
}

// History keeps recent events so that a subscriber can resume after a
// reconnect. The hub calls it under its publish lock, in ID order.
// history.Memory implements it.
type History interface {
	Append(e history.Event)
	// Since returns the kept events of names after sequence number after,
	// oldest first, and whether they are all of them.
	Since(names []string, after uint64) (events []history.Event, complete bool)
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
	topics map[string]*topic
	epoch  uint64
	seq    uint64    // the last event's sequence number
	ready  []*client // Publish's scratch list of subscribers to schedule

	flush flushers

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
		clients:   make(map[*client]struct{}),
		stop:      make(chan struct{}),
		stopSweep: make(chan struct{}),
	}
	if h.metrics == nil {
		h.metrics = noMetrics{}
	}
	h.epoch = opts.Epoch
	if h.epoch == 0 {
		h.epoch = uint64(time.Now().UnixMilli())
	}
	if p, err := newPoller(opts.Log); err == nil {
		h.poll = p
	} else {
		opts.Log.Info("no socket poller; one reader goroutine per subscriber", "err", err)
	}
	// One CPU fewer than the machine has: the rest accept publishes and
	// run the readers. Fewer flushers also batch more (publishes queue up
	// while a flusher works through the list), which on two cores tripled
	// deliveries per second; see writer.go.
	h.flush.start(max(1, runtime.GOMAXPROCS(0)-1))
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
	h.published.Add(1)
	id := h.publish(event, data)
	return id.String(), nil
}

func (h *Hub) publish(event string, data json.RawMessage) history.ID {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	h.seq++
	id := history.ID{Epoch: h.epoch, Seq: h.seq}
	t := h.topics[event]
	if t == nil && h.opts.History == nil {
		return id
	}
	f := eventFrame(id, event, data)
	if h.opts.History != nil {
		h.opts.History.Append(history.Event{Seq: id.Seq, Name: event, Data: eventData(f, len(data)), Frame: f})
	}
	if t == nil {
		return id
	}
	var sse []byte // built at the first SSE subscriber, once
	if t.list == nil {
		t.list = make([]*client, 0, len(t.members))
		for c := range t.members {
			t.list = append(t.list, c)
		}
	}
	for _, c := range t.list {
		frame := f
		if c.sse {
			if sse == nil {
				sse = sseEventFrame(id, event, data)
			}
			frame = sse
		}
		if c.add(frame) {
			if c.raw == nil {
				h.schedule(c)
			} else {
				h.ready = append(h.ready, c)
			}
		}
	}
	if len(h.ready) > 0 {
		h.flush.add(h.ready...)
		clear(h.ready)
		h.ready = h.ready[:0]
	}
	h.deliveries.Add(uint64(len(t.list)))
	return id
}

// resumed is what a subscription that resumes is told: the events it
// missed, oldest first, the position it continues from (the last event
// published before it went live), and whether the events are all it missed.
type resumed struct {
	events    []history.Event
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
func (h *Hub) subscribe(c *client, events []string, since *string, reply func(*resumed) [][]byte) {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	var r *resumed
	if since != nil {
		r = h.resume(events, *since)
	}
	c.addReplay(reply(r))
	for _, e := range events {
		t := h.topics[e]
		if t == nil {
			t = &topic{members: make(map[*client]struct{})}
			h.topics[e] = t
		}
		t.members[c] = struct{}{}
		t.list = nil
	}
}

// resume finds what a subscriber of names missed after since. An empty
// since asks for nothing: a first connection learns its position. An ID
// the hub does not know (another epoch, a process that has restarted, a
// future or malformed one) gets every kept event, not recovered.
func (h *Hub) resume(names []string, since string) *resumed {
	r := &resumed{position: history.ID{Epoch: h.epoch, Seq: h.seq}, recovered: true}
	if since == "" {
		return r
	}
	id, err := history.ParseID(since)
	known := err == nil && id.Epoch == h.epoch && id.Seq <= h.seq
	if known && id.Seq == h.seq {
		return r // nothing was published since
	}
	if !known {
		id.Seq = 0
	}
	r.recovered = false
	if h.opts.History != nil {
		var complete bool
		r.events, complete = h.opts.History.Since(names, id.Seq)
		r.recovered = known && complete
	}
	return r
}

// replayFrame is the WebSocket delivery of a kept event.
func (h *Hub) replayFrame(e history.Event) []byte {
	if e.Frame != nil {
		return e.Frame
	}
	return eventFrame(history.ID{Epoch: h.epoch, Seq: e.Seq}, e.Name, e.Data)
}

// unsubscribe removes c from the topics of events; empty topics go away.
func (h *Hub) unsubscribe(c *client, events map[string]struct{}) {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	for e := range events {
		if t := h.topics[e]; t != nil {
			delete(t.members, c)
			t.list = nil
			if len(t.members) == 0 {
				delete(h.topics, e)
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
			info.Subscriptions = *list
		}
		c.mu.Lock()
		info.QueueDepth, info.QueuedBytes = len(c.queue), c.queued
		c.mu.Unlock()
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b ClientInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
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
