package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Publisher settings.
const (
	// maxResponseBytes bounds how much of an answer is read; the answer is
	// a small JSON object.
	maxResponseBytes = 64 << 10
	// idleConnsPerHost: each publisher sends one request at a time, so one
	// kept-alive connection is all it reuses; one spare costs nothing.
	idleConnsPerHost = 2
	// maxFailureKinds bounds the distinct failure labels kept per run;
	// messages that embed port numbers would otherwise each get their own.
	maxFailureKinds = 10
	// otherFailures labels failures beyond maxFailureKinds.
	otherFailures = "other errors"
	// cancelledFailures labels requests cut short because publishing was
	// stopped (by a timeout elsewhere or an interrupt), whatever error the
	// transport reported for them.
	cancelledFailures = "cancelled: publishing was stopped"
	// scheduleTickMax and scheduleTickMin bound how often the rate
	// schedule releases events. Each tick releases every event that is due
	// by then, so the rate holds whatever the ticker's resolution.
	scheduleTickMax = 10 * time.Millisecond
	scheduleTickMin = time.Millisecond
)

// statusError is an answer other than 200 {"code":"OK"}.
type statusError struct {
	status int
	code   string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d code %q", e.status, e.code) }

// publishResult is what the publish phase did, over all publishers.
type publishResult struct {
	acked     []bitset // per publisher: sequences answered 200 OK
	succeeded int
	failed    int
	attempted int
	failures  map[string]int // failed publishes by status and code, or transport error
	abort     error          // why publishing stopped before every event was attempted
	firstSend int64          // Unix ns
	lastDone  int64          // Unix ns, the last answer
	targets   []publishTarget
	latencies []int64 // ns from sending each acknowledged event's POST to its answer, sorted
}

// publishTarget is what the publishers of one listen URL did.
type publishTarget struct {
	publishers int
	succeeded  int
	failed     int
	firstSend  int64
	lastDone   int64
}

// publishAll publishes cfg.events events with cfg.publishers concurrent
// publishers and returns what happened. A publish that times out stops the
// phase: a server that hangs for -timeout will not recover by being sent
// more, and the tool must stop by itself.
func publishAll(ctx context.Context, cfg config) publishResult {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work, stopWork := newWorkSource(ctx, cfg)
	pubs := make([]*publisher, cfg.publishers)
	var wg sync.WaitGroup
	for i := range pubs {
		pubs[i] = newPublisher(cfg, i)
		wg.Go(func() { pubs[i].run(ctx, work, cancel) })
	}
	wg.Wait()
	stopWork()
	res := mergePublishers(pubs, len(cfg.publishURLs))
	slices.Sort(res.latencies)
	if ctx.Err() != nil && res.attempted < cfg.events {
		res.abort = context.Cause(ctx)
	}
	return res
}

// mergePublishers totals the publishers' results, overall and for each of
// the targets (listen URLs).
func mergePublishers(pubs []*publisher, targets int) publishResult {
	res := publishResult{failures: make(map[string]int), targets: make([]publishTarget, targets)}
	for _, p := range pubs {
		t := &res.targets[p.target]
		t.publishers++
		t.succeeded += p.succeeded
		for _, n := range p.failures {
			t.failed += n
		}
		if p.firstSend != 0 && (t.firstSend == 0 || p.firstSend < t.firstSend) {
			t.firstSend = p.firstSend
		}
		t.lastDone = max(t.lastDone, p.lastDone)
		res.acked = append(res.acked, p.acked)
		res.succeeded += p.succeeded
		res.attempted += p.attempts
		for kind, n := range p.failures {
			res.failed += n
			res.failures[kind] += n
		}
		if p.firstSend != 0 && (res.firstSend == 0 || p.firstSend < res.firstSend) {
			res.firstSend = p.firstSend
		}
		res.lastDone = max(res.lastDone, p.lastDone)
		res.latencies = append(res.latencies, p.latencies...)
	}
	return res
}

// workSource hands out the right to publish one event.
type workSource interface {
	next(ctx context.Context) bool
}

// newWorkSource returns the work for cfg.events events, unthrottled or on a
// schedule of cfg.rate events/s, and a function that waits for the
// schedule's goroutine once the publishers have stopped.
func newWorkSource(ctx context.Context, cfg config) (workSource, func()) {
	if cfg.rate == 0 {
		c := &counter{}
		c.remaining.Store(int64(cfg.events))
		return c, func() {}
	}
	s := &schedule{tokens: make(chan struct{}, cfg.events), done: make(chan struct{})}
	go s.run(ctx, cfg.events, cfg.rate)
	return s, func() { <-s.done }
}

// counter is unthrottled work: the first cfg.events calls win.
type counter struct{ remaining atomic.Int64 }

func (c *counter) next(ctx context.Context) bool {
	return ctx.Err() == nil && c.remaining.Add(-1) >= 0
}

// schedule releases events at a fixed total rate. Its channel holds every
// event, so releasing never blocks: publishers that fall behind catch up
// at their own pace and the latency measured from the actual send time
// shows no queueing they did not do.
type schedule struct {
	tokens chan struct{}
	done   chan struct{}
}

func (s *schedule) next(ctx context.Context) bool {
	select {
	case _, ok := <-s.tokens:
		return ok
	case <-ctx.Done():
		return false
	}
}

// run releases event k (from 0) at k/rate seconds after the start.
func (s *schedule) run(ctx context.Context, events int, rate float64) {
	defer close(s.done)
	defer close(s.tokens)
	tick := time.Duration(float64(time.Second) / rate)
	ticker := time.NewTicker(min(max(tick, scheduleTickMin), scheduleTickMax))
	defer ticker.Stop()
	start := time.Now()
	for released := 0; ; {
		due := min(events, int(time.Since(start).Seconds()*rate)+1)
		for ; released < due; released++ {
			s.tokens <- struct{}{}
		}
		if released == events {
			return
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return
		}
	}
}

// publisher posts events one at a time over its own keep-alive client, so
// that its sequence numbers are also its send order.
type publisher struct {
	index     int
	target    int // index of its URL in cfg.publishURLs
	client    *http.Client
	url       string
	auth      string
	eventJSON []byte
	size      int
	batch     int // events per request
	acked     bitset
	attempts  int
	succeeded int
	failures  map[string]int
	firstSend int64
	lastDone  int64
	latencies []int64 // ns, each acknowledged event's POST round trip
}

// newPublisher returns publisher index with its own transport. Publishers
// take the listen URLs in turn.
func newPublisher(cfg config, index int) *publisher {
	target := index % len(cfg.publishURLs)
	eventJSON, _ := json.Marshal(cfg.event) // a string always encodes
	transport := &http.Transport{
		// No Proxy: the load must reach the server, not a proxy named in
		// the environment.
		DialContext:         (&net.Dialer{Timeout: cfg.timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        idleConnsPerHost,
		MaxIdleConnsPerHost: idleConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: cfg.insecure},
	}
	return &publisher{
		index:     index,
		target:    target,
		client:    &http.Client{Transport: transport, Timeout: cfg.timeout},
		url:       cfg.publishURLs[target],
		auth:      "Basic " + cfg.token,
		eventJSON: eventJSON,
		size:      cfg.size,
		batch:     cfg.batch,
		acked:     newBitset(cfg.events),
		failures:  make(map[string]int),
	}
}

// run publishes until the work runs out or ctx ends, batch events per
// request. A timeout ends the whole phase through abort.
func (p *publisher) run(ctx context.Context, work workSource, abort context.CancelCauseFunc) {
	defer p.client.CloseIdleConnections()
	for {
		n := 0
		for n < p.batch && work.next(ctx) {
			n++
		}
		if n == 0 {
			return
		}
		first := p.attempts
		p.attempts += n
		start := time.Now()
		var err error
		if p.batch == 1 {
			err = p.publishOne(ctx, first)
		} else {
			err = p.publishBatch(ctx, first, n)
		}
		done := time.Now()
		p.lastDone = done.UnixNano()
		if err == nil {
			for seq := first; seq < first+n; seq++ {
				p.acked.set(seq)
				p.latencies = append(p.latencies, int64(done.Sub(start)))
			}
			p.succeeded += n
			continue
		}
		if ctx.Err() != nil {
			p.countFailures(cancelledFailures, n)
			continue
		}
		p.countFailures(failureKind(err), n)
		if isTimeout(err) {
			abort(fmt.Errorf("publisher %d, events %d-%d: %w", p.index, first, first+n-1, err))
		}
	}
}

// publishOne posts event seq and checks the answer.
func (p *publisher) publishOne(ctx context.Context, seq int) error {
	sent := p.sendTime()
	// A fresh body each time: the transport may still be reading the
	// previous one after Do returns.
	body := appendEventBody(make([]byte, 0, p.size+128), p.eventJSON, payload{pub: p.index, seq: seq, sent: sent}, p.size)
	resp, err := p.post(ctx, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return checkAnswer(resp, 0)
}

// publishBatch posts events first..first+n-1 as one JSON array, all with
// the same send time, and checks that the answer has an ID for each.
func (p *publisher) publishBatch(ctx context.Context, first, n int) error {
	sent := p.sendTime()
	body := make([]byte, 0, n*(p.size+128)+2)
	body = append(body, '[')
	for seq := first; seq < first+n; seq++ {
		if seq > first {
			body = append(body, ',')
		}
		body = appendEventBody(body, p.eventJSON, payload{pub: p.index, seq: seq, sent: sent}, p.size)
	}
	body = append(body, ']')
	resp, err := p.post(ctx, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return checkAnswer(resp, n)
}

// sendTime returns now in Unix ns, remembering the first.
func (p *publisher) sendTime() int64 {
	sent := time.Now().UnixNano()
	if p.firstSend == 0 {
		p.firstSend = sent
	}
	return sent
}

// post sends body to the publisher's URL with its token.
func (p *publisher) post(ctx context.Context, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Authorization", p.auth)
	req.Header.Set("Content-Type", "application/json")
	return p.client.Do(req)
}

// checkAnswer accepts 200 with {"code":"OK"} and, for a batch of ids > 0
// events, an "ids" array with exactly that many IDs; unknown fields are
// ignored.
func checkAnswer(resp *http.Response, ids int) error {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("reading the answer to POST: %w", err)
	}
	var answer struct {
		Code string   `json:"code"`
		IDs  []string `json:"ids"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		answer.Code = "(answer is not a JSON object with a code)"
	}
	if resp.StatusCode != http.StatusOK || answer.Code != "OK" {
		return &statusError{status: resp.StatusCode, code: answer.Code}
	}
	if ids > 0 && len(answer.IDs) != ids {
		return &statusError{status: resp.StatusCode, code: fmt.Sprintf("OK with %d ids for %d events", len(answer.IDs), ids)}
	}
	return nil
}

// failureKind labels a failed publish for the report: the status and code
// of an answer, or the transport's error.
func failureKind(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return se.Error()
	}
	return "transport: " + withoutLocalAddrs(err.Error())
}

// withoutLocalAddrs drops the "local->" half of "tcp local->remote" in a
// network error, so that one kind of failure on many connections, each with
// its own port, is counted under one label.
func withoutLocalAddrs(msg string) string {
	for {
		arrow := strings.Index(msg, "->")
		if arrow < 0 {
			return msg
		}
		start := strings.LastIndexByte(msg[:arrow], ' ') + 1
		msg = msg[:start] + msg[arrow+len("->"):]
	}
}

// countFailures counts n failed events of kind, keeping the kinds bounded.
func (p *publisher) countFailures(kind string, n int) {
	if _, known := p.failures[kind]; !known && len(p.failures) >= maxFailureKinds {
		kind = otherFailures
	}
	p.failures[kind] += n
}

// isTimeout reports whether err is a timeout, such as http.Client's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
