package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"eventsrv/cluster"
)

// The JetStream baseline (-jetstream): what eventsrv's cluster mode is built
// on, measured without eventsrv. It publishes the same payloads to a
// scratch stream with the limits eventsrv gives its own (cluster/bus.go,
// with the default HISTORY_ settings), with nats.go's jetstream
// PublishAsync, as the bus does, but without HTTP, authentication or the
// wait of one request for its own acknowledgement.

// Scratch stream settings: eventsrv's defaults.
const (
	jsStreamPrefix       = "BENCH_"
	jsMaxMsgsPerSubject  = 1000             // HISTORY_SIZE
	jsMaxAge             = 5 * time.Minute  // HISTORY_TTL
	jsMaxBytes           = 64 << 20         // HISTORY_MAX_BYTES
	jsDuplicates         = 2 * time.Minute  // NATS_DUPLICATE_WINDOW
	jsSetupTimeout       = 10 * time.Second // creating and deleting the stream
	jsCallbackGrace      = 2 * time.Second  // for the last ack callbacks after PublishAsyncComplete
	compareSettle        = time.Second      // between the runs of -compare
	maxJSConsumerSamples = 1 << 20          // latency samples kept per consumer
)

// jetstreamReport is what the baseline did.
type jetstreamReport struct {
	Mode        string `json:"mode"`
	Servers     string `json:"servers"`
	Stream      string `json:"stream"`
	Replicas    int    `json:"replicas"`
	Connections int    `json:"connections"`
	Waiters     int    `json:"waiters,omitempty"`
	MaxPending  int    `json:"max_pending"`
	Events      int    `json:"events"`
	SizeBytes   int    `json:"size_bytes"`
	// Acked publishes were acknowledged by JetStream; Failed were refused
	// at once or answered with an error or not within -timeout.
	Acked           int64          `json:"acked"`
	Failed          int64          `json:"failed"`
	NotAttempted    int            `json:"not_attempted"`
	PublishFailures map[string]int `json:"publish_failures,omitempty"`
	// Seconds runs from the first publish to the last acknowledgement.
	Seconds       float64       `json:"seconds"`
	AcksPerSecond float64       `json:"acks_per_second"`
	Latency       latencyReport `json:"ack_latency_ms"`
	// Consumed is, per ordered consumer, the messages it was fed, and
	// Skipped those the stream's limits (1000 per subject) discarded
	// before it got to them, as an eventsrv feed that falls that far
	// behind would; Reached is whether it got to the stream's last
	// message. ConsumerLatency is from each publish to its arrival, over
	// all of them.
	Consumed        []int64        `json:"consumed,omitempty"`
	Skipped         []int64        `json:"skipped,omitempty"`
	Reached         []bool         `json:"reached,omitempty"`
	StreamLastSeq   uint64         `json:"stream_last_seq,omitempty"`
	ConsumerLatency *latencyReport `json:"consumer_latency_ms,omitempty"`
	Server          *serverReport  `json:"server,omitempty"`
	Error           string         `json:"error,omitempty"`
	Interrupted     bool           `json:"interrupted,omitempty"`
	Pass            bool           `json:"pass"`
	Failures        []string       `json:"failures,omitempty"`
}

// jsPublisher is one connection publishing asynchronously. Its counts are
// written by its own goroutine and by nats.go's ack and timeout callbacks,
// hence the lock; it is taken once per message, next to the ack's own.
type jsPublisher struct {
	index int
	nc    *nats.Conn
	js    jetstream.JetStream

	mu        sync.Mutex
	attempts  int
	acked     int64
	failed    int64
	failures  map[string]int
	latencies []int64
	firstSend int64
	lastAck   int64
}

func (p *jsPublisher) fail(kind string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed++
	if _, known := p.failures[kind]; !known && len(p.failures) >= maxFailureKinds {
		kind = otherFailures
	}
	p.failures[kind]++
}

// onAck is nats.go's callback for an acknowledgement: the latency is from
// the send time in the payload.
func (p *jsPublisher) onAck(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
	now := time.Now().UnixNano()
	s := scanner{b: m.Data}
	pl, err := s.payload()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.acked++
	p.lastAck = max(p.lastAck, now)
	if err == nil {
		p.latencies = append(p.latencies, now-pl.sent)
	}
}

func (p *jsPublisher) onErr(_ jetstream.JetStream, _ *nats.Msg, err error) {
	p.fail("acknowledgement: " + err.Error())
}

func (p *jsPublisher) settled() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked + p.failed
}

