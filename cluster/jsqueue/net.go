package jsqueue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"eventsrv/cluster"
	"eventsrv/queue"
)

// What is sent on a delivery's ack subject.
var (
	ackAck       = []byte("+ACK")
	ackNak       = []byte("-NAK")
	ackNakStored = []byte(`-NAK {"delay":1}`)
	ackProgress  = []byte("+WPI")
	ackTerm      = []byte("+TERM")
)

// errStreamFull is JetStream's refusal of a publish past
// MaxMsgsPerSubject with DiscardNewPerSubject.
const errCodeStoreFailed = 10077

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Add publishes a task to the named queue's subject and returns its ID
// once JetStream has stored it.
func (b *Broker) Add(name string, data json.RawMessage, o queue.AddOptions) (string, error) {
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	if !b.started.Load() {
		return "", errUnavailable
	}
	if err := b.Ready(); err != nil {
		return "", fmt.Errorf("the task was not added: %w", err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return "", queue.ErrClosed
	}
	q := b.queue(name)
	q.active = time.Now()
	subject := q.subject
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.PublishTimeout)
	defer cancel()
	if err := b.checkQueues(ctx, subject); err != nil {
		return "", err
	}
	id := newID()
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if o.Forced {
		msg.Header.Set(hdrForced, "1")
	}
	if o.Complete {
		msg.Header.Set(hdrComplete, "1")
	}
	_, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(b.stream))
	var apiErr *jetstream.APIError
	full := errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed &&
		strings.Contains(apiErr.Description, "maximum messages per subject")
	b.mu.Lock()
	q.active = time.Now()
	switch {
	case err == nil:
		q.c.added++
	case full:
		q.c.full++
	}
	b.mu.Unlock()
	switch {
	case full:
		return "", fmt.Errorf("%w: %d unfinished tasks", queue.ErrQueueFull, b.opts.MaxTasks)
	case err != nil:
		return "", fmt.Errorf("the task may not be added: JetStream did not acknowledge it within NATS_PUBLISH_TIMEOUT (%v); add it again: %w", b.opts.PublishTimeout, err)
	}
	return id, nil
}

