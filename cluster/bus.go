// Package cluster lets several eventsrv instances share one stream of
// events through NATS JetStream. Publishing stores each event in the stream
// and answers with the ID the stream gave it; each instance feeds its
// subscribers from the stream, in the stream's order, so that every
// subscriber on every instance sees the same events with the same IDs, and a
// subscriber may resume on any instance.
//
// The stream's limits are the history's: HISTORY_SIZE per event name (each
// name is one subject, see subject.go), HISTORY_TTL and HISTORY_MAX_BYTES,
// the oldest discarded first. Each instance still keeps its history in
// memory, fed from the stream (from the stream's start when it starts), so
// that a resume is answered without a round trip to NATS.
package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"eventsrv/history"
	"eventsrv/internal/logthrottle"
)

// Config is how to reach NATS and what the stream keeps.
type Config struct {
	// URLs is NATS_URL, a comma-separated list of servers. Empty with
	// Embed set: the embedded server.
	URLs string
	// CredsFile, CAFile, CertFile and KeyFile secure the connection.
	CredsFile, CAFile, CertFile, KeyFile string
	// Embed is a directory: run a JetStream server in the process, with
	// its file store there.
	Embed string
	// Stream is the stream's name, also the prefix of its subjects.
	Stream   string
	Replicas int
	// PublishTimeout bounds the wait for JetStream's acknowledgement.
	PublishTimeout time.Duration
	// DuplicateWindow is how long an Idempotency-Key is remembered.
	DuplicateWindow time.Duration
	// Limits are the history's limits, which the stream carries.
	Limits history.Limits
	Log    *slog.Logger
	// Metrics, when set, observes publish latency.
	Metrics Metrics

	// reportEvery is the feed reports' interval while the feed moves;
	// zero is reportMoving (a test makes it long, to see the reports by
	// count alone).
	reportEvery time.Duration
	// livePending, when set, bounds the live messages waiting for the feed
	// (NATS's default is 512k): a test makes it small, to drop some.
	livePending int
}

// Metrics is what the bus reports besides its Stats.
type Metrics interface {
	NATSPublished(d time.Duration)
}

// Hub is the broadcast hub as the bus feeds it (broadcast.Hub with
// Options.Fed).
type Hub interface {
	SetEpoch(epoch uint64)
	Deliver(id history.ID, event string, data json.RawMessage)
	Skip(id history.ID)
	Fed() history.ID
	AwaitFed(ctx context.Context, id history.ID) bool
}

// Unavailable is a publish error after which the publisher should try
// again later or on another instance. Advice is its wire message.
type Unavailable struct {
	advice    string
	err       error
	notStored bool
}

func (e *Unavailable) Error() string {
	if e.err == nil {
		return e.advice
	}
	return e.advice + ": " + e.err.Error()
}
func (e *Unavailable) Unwrap() error  { return e.err }
func (e *Unavailable) Advice() string { return e.advice + "; publish again in a moment" }

// NotStored reports whether the event was certainly not stored: no server
// of the stream answered it ("no responders"), so sending it again cannot
// store it twice. POST /events sends a batch's failed tail again when every
// event of it is NotStored.
func (e *Unavailable) NotStored() bool { return e.notStored }

func unavailable(advice string, err error) error { return &Unavailable{advice: advice, err: err} }

// Timings of the feed's catch-up consumer (feed.go): a pull request lasts
// pullExpiry, and the server sends a heartbeat every pullHeartbeat while it
// has nothing; two missed heartbeats make the ordered consumer recreate
// itself (on another node if its node is gone), so a lost consumer stalls
// the catch-up for about 2×pullHeartbeat plus the time to create a new one.
const (
	pullExpiry    = 5 * time.Second
	pullHeartbeat = time.Second
	// watchInterval is how often the stream's state is read: its epoch
	// (a stream created anew restarts the feed), the feed's lag, and
	// readiness.
	watchInterval = time.Second
)

