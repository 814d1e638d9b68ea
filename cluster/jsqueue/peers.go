package jsqueue

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"eventsrv/queue"
)

// The instances talk on two core NATS subjects (nothing is stored):
//
//   - <Stream>_QCTL.presence: every instance says, every second and when
//     its set changes, which queues it has workers on and how many tasks it
//     holds of each; an instance not heard of for peerTTL is gone. Placing
//     a refused task and the stats use it.
//   - <Stream>_QCTL.ask: an answer (assign, reject, done) for a task this
//     instance does not hold, from an HTTP worker whose request the load
//     balancer sent here, is asked of every instance; the one that holds
//     the task settles it and says how, the others say what they know.

// peer is another instance, as its presence messages tell.
type peer struct {
	queues  map[string][2]int // name: live workers, tasks out with workers
	ackWait time.Duration
	seen    time.Time
}

func (p *peer) live(now time.Time, ttl time.Duration) bool { return now.Sub(p.seen) < ttl }

type presenceMsg struct {
	ID      string            `json:"id"`
	Bye     bool              `json:"bye,omitempty"`
	Hello   bool              `json:"hello,omitempty"` // a new instance: answer with yours at once
	AckWait time.Duration     `json:"ack_wait,omitempty"`
	Queues  map[string][2]int `json:"queues,omitempty"`
}

// sayPresence publishes this instance's presence.
func (b *Broker) sayPresence() { b.presence(false) }

// presence publishes this instance's presence; hello asks the others for
// theirs at once.
func (b *Broker) presence(hello bool) {
	m := presenceMsg{ID: b.id, Hello: hello, AckWait: b.tm.ackWait, Queues: map[string][2]int{}}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	for name, q := range b.queues {
		if len(q.workers) > 0 || q.out() > 0 {
			m.Queues[name] = [2]int{len(q.workers), q.out()}
		}
	}
	b.mu.Unlock()
	data, _ := json.Marshal(m)
	_ = b.nc.Publish(b.ctl+".presence", data)
}

func (b *Broker) sayGoodbye() {
	data, _ := json.Marshal(presenceMsg{ID: b.id, Bye: true})
	_ = b.nc.Publish(b.ctl+".presence", data)
	_ = b.nc.FlushTimeout(time.Second)
}

func (b *Broker) onPresence(msg *nats.Msg) {
	var m presenceMsg
	if json.Unmarshal(msg.Data, &m) != nil || m.ID == "" || m.ID == b.id {
		return
	}
	b.mu.Lock()
	defer b.unlock()
	if m.Bye {
		delete(b.peers, m.ID)
		return
	}
	p := b.peers[m.ID]
	if p == nil {
		p = &peer{}
		b.peers[m.ID] = p
		b.logf(slog.LevelInfo, "work queues: another instance is here", "instance", m.ID)
	}
	p.queues, p.ackWait, p.seen = m.Queues, m.AckWait, time.Now()
	if m.Hello && !b.closed {
		b.later(b.sayPresence)
	}
}

// peerWorks reports whether another live instance has workers on the
// named queue; the caller holds the lock.
func (b *Broker) peerWorks(name string, now time.Time) bool {
	for _, p := range b.peers {
		if p.live(now, b.tm.peerTTL) && p.queues[name][0] > 0 {
			return true
		}
	}
	return false
}

func (b *Broker) livePeers(now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, p := range b.peers {
		if p.live(now, b.tm.peerTTL) {
			n++
		}
	}
	return n
}

// runPresence says this instance's presence every tm.presence and forgets
// what has aged: instances not heard of, workers that left long ago.
func (b *Broker) runPresence() {
	defer b.wg.Done()
	t := time.NewTicker(b.tm.presence)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		if b.Ready() == nil {
			b.sayPresence()
		}
		now := time.Now()
		b.mu.Lock()
		for id, p := range b.peers {
			if !p.live(now, 10*b.tm.peerTTL) {
				delete(b.peers, id)
			}
		}
		keep := max(b.opts.Retain, time.Minute)
		for w, at := range b.left {
			if now.Sub(at) > keep {
				delete(b.left, w)
				delete(b.leftJW, w)
			}
		}
		for _, q := range b.queues {
			b.evict(q, now)
			b.forget(q)
		}
		b.unlock()
	}
}

// askMsg asks the other instances to settle an answer.
type askMsg struct {
	From     string `json:"from"`
	Op       string `json:"op"`
	Subject  string `json:"subject"`
	Detached bool   `json:"detached,omitempty"` // a worker's: only a take of its subject counts
	Queue    string `json:"queue,omitempty"`
	ID       string `json:"id"`
}