// checkQueues refuses a task for a queue that holds none when MaxQueues
// queues hold tasks.
func (b *Broker) checkQueues(ctx context.Context, subject string) error {
	b.mu.Lock()
	s, n, at := b.streamH, b.subjN, b.subjAt
	b.mu.Unlock()
	if s == nil {
		return nil
	}
	if time.Since(at) > time.Second {
		info, err := s.Info(ctx)
		if err != nil {
			return nil // the publish says what is wrong
		}
		n = int(info.State.NumSubjects)
		b.mu.Lock()
		b.subjN, b.subjAt = n, time.Now()
		b.mu.Unlock()
	}
	if n < b.opts.MaxQueues {
		return nil
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil || info.State.Subjects[subject] > 0 {
		return nil
	}
	return fmt.Errorf("%w: %d queues hold tasks (QUEUE_MAX_QUEUES)", queue.ErrTooManyQueues, n)
}

// setup makes sure the queues' stream exists with this instance's limits,
// retrying until it does; false when the Broker closed first.
func (b *Broker) setup() bool {
	for {
		s, err := b.ensureStream()
		if err == nil {
			b.mu.Lock()
			b.streamH = s
			b.mu.Unlock()
			b.ready.Store(nil)
			b.log.Info("work queues ready", "stream", b.stream, "instance", b.id)
			return true
		}
		b.setNotReady("the work queues' stream is not ready: " + err.Error())
		b.quiet.Log(b.log, slog.LevelWarn, "setting up the work queues' stream failed; retrying", "stream", b.stream, "err", err)
		select {
		case <-b.ctx.Done():
			return false
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (b *Broker) ensureStream() (jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	cfg := jetstream.StreamConfig{
		Name:                 b.stream,
		Description:          "eventsrv work queues; subjects are <stream>.<encoded queue name>",
		Subjects:             []string{b.stream + ".>"},
		Retention:            jetstream.WorkQueuePolicy,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgsPerSubject:    int64(b.opts.MaxTasks),
		MaxMsgs:              -1,
		MaxBytes:             -1,
		Storage:              jetstream.FileStorage,
		Replicas:             max(b.opts.Replicas, 1),
		Duplicates:           2 * time.Minute,
	}
	s, err := cluster.LookStreamUp(ctx, b.js, b.stream)
	switch {
	case err == nil:
		have := s.CachedInfo().Config
		if have.MaxMsgsPerSubject == cfg.MaxMsgsPerSubject && have.Replicas == cfg.Replicas && have.DiscardNewPerSubject {
			return s, nil
		}
		have.MaxMsgsPerSubject, have.Replicas = cfg.MaxMsgsPerSubject, cfg.Replicas
		have.Discard, have.DiscardNewPerSubject = jetstream.DiscardNew, true
		if s, err = b.js.UpdateStream(ctx, have); err != nil {
			return nil, fmt.Errorf("update stream %s to QUEUE_MAX_TASKS and NATS_REPLICAS: %w", b.stream, err)
		}
		b.log.Info("work queues' stream updated", "stream", b.stream, "max_tasks", b.opts.MaxTasks)
		return s, nil
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("look stream %s up: %w", b.stream, err)
	}
	if s, err = b.js.CreateStream(ctx, cfg); err != nil {
		if s2, err2 := cluster.LookStreamUp(ctx, b.js, b.stream); err2 == nil {
			return s2, nil // another instance created it meanwhile
		}
		return nil, fmt.Errorf("create stream %s: %w", b.stream, err)
	}
	b.log.Info("work queues' stream created", "stream", b.stream, "replicas", cfg.Replicas)
	return s, nil
}

// consumerRef is a queue's consumer, shared by every instance, with the
// ack wait it had when looked up.
type consumerRef struct {
	cons    jetstream.Consumer
	ackWait time.Duration
}

// consumer returns the named queue's consumer, creating it. An existing
// consumer's ack wait is lowered to this instance's when it is longer,
// never raised: every instance reads it, and leases assume the smallest.
func (b *Broker) consumer(name string) (*consumerRef, error) {
	b.consumMu.Lock()
	ref := b.consum[name]
	b.consumMu.Unlock()
	if ref != nil {
		return ref, nil
	}
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	desc := "eventsrv work queue " + name
	if len(desc) > 1024 {
		desc = desc[:1024]
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       durable(name),
		Description:   desc,
		FilterSubject: b.queueSubject(name),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.tm.ackWait,
		MaxDeliver:    -1,
		MaxAckPending: -1,
		MaxWaiting:    4096,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	c, err := b.js.Consumer(ctx, b.stream, cfg.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		c, err = b.js.CreateConsumer(ctx, b.stream, cfg)
		if err != nil {
			c, err = b.js.Consumer(ctx, b.stream, cfg.Durable) // another instance created it meanwhile
		}
	case err == nil && c.CachedInfo().Config.AckWait > cfg.AckWait:
		have := c.CachedInfo().Config
		have.AckWait = cfg.AckWait
		if c2, err2 := b.js.UpdateConsumer(ctx, b.stream, have); err2 == nil {
			c = c2
		}
	}
	if err != nil {
		return nil, fmt.Errorf("work queue %q: its consumer: %w", name, err)
	}
	ref = &consumerRef{cons: c, ackWait: c.CachedInfo().Config.AckWait}
	b.consumMu.Lock()
	b.consum[name] = ref
	b.consumMu.Unlock()
	return ref, nil
}

func (b *Broker) forgetConsumer(name string) {
	b.consumMu.Lock()
	delete(b.consum, name)
	b.consumMu.Unlock()
}

func (b *Broker) queueSubject(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queue(name).subject
}

// leaseWait is the ack wait a delivery's lease assumes: the smallest of
// the consumer's as read, this instance's, and the other instances'.
func (b *Broker) leaseWait(ref *consumerRef) time.Duration {
	d := min(ref.ackWait, b.tm.ackWait)
	b.mu.Lock()
	now := time.Now()
	for _, p := range b.peers {
		if p.live(now, b.tm.peerTTL) && p.ackWait > 0 {
			d = min(d, p.ackWait)
		}
	}
	b.mu.Unlock()
	return d
}

// pullExpiry is how long a pull request lasts: short enough that a
// delivery it brings late still has most of its lease, which counts from
// the request.
func pullExpiry(ackWait time.Duration) time.Duration {
	return min(max(ackWait/4, 500*time.Millisecond), 10*time.Second)
}

// runPuller keeps pull requests out for the free slots of every queue's
// workers here, and reads what they bring. JetStream serves waiting pull
// requests in turn, across instances, so that the instance that has waited
// longest gets the next task.
func (b *Broker) runPuller() {
	defer b.wg.Done()
	var pulls sync.WaitGroup
	defer pulls.Wait()
	if !b.setup() {
		return
	}
	b.presence(true)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if b.resetup.Swap(false) {
			b.consumMu.Lock()
			clear(b.consum)
			b.consumMu.Unlock()
			if !b.setup() {
				return
			}
		}
		next := b.issuePulls(&pulls)
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-b.ctx.Done():
			return
		case <-b.wakePuller:
		case <-timer.C:
		}
	}
}

type pullWant struct {
	q *jq
	n int
}

// issuePulls sends the pull requests that queues need and returns when to
// look again for those that must wait.
func (b *Broker) issuePulls(pulls *sync.WaitGroup) time.Time {
	now := time.Now()
	var todo []pullWant
	var next time.Time
	b.mu.Lock()
	for q := range b.pullq {
		if q.pullAfter.After(now) {
			if next.IsZero() || q.pullAfter.Before(next) {
				next = q.pullAfter
			}
			continue
		}
		delete(b.pullq, q)
		n := q.freeSlots() - q.want
		if b.closed || q.free.Len() == 0 || n <= 0 || q.pulls >= b.tm.maxPulls {
			continue
		}
		q.want += n
		q.pulls++
		todo = append(todo, pullWant{q, n})
	}
	b.mu.Unlock()
	for _, p := range todo {
		b.pull(pulls, p.q, p.n)
	}
	return next
}

// pull sends one pull request for n tasks of q and reads what it brings.
func (b *Broker) pull(pulls *sync.WaitGroup, q *jq, n int) {
	name := q.name
	ref, err := b.consumer(name)
	var batch jetstream.MessageBatch
	var ackWait time.Duration
	start := time.Now()
	cancel := context.CancelFunc(func() {})
	if err == nil {
		ackWait = b.leaseWait(ref)
		exp := pullExpiry(ackWait)
		var ctx context.Context
		ctx, cancel = context.WithTimeout(b.ctx, exp)
		opts := []jetstream.FetchOpt{jetstream.FetchContext(ctx)}
		if exp >= 4*time.Second {
			opts = append(opts, jetstream.FetchHeartbeat(exp/4))
		}
		batch, err = ref.cons.Fetch(n, opts...)
	}
	if err != nil {
		cancel()
		b.pullFailed(name, err)
		b.mu.Lock()
		q.want = max(0, q.want-n)
		q.pulls--
		q.pullAfter = time.Now().Add(5 * b.tm.retry)
		b.pullq[q] = struct{}{}
		b.unlock()
		select {
		case b.wakePuller <- struct{}{}:
		default:
		}
		return
	}
	pulls.Add(1)
	go func() {
		defer pulls.Done()
		defer cancel()
		got := 0
		for m := range batch.Messages() {
			got++
			b.arrived(name, m, start, ackWait)
		}
		if err := batch.Error(); err != nil && b.ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			b.pullFailed(name, err)
		}
		b.mu.Lock()
		q.want = max(0, q.want-(n-got))
		q.pulls--
		b.markDirty(q)
		b.unlock()
	}()
}

// pullFailed logs a failed pull and forgets what it shows to be gone.
func (b *Broker) pullFailed(name string, err error) {
	if b.ctx.Err() != nil {
		return
	}
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		b.resetup.Store(true)
		b.setNotReady("the work queues' stream is gone")
		b.forgetConsumer(name)
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrConsumerDeleted):
		b.forgetConsumer(name)
	}
	b.quiet.Log(b.log, slog.LevelWarn, "work queue pull failed; retrying", "queue", name, "err", err)
}