// Bus publishes to the stream and feeds a hub from it. Create it with Open.
type Bus struct {
	cfg    Config
	hub    Hub
	log    *slog.Logger
	quiet  *logthrottle.Limiter
	nc     *nats.Conn
	js     jetstream.JetStream
	embed  *embedded
	cancel context.CancelFunc
	done   chan struct{}

	epoch    atomic.Uint64 // of the stream being followed; 0 until known
	lastSeq  atomic.Uint64 // the stream's last sequence, as last read
	acked    atomic.Uint64 // the highest sequence this instance was acknowledged
	notReady atomic.Pointer[string]
	id       string // this instance, in its feed reports
	peers    *peers // the other instances' feeds
	// caughtUp is set once the feed has reached the stream's end: a
	// feed still reading the stream's history (a new instance) holds no
	// publisher, or scaling out would stall every publish.
	caughtUp atomic.Bool
	closing  atomic.Bool
	noAtomic atomic.Bool // the stream refused an atomic batch
	// reported is the sequence of the last feed report; progressed wakes
	// the reporter once the feed is step past it (peers.go).
	reported   atomic.Uint64
	step       uint64
	progressed chan struct{}

	closeOnce sync.Once
	// suspect asks the follow loop to read the stream's state now: its
	// feed's consumer was deleted, which is what deleting the stream does.
	suspect chan struct{}
}

// Open connects to NATS (or starts the embedded server) and starts feeding
// hub. It returns at once: a NATS that cannot be reached yet is retried
// in the background, while Ready says why the bus is not ready.
func Open(cfg Config, hub Hub) (*Bus, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{cfg: cfg, hub: hub, log: cfg.Log, quiet: logthrottle.New(5, time.Second), done: make(chan struct{}),
		suspect: make(chan struct{}, 1), id: nuid.Next(), peers: newPeers(), progressed: make(chan struct{}, 1)}
	b.step = b.reportStep()
	b.setNotReady("connecting to NATS")
	opts := []nats.Option{
		nats.Name("eventsrv"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(250 * time.Millisecond),
		// No buffering while disconnected: a publish fails at once rather
		// than being sent later, after its POST was answered 503.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if b.closing.Load() {
				return
			}
			b.setNotReady("disconnected from NATS")
			b.log.Warn("NATS connection lost; reconnecting", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("NATS connection back", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) && sub != nil && strings.HasPrefix(sub.Subject, livePrefix(cfg.Stream)) {
				// feed.go: the gap is caught up from the stream.
				b.quiet.Log(b.log, slog.LevelWarn, "the feed fell behind the live messages and dropped some; it reads them from the NATS stream")
				return
			}
			b.quiet.Log(b.log, slog.LevelWarn, "NATS reported an error", "err", err)
		}),
	}
	url := cfg.URLs
	if cfg.Embed != "" {
		e, err := startEmbedded(cfg.Embed, cfg.Log)
		if err != nil {
			return nil, err
		}
		b.embed = e
		opts = append(opts, nats.InProcessServer(e.srv))
		url = ""
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.CAFile != "" || cfg.CertFile != "" {
		opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
		if cfg.CAFile != "" {
			opts = append(opts, nats.RootCAs(cfg.CAFile))
		}
		if cfg.CertFile != "" {
			opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.embed.shutdown()
		return nil, fmt.Errorf("NATS_URL: %w", err)
	}
	b.nc = nc
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		b.embed.shutdown()
		return nil, err
	}
	b.js = js
	if _, err := b.listenPeers(); err != nil {
		nc.Close()
		b.embed.shutdown()
		return nil, fmt.Errorf("subscribe to the instances' feed reports: %w", err)
	}
	// Without a catch-up consumer, which would be deleted with it, this is
	// how a follow learns at once that its stream was deleted.
	if _, err := nc.Subscribe(streamDeletedSubject(cfg.Stream), func(*nats.Msg) { b.streamGone() }); err != nil {
		nc.Close()
		b.embed.shutdown()
		return nil, fmt.Errorf("subscribe to JetStream's stream advisories: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go b.run(ctx)
	return b, nil
}

func (b *Bus) setNotReady(reason string) { b.notReady.Store(&reason) }

// Ready returns nil when the bus is connected and follows its stream, or
// what is wrong.
func (b *Bus) Ready() error {
	if r := b.notReady.Load(); r != nil {
		return errors.New(*r)
	}
	return nil
}

// Connected reports whether the NATS connection is up, for metrics.
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// Lag is how many events of the stream the hub has not been fed yet.
func (b *Bus) Lag() uint64 {
	fed := b.hub.Fed()
	last := b.lastSeq.Load()
	if fed.Epoch != b.epoch.Load() || fed.Seq >= last {
		return 0
	}
	return last - fed.Seq
}

// Publish stores an event in the stream and returns its ID once JetStream
// has acknowledged it.
func (b *Bus) Publish(event string, data json.RawMessage) (string, error) {
	id, _, err := b.PublishOnce("", event, data)
	return id, err
}

// PublishOnce is Publish with an idempotency key (none when empty): within
// DuplicateWindow, a second publish with the same key, to any instance, is
// not stored again and answers the first one's ID, with duplicate true,
// whatever its event and data.
func (b *Bus) PublishOnce(key, event string, data json.RawMessage) (id string, duplicate bool, err error) {
	wait, err := b.publish(key, event, data, nil)
	if err != nil {
		return "", false, err
	}
	return wait()
}

// batchOpts are the options of a batch's publishes: no retry after "no
// responders", which nats.go would send after the batch's later events,
// out of the batch's order; and a full window waits rather than fails.
func (b *Bus) batchOpts() []jetstream.PublishOpt {
	return []jetstream.PublishOpt{jetstream.WithRetryAttempts(0), jetstream.WithStallWait(b.cfg.PublishTimeout)}
}

// StartPublish is PublishOnce without the wait: it sends the event to
// JetStream and returns at once, and wait waits for the acknowledgement.
// Events started one after another, on this instance's one connection,
// are stored in that order unless one fails, so a batch (POST /events) has
// all its events in flight at once. A failed one is not sent again by
// nats.go (it would come after the later ones): wait returns its error.
func (b *Bus) StartPublish(key, event string, data json.RawMessage) (wait func() (id string, duplicate bool, err error), err error) {
	return b.publish(key, event, data, b.batchOpts())
}

// publish sends an event and returns how to wait for its acknowledgement.
func (b *Bus) publish(key, event string, data json.RawMessage, extra []jetstream.PublishOpt) (func() (string, bool, error), error) {
	if b.closing.Load() {
		return nil, unavailable("this instance is shutting down", nil)
	}
	epoch := b.epoch.Load()
	if epoch == 0 || !b.nc.IsConnected() {
		return nil, unavailable("the event was not stored: this instance is not connected to NATS JetStream", b.Ready())
	}
	msg := &nats.Msg{Subject: Subject(b.cfg.Stream, event), Data: data}
	opts := append([]jetstream.PublishOpt{jetstream.WithExpectStream(b.cfg.Stream)}, extra...)
	if key != "" {
		opts = append(opts, jetstream.WithMsgID(key))
	}
	start := time.Now()
	f, err := b.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return nil, unavailable("the event was not stored: NATS did not take it", err)
	}
	// nats.go fails the future after NATS_PUBLISH_TIMEOUT; the deadline
	// is a guard against its not doing so.
	deadline := start.Add(b.cfg.PublishTimeout + 100*time.Millisecond)
	return func() (string, bool, error) { return b.await(f, epoch, start, deadline) }, nil
}

// await waits for a publish's acknowledgement and makes its ID.
func (b *Bus) await(f jetstream.PubAckFuture, epoch uint64, start, deadline time.Time) (string, bool, error) {
	ack, err := b.awaitAck(f, deadline)
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		return "", false, &Unavailable{advice: "the event was not stored: no NATS server of the stream took it (is the stream starting, or moving?)", err: err, notStored: true}
	}
	if ack == nil {
		return "", false, b.noAck(err)
	}
	if b.cfg.Metrics != nil {
		b.cfg.Metrics.NATSPublished(time.Since(start))
	}
	if b.epoch.Load() != epoch {
		return "", false, errEpochChanged
	}
	b.noteAcked(ack.Sequence)
	b.keepUp(epoch, ack.Sequence, deadline)
	return history.ID{Epoch: epoch, Seq: ack.Sequence}.String(), ack.Duplicate, nil
}

