package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Subscriber connection settings.
const (
	// closeGrace bounds our close handshake: the close frame's write, and
	// the wait for the server's answering close frame.
	closeGrace = 5 * time.Second
	// readBufferSize is gorilla's default; frames larger than it are read
	// in several calls, not refused.
	readBufferSize = 4096
	// minReadLimit is the smallest frame size limit; the real limit grows
	// with -size so that the envelope and a future "id" always fit.
	minReadLimit = 64 << 10
	// initialFrameBuffer is where a read loop's reusable buffer starts.
	initialFrameBuffer = 512
)

// initMessage is a subscriber's first message.
type initMessage struct {
	Authentication string   `json:"authentication"`
	Events         []string `json:"events"`
}

// initReply is the server's answer to initMessage.
type initReply struct {
	Type string `json:"type"`
	Code string `json:"code"`
}

// subscriber is one WebSocket connection and what it has received. Its tally
// is written only by its read loop and read only after that loop has ended
// (loopDone), so a delivery takes no lock.
type subscriber struct {
	urlIndex int // of its URL in cfg.broadcastURLs
	conn     *websocket.Conn
	raw      *rawConn // the epoll reader's, when it reads this subscriber
	event    string
	tally    *tally
	distinct atomic.Int64 // first deliveries so far
	target   atomic.Int64 // first deliveries to wait for; -1 until publishing has ended
	finished atomic.Bool  // finish has run
	closing  atomic.Bool  // we are closing, so the read loop's end is expected
	exitErr  error        // why the read loop ended on its own; read after loopDone
	loopDone chan struct{}
	onFinish func()
}

// fleet is every subscriber of a run and the signal that all of them are done.
type fleet struct {
	subs      []*subscriber  // connected, in subscriber order
	failures  errorSample    // dials and inits that failed
	failedAt  []atomic.Int64 // dials and inits that failed, by broadcast URL
	remaining atomic.Int64   // subscribers not yet finished, failed ones included
	allDone   chan struct{}  // closed when remaining reaches zero
	readers   *epollReaders  // nil when gorilla reads every subscriber
}

// openFleet dials cfg.subs subscribers, at most cfg.dialConcurrency at a
// time, and returns once each has been answered init OK or has failed;
// -timeout bounds the whole phase. Subscriber i connects to broadcast URL
// i mod B, and records latencies into slab[i*events : (i+1)*events], so no
// delivery ever allocates for them. With no subscribers the fleet is done at
// once.
func openFleet(ctx context.Context, cfg config, slab []int64) *fleet {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	targets := len(cfg.broadcastURLs)
	f := &fleet{allDone: make(chan struct{}), failedAt: make([]atomic.Int64, targets)}
	f.remaining.Store(int64(cfg.subs))
	if cfg.subs == 0 {
		close(f.allDone)
	}
	if cfg.reader == readerEpoll {
		var err error
		if f.readers, err = newEpollReaders(); err != nil {
			// Checked in config: this is a broken system, not a
			// choice; every subscriber fails with the reason.
			f.failures.add(fmt.Errorf("starting the epoll reader: %w", err))
			f.failedAt[0].Add(int64(cfg.subs))
			f.remaining.Store(0)
			close(f.allDone)
			return f
		}
	}
	dialers := newDialers(cfg)
	slots := make([]*subscriber, cfg.subs)
	sem := make(chan struct{}, cfg.dialConcurrency)
	var wg sync.WaitGroup
	for i := range cfg.subs {
		sem <- struct{}{}
		wg.Go(func() {
			// The source address turns once per round of the URLs, so
			// that each URL gets every source address.
			target, dialer := i%targets, dialers[(i/targets)%len(dialers)]
			s, err := connect(ctx, cfg, target, dialer, latencyWindow(slab, i, cfg.events))
			<-sem
			if err != nil {
				f.failures.add(fmt.Errorf("subscriber %d (%s): %w", i, cfg.broadcastURLs[target], err))
				f.failedAt[target].Add(1)
				f.finishOne()
				return
			}
			s.onFinish = f.finishOne
			if err := f.startReading(s, i, cfg); err != nil {
				f.failures.add(fmt.Errorf("subscriber %d (%s): %w", i, cfg.broadcastURLs[target], err))
				f.failedAt[target].Add(1)
				s.conn.Close()
				f.finishOne()
				return
			}
			slots[i] = s
		})
	}
	wg.Wait()
	for _, s := range slots {
		if s != nil {
			f.subs = append(f.subs, s)
		}
	}
	return f
}