// jsConsumer is one ordered consumer fed from the scratch stream.
type jsConsumer struct {
	nc       *nats.Conn
	cc       jetstream.ConsumeContext
	received atomic.Int64
	lastSeq  atomic.Uint64 // stream sequence of the latest message

	mu        sync.Mutex
	latencies []int64
}

// runJetStream runs the baseline and reports it.
func runJetStream(ctx context.Context, cfg config) *jetstreamReport {
	rep := &jetstreamReport{
		Mode: modeJetStream, Servers: cfg.jetstream, Replicas: cfg.replicas,
		Connections: cfg.jsConns, Waiters: cfg.jsWaiters, MaxPending: cfg.jsMaxPending,
		Events: cfg.events, SizeBytes: cfg.size, PublishFailures: map[string]int{},
	}
	if err := baseline(ctx, cfg, rep); err != nil {
		rep.Error = err.Error()
	}
	rep.Interrupted = ctx.Err() != nil
	rep.judge()
	return rep
}

// baseline creates the scratch stream, publishes, waits for every
// acknowledgement (and the consumers), and deletes the stream.
func baseline(ctx context.Context, cfg config, rep *jetstreamReport) error {
	admin, err := nats.Connect(cfg.jetstream, nats.Name("eventsrv-bench admin"))
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", cfg.jetstream, err)
	}
	defer admin.Close()
	js, err := jetstream.New(admin)
	if err != nil {
		return err
	}
	rep.Stream = fmt.Sprintf("%s%d_%d", jsStreamPrefix, os.Getpid(), time.Now().UnixNano())
	setup, cancel := context.WithTimeout(ctx, jsSetupTimeout)
	_, err = js.CreateStream(setup, scratchStream(rep.Stream, cfg.replicas))
	cancel()
	if err != nil {
		return fmt.Errorf("creating the scratch stream: %w", err)
	}
	defer func() {
		// Deleted even after an interrupt: it is scratch.
		del, cancel := context.WithTimeout(context.Background(), jsSetupTimeout)
		defer cancel()
		if err := js.DeleteStream(del, rep.Stream); err != nil {
			rep.Failures = append(rep.Failures, "deleting the scratch stream "+rep.Stream+": "+err.Error())
		}
	}()

	consumers, err := startConsumers(ctx, cfg, rep.Stream)
	defer stopConsumers(consumers)
	if err != nil {
		return err
	}
	pubs, err := connectPublishers(cfg, rep.Stream)
	defer func() {
		for _, p := range pubs {
			p.nc.Close()
		}
	}()
	if err != nil {
		return err
	}
	before, beforeErr := sampleIfPID(cfg.pids)
	publishJetStream(ctx, cfg, pubs, cluster.Subject(rep.Stream, cfg.event), rep.Stream)
	if len(consumers) > 0 {
		info, err := js.Stream(ctx, rep.Stream)
		if err != nil {
			return fmt.Errorf("reading the scratch stream: %w", err)
		}
		rep.StreamLastSeq = info.CachedInfo().State.LastSeq
		waitConsumers(ctx, consumers, rep.StreamLastSeq, cfg.timeout)
	}
	after, afterErr := sampleIfPID(cfg.pids)
	stopConsumers(consumers)

	rep.merge(cfg, pubs, consumers)
	if len(cfg.pids) > 0 {
		rep.Server = newServerReport(cfg.pids, before, after, errors.Join(beforeErr, afterErr), 0, rep.Acked)
	}
	return nil
}

// scratchStream is eventsrv's stream configuration (cluster/bus.go) with
// the default history limits, under another name.
func scratchStream(name string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              name,
		Description:       "eventsrv-bench scratch stream, deleted after the run",
		Subjects:          []string{name + ".>"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		MaxMsgsPerSubject: jsMaxMsgsPerSubject,
		MaxAge:            jsMaxAge,
		MaxBytes:          jsMaxBytes,
		MaxMsgs:           -1,
		Duplicates:        jsDuplicates,
	}
}

// connectPublishers opens one connection per publisher, each with its own
// asynchronous publishing context, as each eventsrv instance has.
func connectPublishers(cfg config, stream string) ([]*jsPublisher, error) {
	var pubs []*jsPublisher
	for i := range cfg.jsConns {
		nc, err := nats.Connect(cfg.jetstream, nats.Name(fmt.Sprintf("eventsrv-bench publisher %d", i)))
		if err != nil {
			return pubs, fmt.Errorf("publisher %d: connecting: %w", i, err)
		}
		p := &jsPublisher{index: i, nc: nc, failures: map[string]int{}, latencies: make([]int64, 0, cfg.events/cfg.jsConns+1)}
		pubs = append(pubs, p)
		p.js, err = jetstream.New(nc,
			jetstream.WithPublishAsyncMaxPending(cfg.jsMaxPending),
			jetstream.WithPublishAsyncTimeout(cfg.timeout),
			jetstream.WithPublishAsyncAckHandler(p.onAck),
			jetstream.WithPublishAsyncErrHandler(p.onErr))
		if err != nil {
			return pubs, err
		}
	}
	return pubs, nil
}