// keepUp holds a publish acknowledged with seq, until deadline at the
// latest, while this instance's feed, or another live instance's, is more
// than half of HISTORY_SIZE behind it. Publishers must not outrun the
// feeds: JetStream acknowledges whatever it stores, and the stream keeps
// HISTORY_SIZE events per name, so a feed more than that behind finds
// events dropped before it read them, and its subscribers are closed with
// 4005. That happened at full load on 2 cores, when the load tool read so
// fast that the instances' flushers never waited and the feeds, which do
// the fan-out, fell behind. A single node has this backpressure by
// construction: a POST does the fan-out. The answer is OK all the same
// (the event is stored), at the deadline too. The other instances' feeds
// are known from their reports (peers.go).
func (b *Bus) keepUp(epoch, seq uint64, deadline time.Time) {
	slack := uint64(max(b.cfg.Limits.Size, 0) / 2)
	if seq <= slack {
		return
	}
	target := seq - slack
	own := b.caughtUp.Load()
	if fed := b.hub.Fed(); (!own || fed.Epoch != epoch || fed.Seq >= target) && !b.peers.anyBehind(epoch, target) {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if (!own || b.hub.AwaitFed(ctx, history.ID{Epoch: epoch, Seq: target})) && b.peers.await(ctx, epoch, target) {
		return
	}
	b.quiet.Log(b.log, slog.LevelWarn, "answered a publish while a feed is far behind the stream (this instance's or another's)",
		"seq", seq, "fed", b.hub.Fed().Seq)
}

// errEpochChanged answers a publish acknowledged while the stream was
// deleted, and perhaps created anew: which stream stored it is unknown,
// and so is its ID. A retry with the same Idempotency-Key learns it.
var errEpochChanged = unavailable("the event may be stored, but the stream was created anew meanwhile, so its ID is unknown; publish again with the same Idempotency-Key", nil)

// awaitAck waits for a publish's acknowledgement, or its error, until
// deadline at the latest: nats.go fails the future after
// NATS_PUBLISH_TIMEOUT, and the deadline is a guard against its not doing
// so.
func (b *Bus) awaitAck(f jetstream.PubAckFuture, deadline time.Time) (*jetstream.PubAck, error) {
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	default:
	}
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-timeout.C:
		return nil, nil
	}
}