// errNotTCP is why a subscriber stays with gorilla: its connection is TLS.
var errNotTCP = errors.New("not a plain TCP connection")

// startReading hands subscriber i to the epoll reader, or to a gorilla
// read loop of its own when there is none or its connection is TLS.
func (f *fleet) startReading(s *subscriber, i int, cfg config) error {
	if f.readers != nil {
		err := f.readers.attach(s, i, readLimit(cfg))
		if !errors.Is(err, errNotTCP) {
			return err
		}
	}
	go s.readLoop()
	return nil
}

// readLimit is the largest frame a subscriber accepts: the envelope and a
// future "id" always fit around -size bytes of data.
func readLimit(cfg config) int { return max(minReadLimit, 4*cfg.size+4096) }

// latencyWindow returns subscriber i's empty window of slab, capped so that
// appending can never spill into a neighbour's.
func latencyWindow(slab []int64, i, events int) []int64 {
	if len(slab) == 0 {
		return nil
	}
	return slab[i*events : i*events : (i+1)*events]
}

// finishOne marks one subscriber done.
func (f *fleet) finishOne() {
	if f.remaining.Add(-1) == 0 {
		close(f.allDone)
	}
}

// awaitDeliveries tells every subscriber how many events were published and
// waits until each has them all (or has disconnected), the timeout passes,
// or ctx ends. It reports whether every subscriber finished.
func (f *fleet) awaitDeliveries(ctx context.Context, published int, timeout time.Duration) bool {
	for _, s := range f.subs {
		s.setTarget(int64(published))
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-f.allDone:
		return true
	case <-timer.C:
	case <-ctx.Done():
	}
	return false
}

// close closes every subscriber with a close handshake, concurrency at a
// time, and returns when every read loop has ended.
func (f *fleet) close(concurrency int) {
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for _, s := range f.subs {
		sem <- struct{}{}
		wg.Go(func() {
			s.close()
			<-sem
		})
	}
	wg.Wait()
	if f.readers != nil {
		f.readers.stop()
	}
}

// tallies returns the connected subscribers' tallies. Call it only after close.
func (f *fleet) tallies() []*tally {
	ts := make([]*tally, len(f.subs))
	for i, s := range f.subs {
		ts[i] = s.tally
	}
	return ts
}

// disconnects returns how many subscribers lost their connection before we
// closed it, and the first few reasons. Call it only after close.
func (f *fleet) disconnects() (int64, []string) {
	var n int64
	var why []string
	for _, s := range f.subs {
		if s.exitErr == nil {
			continue
		}
		n++
		if len(why) < maxSamples {
			why = append(why, s.exitErr.Error())
		}
	}
	return n, why
}

// newDialers returns one WebSocket dialer per source address, or a single
// one when dials are not spread.
func newDialers(cfg config) []*websocket.Dialer {
	// Subscribers write only their init and close frames, so their write
	// buffers are pooled rather than held by each idle connection.
	pool := &sync.Pool{}
	tlsConfig := &tls.Config{InsecureSkipVerify: cfg.insecure}
	dialer := func(nd *net.Dialer) *websocket.Dialer {
		return &websocket.Dialer{
			NetDialContext:  nd.DialContext,
			TLSClientConfig: tlsConfig,
			ReadBufferSize:  readBufferSize,
			WriteBufferPool: pool,
			// No Proxy: the load must reach the server, not a proxy
			// named in the environment.
		}
	}
	if len(cfg.sources) == 0 {
		return []*websocket.Dialer{dialer(&net.Dialer{})}
	}
	dialers := make([]*websocket.Dialer, len(cfg.sources))
	for i, src := range cfg.sources {
		dialers[i] = dialer(&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: src.AsSlice()},
			Control:   bindAddressNoPort,
		})
	}
	return dialers
}