// publishJetStream publishes cfg.events events over the publishers, each
// as fast as its window of unacknowledged publishes allows, and waits for
// every acknowledgement (or error), bounded by -timeout.
func publishJetStream(ctx context.Context, cfg config, pubs []*jsPublisher, subject, stream string) {
	work := &counter{}
	work.remaining.Store(int64(cfg.events))
	var wg sync.WaitGroup
	for i, p := range pubs {
		if cfg.jsWaiters == 0 {
			wg.Go(func() { p.run(ctx, cfg, work, subject, stream, false) })
			continue
		}
		// -js-waiters: that many goroutines, spread over the
		// connections, each waiting for its ack as a POST does.
		for w := i; w < cfg.jsWaiters; w += len(pubs) {
			wg.Go(func() { p.run(ctx, cfg, work, subject, stream, true) })
		}
	}
	wg.Wait()
	deadline := time.NewTimer(cfg.timeout)
	defer deadline.Stop()
	for _, p := range pubs {
		select {
		case <-p.js.PublishAsyncComplete():
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
	// The done channel may close just before the last callback has run.
	grace := time.Now().Add(jsCallbackGrace)
	for _, p := range pubs {
		for p.settled() < int64(p.published()) && time.Now().Before(grace) {
			time.Sleep(time.Millisecond)
		}
	}
}

// run publishes this connection's share.
// run publishes this connection's share, or with wait a share of it, one
// publish at a time.
func (p *jsPublisher) run(ctx context.Context, cfg config, work *counter, subject, stream string, wait bool) {
	// eventsrv expects the stream (Nats-Expected-Stream) on every publish.
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(stream), jetstream.WithStallWait(cfg.timeout)}
	for work.next(ctx) {
		p.mu.Lock()
		seq := p.attempts
		p.attempts++
		sent := time.Now().UnixNano()
		if p.firstSend == 0 {
			p.firstSend = sent
		}
		p.mu.Unlock()
		data := appendPayload(make([]byte, 0, cfg.size+64), payload{pub: p.index, seq: seq, sent: sent}, cfg.size)
		f, err := p.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data}, opts...)
		if err != nil {
			p.fail("publish: " + err.Error())
			continue
		}
		if wait {
			// The callbacks count the outcome; this only waits for it.
			select {
			case <-f.Ok():
			case <-f.Err():
			case <-ctx.Done():
				return
			}
		}
	}
}

func (p *jsPublisher) published() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts
}

// startConsumers starts cfg.jsConsumers ordered consumers of the stream,
// each on its own connection, from its start.
func startConsumers(ctx context.Context, cfg config, stream string) ([]*jsConsumer, error) {
	var cs []*jsConsumer
	for i := range cfg.jsConsumers {
		nc, err := nats.Connect(cfg.jetstream, nats.Name(fmt.Sprintf("eventsrv-bench consumer %d", i)))
		if err != nil {
			return cs, fmt.Errorf("consumer %d: connecting: %w", i, err)
		}
		c := &jsConsumer{nc: nc, latencies: make([]int64, 0, min(cfg.events, maxJSConsumerSamples))}
		cs = append(cs, c)
		js, err := jetstream.New(nc)
		if err != nil {
			return cs, err
		}
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return cs, fmt.Errorf("consumer %d: %w", i, err)
		}
		cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
		if err != nil {
			return cs, fmt.Errorf("consumer %d: %w", i, err)
		}
		c.cc, err = cons.Consume(c.handle)
		if err != nil {
			return cs, fmt.Errorf("consumer %d: %w", i, err)
		}
	}
	return cs, nil
}

func (c *jsConsumer) handle(m jetstream.Msg) {
	now := time.Now().UnixNano()
	s := scanner{b: m.Data()}
	if pl, err := s.payload(); err == nil {
		c.mu.Lock()
		if len(c.latencies) < cap(c.latencies) {
			c.latencies = append(c.latencies, now-pl.sent)
		}
		c.mu.Unlock()
	}
	if md, err := m.Metadata(); err == nil {
		c.lastSeq.Store(md.Sequence.Stream)
	}
	c.received.Add(1)
}

// waitConsumers waits until every consumer has been fed the stream's last
// message, bounded by timeout.
func waitConsumers(ctx context.Context, cs []*jsConsumer, last uint64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, c := range cs {
		for c.lastSeq.Load() < last && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
	}
}