// noAck is the error of a publish that was not acknowledged in time: it
// may be stored or not.
func (b *Bus) noAck(err error) error {
	return unavailable(fmt.Sprintf("the event may not be stored: JetStream did not acknowledge it within NATS_PUBLISH_TIMEOUT (%s)", b.cfg.PublishTimeout), err)
}

// noteAcked records that this instance was acknowledged seq, for Drain.
func (b *Bus) noteAcked(seq uint64) {
	for {
		acked := b.acked.Load()
		if seq <= acked || b.acked.CompareAndSwap(acked, seq) {
			return
		}
	}
}

// run follows the stream until Close, starting over after every failure.
func (b *Bus) run(ctx context.Context) {
	defer close(b.done)
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		b.reportFeed(ctx)
	}()
	defer func() { <-reported }()
	for ctx.Err() == nil {
		err := b.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		b.setNotReady("not following the stream: " + err.Error())
		b.quiet.Log(b.log, slog.LevelWarn, "following the NATS stream failed; retrying", "stream", b.cfg.Stream, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// errNewEpoch ends a follow whose stream was created anew.
var errNewEpoch = errors.New("the stream was created anew")

// follow makes sure the stream exists, feeds the hub from it from where the
// hub is (feed.go: live, and a catch-up consumer after a gap), and watches
// it until something goes wrong.
func (b *Bus) follow(ctx context.Context) error {
	stream, err := b.ensureStream(ctx)
	if err != nil {
		return err
	}
	info := stream.CachedInfo()
	epoch := uint64(info.Created.UnixMilli())
	b.hub.SetEpoch(epoch)
	b.epoch.Store(epoch)
	b.lastSeq.Store(info.State.LastSeq)
	fed := b.hub.Fed().Seq
	if fed >= info.State.LastSeq {
		b.caughtUp.Store(true)
	}
	destination := info.Config.RePublish.Destination
	f := newFeed(b, epoch, fed, destination)
	// Live first, so that nothing stored from now on falls between it
	// and the catch-up consumer.
	sub, err := b.nc.Subscribe(destination, f.live)
	if err != nil {
		return fmt.Errorf("subscribe to the stream's live messages: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if n := b.cfg.livePending; n > 0 {
		_ = sub.SetPendingLimits(n, -1)
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = b.nc.FlushWithContext(fctx)
	cancel()
	if err != nil {
		return fmt.Errorf("subscribe to the stream's live messages: %w", err)
	}
	c := &catchUp{b: b, f: f, stream: stream}
	defer c.stop()
	if fed < info.State.LastSeq {
		f.want("the feed starts behind the stream")
	}
	if reason := quorumLost(info.Cluster); reason != "" {
		b.setNotReady(reason)
	} else {
		b.notReady.Store(nil)
	}
	b.log.Info("following the NATS stream", "stream", b.cfg.Stream, "epoch", epoch,
		"first", info.State.FirstSeq, "last", info.State.LastSeq)
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	stuck, since := uint64(math.MaxUint64), time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.changed:
			if err := c.reconcile(ctx); err != nil {
				return err
			}
			continue
		case <-t.C:
		case <-b.suspect:
		}
		if err := b.watch(ctx, stream, epoch); err != nil {
			return err
		}
		// A gap with nothing after it: the stream has more than the feed,
		// which has not moved for a watch interval (timed, not counted in
		// looks: a suspicion looks again at once).
		switch pos, catching := f.position(); {
		case pos != stuck:
			stuck, since = pos, time.Now()
		case !catching && pos < b.lastSeq.Load() && time.Since(since) >= watchInterval:
			f.want("the stream is ahead of the feed, which has not moved for " + watchInterval.String())
		}
	}
}

// catchUp runs a follow's catch-up consumer when its feed wants it.
type catchUp struct {
	b      *Bus
	f      *feed
	stream jetstream.Stream
	cc     jetstream.ConsumeContext
}

// reconcile starts or stops the consumer as the feed wants.
func (c *catchUp) reconcile(ctx context.Context) error {
	_, want := c.f.position()
	switch {
	case want && c.cc == nil:
		return c.start(ctx)
	case !want && c.cc != nil:
		c.stop()
	}
	return nil
}

func (c *catchUp) start(ctx context.Context) error {
	b := c.b
	gen, fed := c.f.nextGen()
	cons, err := c.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: fed + 1,
		// A stopped consumer is left to the server to remove.
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("create the feed's consumer: %w", err)
	}
	c.cc, err = cons.Consume(func(m jetstream.Msg) { c.f.caughtUpFrom(gen, m) },
		jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			b.quiet.Log(b.log, slog.LevelWarn, "NATS stream feed interrupted; it resumes by itself", "err", err)
			if errors.Is(err, jetstream.ErrConsumerDeleted) {
				b.streamGone()
			}
		}))
	if err != nil {
		return fmt.Errorf("consume the stream: %w", err)
	}
	return nil
}