// askReply is an instance's answer: settled (auth) with code and message,
// or what it knows.
type askReply struct {
	From    string `json:"from"`
	Auth    bool   `json:"auth,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Exists  bool   `json:"exists,omitempty"`
	Seen    bool   `json:"seen,omitempty"`
	Lost    bool   `json:"lost,omitempty"`
	Forced  bool   `json:"forced,omitempty"`
}

// remoteErr is an error another instance answered.
type remoteErr struct {
	base error
	msg  string
}

func (e *remoteErr) Error() string { return e.msg }
func (e *remoteErr) Unwrap() error { return e.base }

func encodeErr(err error) (code, msg string) {
	if err == nil {
		return "", ""
	}
	if code, ok := queue.CodeOf(err); ok {
		return code, err.Error()
	}
	return "UNAVAILABLE", err.Error()
}

func decodeErr(code, msg string) error {
	if code == "" {
		return nil
	}
	if base, ok := queue.ErrorOf(code); ok {
		return &remoteErr{base, msg}
	}
	return &remoteErr{queue.ErrClosed, msg}
}

func (r result) reply(from string) askReply {
	code, msg := encodeErr(r.err)
	return askReply{From: from, Auth: r.auth, Code: code, Message: msg, Exists: r.exists, Seen: r.seen, Lost: r.lost, Forced: r.forced}
}

func (a askReply) result() result {
	return result{auth: a.Auth, err: decodeErr(a.Code, a.Message), exists: a.Exists, seen: a.Seen, lost: a.Lost, forced: a.Forced}
}

// asks are this instance's questions waiting for replies, by token.
type asks struct {
	inbox string // replies come to <inbox>.<token>
	next  atomic.Uint64
}

func (b *Broker) onAsk(msg *nats.Msg) {
	var m askMsg
	if json.Unmarshal(msg.Data, &m) != nil || m.From == b.id || msg.Reply == "" {
		return
	}
	o := -1
	for i, name := range opNames {
		if name == m.Op {
			o = i
		}
	}
	if o < 0 {
		return
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		r := b.answerHere(actor{subject: m.Subject, detached: m.Detached}, m.Queue, m.ID, op(o))
		data, _ := json.Marshal(r.reply(b.id))
		_ = msg.Respond(data)
	}()
}

// onAskReply hands a reply to this instance's inbox to whoever waits for
// its token.
func (b *Broker) onAskReply(msg *nats.Msg) {
	token := msg.Subject[strings.LastIndexByte(msg.Subject, '.')+1:]
	b.askMu.Lock()
	ch := b.waiting[token]
	b.askMu.Unlock()
	if ch != nil {
		select {
		case ch <- msg:
		default:
		}
	}
}

// expect registers a token for up to n replies to this instance's inbox,
// and returns the subject to reply to, the channel and a function that
// unregisters it.
func (b *Broker) expect(n int) (reply string, ch chan *nats.Msg, done func()) {
	token := strconv.FormatUint(b.asks.next.Add(1), 36)
	ch = make(chan *nats.Msg, n)
	b.askMu.Lock()
	b.waiting[token] = ch
	b.askMu.Unlock()
	return b.asks.inbox + "." + token, ch, func() {
		b.askMu.Lock()
		delete(b.waiting, token)
		b.askMu.Unlock()
	}
}

// askPeers asks the other instances about an answer this one could not
// settle, and merges what they and it know.
func (b *Broker) askPeers(a actor, queueName, id string, o op, local result) error {
	n := b.livePeers(time.Now())
	if n == 0 || !b.started.Load() {
		return merge(o, local, nil)
	}
	req := askMsg{From: b.id, Op: opNames[o], Subject: a.subject, Queue: queueName, ID: id}
	if a.w != nil {
		req.Subject, req.Detached = a.w.subject, true
	}
	data, _ := json.Marshal(req)
	inbox, ch, done := b.expect(n)
	defer done()
	if err := b.nc.PublishRequest(b.ctl+".ask", inbox, data); err != nil {
		return merge(o, local, nil)
	}
	timer := time.NewTimer(b.tm.askTimeout)
	defer timer.Stop()
	var replies []result
	for len(replies) < n {
		select {
		case msg := <-ch:
			var r askReply
			if json.Unmarshal(msg.Data, &r) != nil {
				continue
			}
			replies = append(replies, r.result())
			if r.Auth {
				return merge(o, local, replies)
			}
		case <-timer.C:
			return merge(o, local, replies)
		case <-b.ctx.Done():
			return queue.ErrClosed
		}
	}
	return merge(o, local, replies)
}

// merge is the answer from what the instances said: the one that settled
// it, corrected by what the others know (the caller saw the task there, or
// lost it to TaskTimeout there); otherwise what single-node would answer
// of a task that waits, or of an unknown one.
func merge(o op, local result, replies []result) error {
	var auth *result
	know := local
	all := append([]result{local}, replies...)
	for i := range all {
		r := &all[i]
		if r.auth && auth == nil {
			auth = r
		}
		know.exists = know.exists || r.exists
		know.seen = know.seen || r.seen
		know.lost = know.lost || r.lost
		know.forced = know.forced || r.forced
	}
	if auth != nil {
		err := auth.err
		switch {
		case errors.Is(err, queue.ErrNotOfferedToYou) && know.seen && o == opReject && know.forced:
			return queue.ErrForced
		case errors.Is(err, queue.ErrNotOfferedToYou) && know.seen:
			return queue.ErrOfferExpired
		case o == opDone && errors.Is(err, queue.ErrNotAssigned) && know.lost:
			return errLost
		}
		return err
	}
	switch o {
	case opAssign:
		switch {
		case know.seen:
			return queue.ErrOfferExpired
		case know.exists:
			return queue.ErrNotOfferedToYou
		}
	case opReject:
		switch {
		case know.seen && know.forced:
			return queue.ErrForced
		case know.seen:
			return queue.ErrOfferExpired
		case know.exists:
			return queue.ErrNotOfferedToYou
		}
	default:
		switch {
		case know.lost:
			return errLost
		case know.exists:
			return queue.ErrNotAssigned
		}
	}
	return queue.ErrUnknownTask
}

// startAsks subscribes to the replies to this instance's questions.
func (b *Broker) startAsks() error {
	b.asks.inbox = nats.NewInbox()
	sub, err := b.nc.Subscribe(b.asks.inbox+".*", b.onAskReply)
	if err != nil {
		return err
	}
	b.subs = append(b.subs, sub)
	return nil
}