// fetchOne takes the next waiting task of the named queue, if any, for
// Take. JetStream counts a new message for its consumers a moment after it
// stored it, and a request that asks for what is there right now (no wait)
// may miss a task added just before; when the stream shows more tasks of
// the queue than are out, the request is sent again, a few times.
func (b *Broker) fetchOne(name string) (jetstream.Msg, time.Duration, error) {
	ref, err := b.consumer(name)
	if err != nil {
		return nil, 0, err
	}
	ackWait := b.leaseWait(ref)
	for attempt := 1; ; attempt++ {
		batch, err := ref.cons.FetchNoWait(1)
		if err != nil {
			b.pullFailed(name, err)
			return nil, 0, err
		}
		var msg jetstream.Msg
		for m := range batch.Messages() {
			msg = m
		}
		if msg != nil {
			return msg, ackWait, nil
		}
		if err := batch.Error(); err != nil {
			b.pullFailed(name, err)
			return nil, 0, err
		}
		if attempt == 4 || !b.waitsInStream(ref, name) {
			return nil, ackWait, nil
		}
		select {
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		case <-b.ctx.Done():
			return nil, 0, b.ctx.Err()
		}
	}
}

// waitsInStream reports whether the named queue has more unfinished tasks
// in the stream than are out with its consumer.
func (b *Broker) waitsInStream(ref *consumerRef, name string) bool {
	b.mu.Lock()
	s := b.streamH
	subject := b.queue(name).subject
	b.mu.Unlock()
	if s == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(b.ctx, time.Second)
	defer cancel()
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return false
	}
	ci, err := ref.cons.Info(ctx)
	if err != nil {
		return false
	}
	return info.State.Subjects[subject] > uint64(ci.NumAckPending)
}