func (c *catchUp) stop() {
	if c.cc != nil {
		c.cc.Stop()
		c.cc = nil
		c.f.nextGen()
	}
}

// streamDeletedSubject is JetStream's advisory of stream's deletion.
func streamDeletedSubject(stream string) string { return "$JS.EVENT.ADVISORY.STREAM.DELETED." + stream }

// streamGone is called when the stream may have been deleted (its
// consumer was, or JetStream said so): until the stream's state is read
// again, no answer may carry this epoch, for a stream created anew numbers
// from 1 again.
func (b *Bus) streamGone() {
	b.epoch.Store(0)
	b.setNotReady("the stream or the feed's consumer was deleted: checking the stream")
	signal(b.suspect)
}

// watch reads the stream's state: a new epoch ends the follow; a stream
// that cannot be read makes the bus not ready, and ready again once it
// can be.
func (b *Bus) watch(ctx context.Context, stream jetstream.Stream, epoch uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := stream.Info(ctx)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return errNewEpoch
	case err != nil:
		if !b.nc.IsConnected() {
			b.setNotReady("disconnected from NATS")
		} else {
			b.setNotReady("the NATS stream cannot be read (no quorum?): " + err.Error())
		}
		return nil
	case uint64(info.Created.UnixMilli()) != epoch:
		return errNewEpoch
	}
	b.lastSeq.Store(info.State.LastSeq)
	if reason := quorumLost(info.Cluster); reason != "" {
		b.setNotReady(reason)
		return nil
	}
	b.epoch.Store(epoch) // back, after a consumer deleted for another reason
	b.notReady.Store(nil)
	return nil
}

// replicaSeenWithin is how lately a replica's leader must have heard from
// it: a raft leader sends a heartbeat every second.
const replicaSeenWithin = 5 * time.Second

// quorumLost says why a replicated stream cannot take publishes, or "":
// no leader, or fewer replicas online than a majority. (A node that has
// lost its peers still answers stream info from its own state, for up to
// 10 s before its leader steps down.) A replica is online when the leader
// heard from it lately: Active is the time since, and 0 when it never did
// (nats-server reports an unseen peer so), which is not online. Offline is
// only set when the server learns of a peer's shutdown, which may never
// come.
func quorumLost(c *jetstream.ClusterInfo) string {
	if c == nil {
		return "" // not clustered
	}
	if c.Leader == "" {
		return "the NATS stream has no leader (a majority of its replicas is unreachable?)"
	}
	online := 1 // the leader
	for _, r := range c.Replicas {
		if !r.Offline && r.Active > 0 && r.Active < replicaSeenWithin {
			online++
		}
	}
	if total := len(c.Replicas) + 1; online <= total/2 {
		return fmt.Sprintf("the NATS stream has lost its quorum: %d of %d replicas online", online, total)
	}
	return ""
}