// connect dials one subscriber to broadcast URL target and initializes it.
func connect(ctx context.Context, cfg config, target int, dialer *websocket.Dialer, latencies []int64) (*subscriber, error) {
	conn, resp, err := dialer.DialContext(ctx, cfg.broadcastURLs[target], nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("websocket handshake answered HTTP %d: %w", resp.StatusCode, err)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	if err := initialize(ctx, conn, cfg); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadLimit(int64(readLimit(cfg)))
	s := &subscriber{
		urlIndex: target,
		conn:     conn,
		event:    cfg.event,
		tally:    newTally(cfg.publishers, cfg.events, latencies),
		loopDone: make(chan struct{}),
	}
	s.target.Store(-1)
	return s, nil
}

// initialize sends the init message and checks that the answer is init OK,
// within ctx.
func initialize(ctx context.Context, conn *websocket.Conn, cfg config) error {
	// A read does not watch ctx, so ctx's end moves the read deadline into
	// the past instead, which makes a blocked read return.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	err := exchangeInit(conn, cfg)
	if !stop() {
		return fmt.Errorf("init: %w", context.Cause(ctx))
	}
	if err != nil {
		return err
	}
	return conn.SetReadDeadline(time.Time{})
}

// exchangeInit writes the init message and reads the reply.
func exchangeInit(conn *websocket.Conn, cfg config) error {
	msg := initMessage{Authentication: "Basic " + cfg.token, Events: []string{cfg.event}}
	if err := conn.WriteJSON(msg); err != nil {
		return fmt.Errorf("sending init: %w", err)
	}
	var reply initReply
	if err := conn.ReadJSON(&reply); err != nil {
		return fmt.Errorf("reading init reply: %w", err)
	}
	if reply.Type != "init" || reply.Code != "OK" {
		return fmt.Errorf("init refused: type %q, code %q", reply.Type, reply.Code)
	}
	return nil
}

// readLoop reads until the connection ends, accounting every frame. While
// it reads, gorilla answers the server's pings.
func (s *subscriber) readLoop() {
	defer close(s.loopDone)
	defer s.finish()
	buf := make([]byte, 0, initialFrameBuffer)
	for {
		kind, frame, err := readFrame(s.conn, buf)
		if err != nil {
			if !s.closing.Load() {
				s.exitErr = err
			}
			return
		}
		s.handle(kind, frame, time.Now().UnixNano())
		buf = frame[:0]
	}
}

// handle accounts one frame received at now.
func (s *subscriber) handle(kind int, frame []byte, now int64) {
	if kind != websocket.TextMessage {
		s.tally.recordMalformed(frame, errNotText)
		return
	}
	pl, err := parseFrame(frame, s.event)
	if err != nil {
		s.tally.recordMalformed(frame, err)
		return
	}
	first, err := s.tally.record(pl, now)
	if err != nil {
		s.tally.recordMalformed(frame, err)
		return
	}
	if !first {
		return
	}
	if n, t := s.distinct.Add(1), s.target.Load(); t >= 0 && n >= t {
		s.finish()
	}
}

// setTarget sets how many first deliveries complete this subscriber. The
// read loop checks the target after counting and this checks the count
// after setting, so whichever comes second sees the other.
func (s *subscriber) setTarget(n int64) {
	s.target.Store(n)
	if s.distinct.Load() >= n {
		s.finish()
	}
}

// finish marks the subscriber done, once.
func (s *subscriber) finish() {
	if s.finished.CompareAndSwap(false, true) {
		s.onFinish()
	}
}

// close sends a normal close frame, waits (bounded) for the server's answer
// to end the read loop, and releases the connection.
func (s *subscriber) close() {
	if s.raw != nil {
		s.raw.close()
		return
	}
	s.closing.Store(true)
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bench done")
	deadline := time.Now().Add(closeGrace)
	// Errors are expected here from connections that already ended; the
	// read loop has recorded why.
	_ = s.conn.WriteControl(websocket.CloseMessage, msg, deadline)
	_ = s.conn.SetReadDeadline(deadline)
	<-s.loopDone
	s.conn.Close()
}

// readFrame reads one message into buf's storage, growing it as needed.
func readFrame(conn *websocket.Conn, buf []byte) (int, []byte, error) {
	kind, r, err := conn.NextReader()
	if err != nil {
		return 0, nil, err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return kind, buf, nil
		}
		if err != nil {
			return 0, nil, err
		}
	}
}

// errorSample counts errors and keeps the first few. It is used only on
// failure paths, so its lock costs nothing on the hot path.
type errorSample struct {
	mu    sync.Mutex
	count int
	first []string
}

func (e *errorSample) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.count++
	if len(e.first) < maxSamples {
		e.first = append(e.first, err.Error())
	}
}