// ack acks t's delivery and waits for JetStream's confirmation, trying
// again while the lease lasts. sent is false when no ack can have reached
// JetStream.
func (b *Broker) ack(t *jtask, gen uint64) (confirmed, sent bool) {
	for {
		b.mu.Lock()
		if t.gen != gen {
			b.mu.Unlock()
			return false, sent
		}
		reply, until := t.reply, t.leaseEnd.Add(-guard(t))
		b.mu.Unlock()
		left := time.Until(until)
		if left <= 0 || b.ctx.Err() != nil {
			return false, sent
		}
		ctx, cancel := context.WithTimeout(b.ctx, min(left, time.Second))
		wasClosed := b.nc.IsClosed()
		_, err := b.nc.RequestWithContext(ctx, reply, ackAck)
		cancel()
		switch {
		case err == nil:
			return true, true
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, context.Canceled):
			sent = true // it may have reached JetStream
		case errors.Is(err, nats.ErrConnectionClosed):
			// Close flushes what was published before it: an ack sent on
			// a connection open until then may have reached JetStream,
			// but its confirmation never will. A closed connection stays
			// closed, so there is nothing to retry.
			return false, sent || !wasClosed
		}
		b.quiet.Log(b.log, slog.LevelWarn, "queue task ack failed; retrying", "err", err)
		select {
		case <-time.After(min(b.tm.retry, left)):
		case <-b.ctx.Done():
			return false, sent
		}
	}
}

// nak hands deliveries back to JetStream, in order (JetStream delivers
// them again in that order), and waits briefly for it to confirm, so that
// a pull request sent next finds them, ahead of newer tasks.
func (b *Broker) nak(replies []string, nak []byte) {
	inbox, ch, done := b.expect(len(replies))
	defer done()
	for _, reply := range replies {
		if err := b.nc.PublishRequest(reply, inbox, nak); err != nil {
			if b.ctx.Err() == nil {
				b.quiet.Log(b.log, slog.LevelWarn, "handing a queue task back to JetStream failed; it is delivered again after the ack wait", "err", err)
			}
			return
		}
	}
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	for range replies {
		select {
		case <-ch:
		case <-timer.C:
			return
		case <-b.ctx.Done():
			return
		}
	}
}

type renewJob struct {
	t     *jtask
	gen   uint64
	reply string
}

// runRenewals renews the leases of the tasks held here: an in-progress
// ack, confirmed, sets the lease's end to when it was sent plus the ack
// wait.
func (b *Broker) runRenewals() {
	defer b.wg.Done()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, 64)
	for {
		var job renewJob
		select {
		case <-b.ctx.Done():
			return
		case job = <-b.renewals:
		}
		select {
		case sem <- struct{}{}:
		case <-b.ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b.renew(job)
		}()
	}
}

func (b *Broker) renew(job renewJob) {
	sent := time.Now()
	ctx, cancel := context.WithTimeout(b.ctx, time.Second)
	_, err := b.nc.RequestWithContext(ctx, job.reply, ackProgress)
	cancel()
	b.mu.Lock()
	defer b.unlock()
	t := job.t
	if t.gen != job.gen || !t.held() || t.reply != job.reply {
		return
	}
	t.renewing = false
	// Confirmed before the lease ended: JetStream had it before it could
	// deliver the task elsewhere. Later, another instance may hold it.
	if err == nil && time.Now().Before(t.leaseEnd) {
		if end := sent.Add(t.ackWait); end.After(t.leaseEnd) {
			t.leaseEnd = end
		}
	} else {
		t.renewMin = time.Now().Add(b.tm.retry)
		if b.ctx.Err() == nil {
			b.quiet.Log(b.log, slog.LevelWarn, "renewing a queue task's JetStream lease failed; retrying", "queue", t.q.name, "id", t.id, "err", err)
		}
	}
	b.wake(t)
}