// ensureStream creates the stream, or brings an existing one's limits to
// the configuration.
func (b *Bus) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l := b.cfg.Limits
	cfg := jetstream.StreamConfig{
		Name:        b.cfg.Stream,
		Description: "eventsrv events; subjects are <stream>.<encoded event name>",
		Subjects:    []string{b.cfg.Stream + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    max(b.cfg.Replicas, 1),
		// A name's last event is always stored, to be delivered: with
		// HISTORY_SIZE 0 the history keeps none, the stream one.
		MaxMsgsPerSubject: int64(max(l.Size, 1)),
		MaxAge:            l.TTL,
		MaxBytes:          -1,
		MaxMsgs:           -1,
		Duplicates:        b.cfg.DuplicateWindow,
		// POST /events stores a batch as one (PublishAtomic).
		AllowAtomicPublish: true,
		// The feeds' live source (feed.go).
		RePublish: &jetstream.RePublish{Source: b.cfg.Stream + ".>", Destination: newLiveDestination(b.cfg.Stream)},
	}
	if l.MaxBytes > 0 {
		cfg.MaxBytes = int64(min(l.MaxBytes, math.MaxInt64))
	}
	// Look first: instances that start together would otherwise all
	// create the stream at once, and JetStream may leave identical
	// creates unanswered until they time out. One that loses the race to
	// create it (another instance's has another live subject) looks again.
	s, err := LookStreamUp(ctx, b.js, b.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		create, cancelCreate := context.WithTimeout(ctx, 2*time.Second)
		defer cancelCreate()
		if s, err = b.js.CreateStream(create, cfg); err == nil {
			b.log.Info("NATS stream created", "stream", b.cfg.Stream, "replicas", cfg.Replicas)
			return s, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("create stream %s: %w", b.cfg.Stream, err)
		}
		s, err = LookStreamUp(ctx, b.js, b.cfg.Stream)
	}
	switch {
	case err == nil && sameLimits(s.CachedInfo().Config, cfg):
		return s, nil
	case err == nil:
		if have := s.CachedInfo().Config.RePublish; liveRePublish(have, cfg.RePublish) {
			cfg.RePublish = have // its subscribers' subject
		}
		if s, err = b.js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("update stream %s to the HISTORY_ settings: %w", b.cfg.Stream, err)
		}
		b.log.Info("NATS stream limits updated", "stream", b.cfg.Stream)
		return s, nil
	default:
		return nil, fmt.Errorf("look stream %s up: %w", b.cfg.Stream, err)
	}
}

// sameLimits reports whether a stream's configuration has what eventsrv
// sets.
func sameLimits(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.MaxMsgsPerSubject == want.MaxMsgsPerSubject &&
		have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes && have.Replicas == want.Replicas &&
		have.Duplicates == want.Duplicates && have.Discard == want.Discard && have.MaxMsgs == want.MaxMsgs &&
		have.AllowAtomicPublish == want.AllowAtomicPublish && liveRePublish(have.RePublish, want.RePublish)
}

// liveRePublish reports whether a stream's RePublish is the feeds' live
// source, as want is, whatever its nonce.
func liveRePublish(have, want *jetstream.RePublish) bool {
	return have != nil && have.Source == want.Source && !have.HeadersOnly &&
		strings.HasPrefix(have.Destination, livePrefix(strings.TrimSuffix(want.Source, ".>"))) &&
		strings.HasSuffix(have.Destination, ".>") && strings.Count(have.Destination, ".") == strings.Count(want.Destination, ".")
}

// Drain waits until the hub has been fed every event this instance was
// acknowledged, so that its subscribers get them before they are closed;
// it gives up when ctx ends.
func (b *Bus) Drain(ctx context.Context) error {
	b.closing.Store(true)
	if !b.hub.AwaitFed(ctx, history.ID{Epoch: b.epoch.Load(), Seq: b.acked.Load()}) {
		return ctx.Err()
	}
	return nil
}

// Close stops the feed and closes the connection (and the embedded
// server). It may be called more than once.
func (b *Bus) Close() {
	b.closeOnce.Do(func() {
		b.closing.Store(true)
		b.cancel()
		<-b.done
		b.nc.Close()
		b.embed.shutdown()
	})
}