// stopConsumers stops the consumers (again, harmlessly) and closes their
// connections.
func stopConsumers(cs []*jsConsumer) {
	for _, c := range cs {
		if c.cc != nil {
			c.cc.Stop()
			<-c.cc.Closed()
		}
		c.nc.Close()
	}
}

// merge totals the publishers and consumers into the report.
func (r *jetstreamReport) merge(cfg config, pubs []*jsPublisher, cs []*jsConsumer) {
	var latencies []int64
	var first, last int64
	attempted := 0
	for _, p := range pubs {
		p.mu.Lock()
		r.Acked += p.acked
		r.Failed += p.failed
		attempted += p.attempts
		for kind, n := range p.failures {
			r.PublishFailures[kind] += n
		}
		latencies = append(latencies, p.latencies...)
		if p.firstSend != 0 && (first == 0 || p.firstSend < first) {
			first = p.firstSend
		}
		last = max(last, p.lastAck)
		p.mu.Unlock()
	}
	r.NotAttempted = cfg.events - attempted
	slices.Sort(latencies)
	r.Latency = newLatencyReport(latencies)
	if last > first && first > 0 {
		r.Seconds = round3(float64(last-first) / 1e9)
		r.AcksPerSecond = perSecond(r.Acked, last-first)
	}
	if len(cs) == 0 {
		return
	}
	var consumed []int64
	for _, c := range cs {
		n := c.received.Load()
		r.Consumed = append(r.Consumed, n)
		r.Skipped = append(r.Skipped, int64(r.StreamLastSeq)-n)
		r.Reached = append(r.Reached, c.lastSeq.Load() >= r.StreamLastSeq)
		c.mu.Lock()
		consumed = append(consumed, c.latencies...)
		c.mu.Unlock()
	}
	slices.Sort(consumed)
	lat := newLatencyReport(consumed)
	r.ConsumerLatency = &lat
}

// judge decides the result: every event published and acknowledged, every
// consumer fed every acknowledged event, nothing else.
func (r *jetstreamReport) judge() {
	fail := func(cond bool, format string, args ...any) {
		if cond {
			r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
		}
	}
	fail(r.Error != "", "%s", r.Error)
	fail(r.Interrupted, "interrupted before the run finished")
	if r.Error == "" {
		fail(r.Failed > 0, "%d publishes failed", r.Failed)
		fail(r.NotAttempted > 0, "%d events never published", r.NotAttempted)
		fail(r.Acked+r.Failed < int64(r.Events-r.NotAttempted), "%d publishes neither acknowledged nor failed within -timeout", int64(r.Events-r.NotAttempted)-r.Acked-r.Failed)
		for i, ok := range r.Reached {
			fail(!ok, "consumer %d did not reach the stream's last message (seq %d) within -timeout", i, r.StreamLastSeq)
		}
	}
	r.Pass = len(r.Failures) == 0
}

func (r *jetstreamReport) failures() []string {
	if r.Pass {
		return nil
	}
	return r.Failures
}

func (r *jetstreamReport) write(w io.Writer, asJSON bool) error {
	if asJSON {
		return writeJSON(w, r)
	}
	var b strings.Builder
	r.writeText(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *jetstreamReport) writeText(b *strings.Builder) {
	line := func(label, format string, args ...any) {
		fmt.Fprintf(b, "%-18s %s\n", label, fmt.Sprintf(format, args...))
	}
	line("jetstream", "%s, scratch stream %s (R%d), %d connections, %d pending at most each", r.Servers, r.Stream, r.Replicas, r.Connections, r.MaxPending)
	how := "PublishAsync, as fast as the window allows"
	if r.Waiters > 0 {
		how = fmt.Sprintf("PublishAsync by %d goroutines, each waiting for its ack (as eventsrv's POSTs do)", r.Waiters)
	}
	line("load", "%d events of ~%d B, %s", r.Events, r.SizeBytes, how)
	line("acknowledged", "%d ok, %d failed, %d not attempted in %.3fs (%.1f/s)", r.Acked, r.Failed, r.NotAttempted, r.Seconds, r.AcksPerSecond)
	for _, kind := range slices.Sorted(maps.Keys(r.PublishFailures)) {
		fmt.Fprintf(b, "  %6d × %s\n", r.PublishFailures[kind], kind)
	}
	lat := r.Latency
	line("ack latency ms", "p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (%d samples)",
		lat.P50, lat.P90, lat.P99, lat.P999, lat.Max, lat.Samples)
	if len(r.Consumed) > 0 {
		line("consumers", "%d ordered consumers fed %v of the stream's %d, skipped %v (discarded by its limits first)",
			len(r.Consumed), r.Consumed, r.StreamLastSeq, r.Skipped)
		c := r.ConsumerLatency
		line("feed latency ms", "p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (%d samples)",
			c.P50, c.P90, c.P99, c.P999, c.Max, c.Samples)
	}
	if r.Server != nil {
		r.Server.writeText(line)
	}
	if r.Pass {
		line("result", "PASS")
		return
	}
	line("result", "FAIL: %s", strings.Join(r.Failures, "; "))
}

// compareReport alternates the baseline with the eventsrv run.
type compareReport struct {
	Mode   string         `json:"mode"`
	Rounds []compareRound `json:"rounds"`
	// MedianRatio is the median over the rounds of eventsrv's publish
	// rate (POSTs answered OK per second) over the baseline's (acks per
	// second).
	MedianRatio float64  `json:"median_ratio"`
	Pass        bool     `json:"pass"`
	Failures    []string `json:"failures,omitempty"`
}

type compareRound struct {
	JetStream *jetstreamReport `json:"jetstream"`
	Eventsrv  *report          `json:"eventsrv"`
	Ratio     float64          `json:"ratio"`
}

// runCompare runs -rounds rounds of the baseline and then the eventsrv
// run, telling stderr how each round went.
func runCompare(ctx context.Context, cfg config, stderr io.Writer) *compareReport {
	rep := &compareReport{Mode: modeCompare}
	var ratios []float64
	for i := range cfg.rounds {
		if ctx.Err() != nil {
			break
		}
		round := compareRound{JetStream: runJetStream(ctx, cfg)}
		pause(ctx, compareSettle)
		round.Eventsrv = runLoad(ctx, cfg)
		if js := round.JetStream.AcksPerSecond; js > 0 {
			round.Ratio = round4(round.Eventsrv.Load.PublishPerSecond / js)
			ratios = append(ratios, round.Ratio)
		}
		fmt.Fprintf(stderr, "round %d: jetstream %.1f acks/s, eventsrv %.1f posts/s, ratio %.4f\n",
			i+1, round.JetStream.AcksPerSecond, round.Eventsrv.Load.PublishPerSecond, round.Ratio)
		for _, f := range round.JetStream.failures() {
			rep.Failures = append(rep.Failures, fmt.Sprintf("round %d jetstream: %s", i+1, f))
		}
		for _, f := range round.Eventsrv.failures() {
			rep.Failures = append(rep.Failures, fmt.Sprintf("round %d eventsrv: %s", i+1, f))
		}
		rep.Rounds = append(rep.Rounds, round)
		if i+1 < cfg.rounds {
			pause(ctx, compareSettle)
		}
	}
	if len(rep.Rounds) < cfg.rounds {
		rep.Failures = append(rep.Failures, "interrupted before the run finished")
	}
	if len(ratios) > 0 {
		slices.Sort(ratios)
		rep.MedianRatio = ratios[len(ratios)/2]
		if len(ratios)%2 == 0 {
			rep.MedianRatio = round4((ratios[len(ratios)/2-1] + ratios[len(ratios)/2]) / 2)
		}
	}
	rep.Pass = len(rep.Failures) == 0
	return rep
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

func (r *compareReport) failures() []string {
	if r.Pass {
		return nil
	}
	return r.Failures
}

func (r *compareReport) write(w io.Writer, asJSON bool) error {
	if asJSON {
		return writeJSON(w, r)
	}
	var b strings.Builder
	for i, round := range r.Rounds {
		fmt.Fprintf(&b, "== round %d of %d: JetStream baseline ==\n", i+1, len(r.Rounds))
		round.JetStream.writeText(&b)
		fmt.Fprintf(&b, "== round %d of %d: eventsrv ==\n", i+1, len(r.Rounds))
		round.Eventsrv.writeText(&b)
	}
	fmt.Fprintf(&b, "== comparison ==\n")
	for i, round := range r.Rounds {
		fmt.Fprintf(&b, "%-18s jetstream %.1f acks/s, eventsrv %.1f posts/s: %.4f×\n", fmt.Sprintf("round %d", i+1),
			round.JetStream.AcksPerSecond, round.Eventsrv.Load.PublishPerSecond, round.Ratio)
	}
	fmt.Fprintf(&b, "%-18s %.4f×\n", "median ratio", r.MedianRatio)
	if r.Pass {
		fmt.Fprintf(&b, "%-18s PASS\n", "result")
	} else {
		fmt.Fprintf(&b, "%-18s FAIL: %s\n", "result", strings.Join(r.Failures, "; "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
