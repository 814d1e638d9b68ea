package broadcast

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// How frames reach the sockets.
//
// A publish queues one shared frame to each subscriber; a subscriber with
// queued frames is put on the hub's ready list once. A few flusher
// goroutines (one per CPU but one, and a helper for quiet bursts; see
// flushers) take subscribers off the list and write all of their queued
// frames in one non-blocking system call. While the flushers
// work through the list, further publishes queue behind, so the busier the
// server, the more frames each write carries: batching that adapts to load
// without delaying anything when the server is quiet.
//
// A subscriber whose socket cannot take the whole write at once (it reads
// slowly, or the connection is TLS, which cannot be written without
// blocking) gets a goroutine of its own that writes with WRITE_TIMEOUT, so
// that no flusher ever waits on one subscriber.

// writeChunk is the most bytes coalesced into one write: large enough that
// a burst of small events goes out in one system call, small enough to keep
// pooled buffers cheap. A frame larger than this is written on its own.
const writeChunk = 64 << 10

// flushBatch is how many subscribers a flusher takes off the ready list at
// once: enough to make the list's lock cheap, few enough to share the work
// between flushers.
const flushBatch = 64

// spreadBatch is how many subscribers the flushers and the helper take at
// once while they share a burst: at ~10 µs a write, whoever finishes first
// waits at most ~0.2 ms for the other.
const spreadBatch = 16

// yieldEvery is how long a flusher of a fed hub writes before it lets
// other goroutines run (see flushers.yield).
const yieldEvery = time.Millisecond

// spreadMin is the smallest burst the helper is woken for: a smaller one is
// written in a millisecond or so by one flusher, and waking a goroutine on
// the other core would be a large part of what it saves.
const spreadMin = 2 * flushBatch

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, writeChunk); return &b }}

// flushers is the ready list and the goroutines that serve it.
//
// One CPU is left to the publishers and readers: GOMAXPROCS−1 flushers
// serve the list, and while they work through it, publishes queue behind,
// so that each write carries more frames the busier the server is. That
// batching is what makes full load fast: a second flusher on two cores
// cut full-load deliveries by more than half in an earlier trial.
//
// A quiet server has nothing to batch, though: each event's fan-out is one
// write per subscriber, and a burst of a thousand writes on one core is
// what a subscriber at the end of it waits for. So one more goroutine, the
// helper, takes a share of a burst (1/GOMAXPROCS of it) when the burst
// finds every flusher idle and the list's last drain had nothing to batch
// (no more than one frame per write on average, see drained). The choice
// is made from the backlog the flushers saw, not from a timer: between two
// bursts of a busy server the flushers may be idle for a moment, but the
// drain before carried several frames per write, so the burst stays with
// the flushers; and a burst that finds them busy is never split.
type flushers struct {
	mu     sync.Mutex
	cond   *sync.Cond // flushers wait here
	helper *sync.Cond // the helper waits here
	ready  []*client
	stop   bool
	wg     sync.WaitGroup

	n    int // flushers, without the helper
	busy int // flushers and helper writing a batch taken from the list

	// spread is how many clients the helper may still take; 0 outside a
	// spread burst. helped counts the clients it took, for the tests.
	spread int
	helped int

	// writes and frames count, since the list last drained (empty and
	// nobody writing), the flushers' complete writes and the frames they
	// carried; batching is the verdict of the last drain.
	writes, frames int
	batching       bool

	// yield makes the flushers yield every yieldEvery of writing. A
	// flusher never blocks (its writes do not wait), so the goroutines it
	// woke or that wait behind it get a core only when the scheduler
	// preempts it, every 10 ms. A fed hub's feed so starved at full load
	// fell more than HISTORY_SIZE events behind its stream, which then
	// dropped them (5 of 6 cluster runs lost events; with the yield, 0 of
	// 7). A single node's publishers only wait longer, which is
	// backpressure, and there yielding cost 10–15% of full-load
	// deliveries (publishes came in between, and writes carried fewer
	// frames), so only a fed hub's flushers yield.
	yield bool

	// ioURing makes each flusher write its batches through a ring of its
	// own (batchsend_linux.go); onRefused hears why a ring could not be
	// made (a refusal of io_uring itself once per process).
	ioURing     bool
	onRefused   func(error)
	submissions atomic.Int64 // io_uring submissions so far, for the tests
}

func (f *flushers) start(n int, yield bool) {
	f.init(n)
	f.yield = yield
	// The rings are made here, not in the goroutines, so that a started
	// hub holds all its descriptors.
	for range n {
		f.wg.Add(1)
		go f.run(false, f.newBatchSender())
	}
	f.wg.Add(1)
	go f.run(true, f.newBatchSender())
}

// init prepares f for n flushers and the helper, without starting them.
func (f *flushers) init(n int) {
	f.cond = sync.NewCond(&f.mu)
	f.helper = sync.NewCond(&f.mu)
	f.n = n
}

// add puts clients on the ready list.
func (f *flushers) add(cs ...*client) {
	f.mu.Lock()
	spread := len(cs) >= spreadMin && len(f.ready) == 0 && f.busy == 0 && !f.batching
	f.ready = append(f.ready, cs...)
	if spread {
		f.spread = len(cs) / (f.n + 1)
	}
	f.mu.Unlock()
	f.cond.Signal()
	if spread {
		f.helper.Signal()
	}
}

// run serves the list: as a flusher, or as the helper, which takes only
// the share of a spread burst that add gave it.
func (f *flushers) run(helper bool, ring *batchSender) {
	defer f.wg.Done()
	var batch []*client
	var wrote writeCount
	ran := time.Now() // since the flusher last yielded or waited
	defer ring.close()
	wait := f.cond
	if helper {
		wait = f.helper
	}
	f.mu.Lock()
	for {
		if len(batch) > 0 {
			clear(batch)
			batch = batch[:0]
			f.busy--
			f.writes += wrote.writes
			f.frames += wrote.frames
			wrote = writeCount{}
		}
		if len(f.ready) == 0 && f.busy == 0 {
			f.drained()
		}
		if len(f.ready) == 0 || helper && f.spread == 0 {
			for (len(f.ready) == 0 || helper && f.spread == 0) && !f.stop {
				wait.Wait()
			}
			ran = time.Now()
		}
		if len(f.ready) == 0 || helper && f.stop {
			f.mu.Unlock()
			return
		}
		n := min(len(f.ready), flushBatch)
		if f.spread > 0 {
			// Smaller batches while the helper shares a burst, so that
			// both finish it at nearly the same time.
			n = min(n, spreadBatch)
		}
		if helper {
			n = min(n, f.spread)
			f.spread -= n
			f.helped += n
		}
		batch = append(batch, f.ready[:n]...)
		rest := copy(f.ready, f.ready[n:])
		clear(f.ready[rest:])
		f.ready = f.ready[:rest]
		f.busy++
		more := rest > 0 && !helper
		// The ring only for a quiet server's bursts, one frame per
		// write, where the system call's entry costs as much as the
		// send; under load each write carries many frames and the ring
		// cost 20% of full-load deliveries/s (batchsend_linux.go).
		useRing := ring != nil && !f.batching
		f.mu.Unlock()
		if more {
			f.cond.Signal() // let another flusher share the list
		}
		if useRing {
			ring.flush(batch, &wrote)
		} else {
			for _, c := range batch {
				wrote.add(c.flush())
			}
		}
		if f.yield && time.Since(ran) >= yieldEvery {
			runtime.Gosched()
			ran = time.Now()
		}
		f.mu.Lock()
	}
}

// drained ends a drain of the list: it keeps whether the drain carried
// more than one frame per write (one in eight more frames than writes),
// and ends any spread. Under mu.
func (f *flushers) drained() {
	f.spread = 0
	if f.writes == 0 {
		return
	}
	f.batching = f.frames > f.writes+f.writes/8
	f.writes, f.frames = 0, 0
}

// writeCount is what a flusher wrote: complete non-blocking writes and the
// frames they carried.
type writeCount struct{ writes, frames int }

func (w *writeCount) add(frames int) {
	if frames > 0 {
		w.writes++
		w.frames += frames
	}
}

// close stops the flushers once the ready list is empty.
func (f *flushers) close() {
	f.mu.Lock()
	f.stop = true
	f.mu.Unlock()
	f.cond.Broadcast()
	f.helper.Broadcast()
	f.wg.Wait()
}

// schedule hands c, which add or close has marked scheduled, to a writer.
func (h *Hub) schedule(c *client) {
	if c.raw == nil {
		go c.writeLoop(nil, nil, nil)
		return
	}
	h.flush.add(c)
}

// flush runs on a flusher: it takes everything queued for c and writes it
// without blocking, and returns how many frames that one write carried (0
// when it made none). What the socket does not take at once is handed to a
// goroutine of c's own.
func (c *client) flush() int {
	w, ok := c.prepare()
	if !ok {
		return 0
	}
	n, err := c.raw.tryWrite(w.buf)
	return w.wrote(n, err)
}

// pendingWrite is a flush whose bytes are ready for one non-blocking write.
type pendingWrite struct {
	c       *client
	bp      *[]byte // the pooled buffer holding buf
	buf     []byte
	nframes int
	since   time.Time // when the oldest of its frames was queued
}

// prepare takes everything queued for c into one buffer. ok is false when
// the flusher has nothing to write: nothing was queued (c is finished if
// its close frame went out), or too much for one write, which c's own
// writer then takes.
func (c *client) prepare() (w pendingWrite, ok bool) {
	frames, since, closing, ok := c.take()
	if !ok {
		if closing {
			c.finish()
		}
		return pendingWrite{}, false
	}
	bp := writeBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	for i, f := range frames {
		if len(buf)+len(f) > writeChunk {
			// Too much for one write: all of it goes the slow way, in order.
			go c.writeLoop(bp, buf, frames[i:])
			return pendingWrite{}, false
		}
		buf = append(buf, f...)
	}
	nframes := len(frames)
	clear(frames)
	return pendingWrite{c: c, bp: bp, buf: buf, nframes: nframes, since: since}, true
}

// wrote completes w after its write: the socket took n bytes, or the write
// failed with err. It returns the frames a complete write carried, or 0.
func (w *pendingWrite) wrote(n int, err error) int {
	c := w.c
	switch {
	case err != nil:
		*w.bp = w.buf[:0]
		writeBufs.Put(w.bp)
		c.fail(err)
	case n < len(w.buf):
		go c.writeLoop(w.bp, w.buf[n:], nil)
	default:
		*w.bp = w.buf[:0]
		writeBufs.Put(w.bp)
		c.sent.Add(uint64(w.nframes))
		c.hub.metrics.WriteWaited(time.Since(w.since))
		c.done()
		return w.nframes
	}
	return 0
}

// take swaps the queue out for writing, with the time its oldest frame was
// queued. ok is false when there is nothing to write; then the client is no
// longer scheduled, and closing reports whether its close frame has gone
// out (the writer must finish).
func (c *client) take() (frames [][]byte, since time.Time, closing, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		c.scheduled = false
		if cap(c.queue) > 256 { // do not keep a burst's worth of slice while idle
			c.queue, c.batch = nil, nil
		}
		return nil, time.Time{}, c.closing, false
	}
	c.batch, c.queue = c.queue, c.batch[:0]
	c.queued, c.grace = 0, 0
	return c.batch, c.queuedSince, false, true
}

// done follows a complete write by a flusher: if more was queued meanwhile
// the client goes back on the ready list, behind the others, for fairness.
func (c *client) done() {
	c.mu.Lock()
	more := len(c.queue) > 0 || c.closing
	if !more {
		c.scheduled = false
		if cap(c.queue) > 256 {
			c.queue, c.batch = nil, nil
		}
	}
	c.mu.Unlock()
	if more {
		c.hub.flush.add(c)
	}
}

// writeLoop is c's own writer: it writes what a flusher left (pending
// bytes in the pooled buffer bp, then frames; all may be nil), then
// everything queued until the queue is empty, each write bounded by
// WRITE_TIMEOUT. It serves TLS connections and subscribers that fall behind.
func (c *client) writeLoop(bp *[]byte, pending []byte, frames [][]byte) {
	if bp == nil {
		bp = writeBufs.Get().(*[]byte)
	}
	defer func() {
		*bp = (*bp)[:0]
		writeBufs.Put(bp)
	}()
	if len(pending) > 0 {
		if err := c.write(pending); err != nil {
			c.fail(err)
			return
		}
	}
	if len(frames) > 0 {
		err := c.writeFrames(frames, bp)
		clear(frames)
		if err != nil {
			c.fail(err)
			return
		}
	}
	for {
		frames, since, closing, ok := c.take()
		if !ok {
			if closing {
				c.finish()
				return
			}
			// The flushers' non-blocking writes would fail once a deadline
			// set here had passed: clear it. A flusher that wrote before
			// this line did so while the deadline was still ahead.
			_ = c.nc.SetWriteDeadline(time.Time{})
			return
		}
		err := c.writeFrames(frames, bp)
		nframes := len(frames)
		clear(frames)
		if err != nil {
			c.fail(err)
			return
		}
		c.sent.Add(uint64(nframes))
		c.hub.metrics.WriteWaited(time.Since(since))
	}
}

// writeFrames writes frames through the buffer bp, writeChunk at a time;
// a frame larger than writeChunk is written on its own.
func (c *client) writeFrames(frames [][]byte, bp *[]byte) error {
	buf := (*bp)[:0]
	defer func() { *bp = buf[:0] }()
	for _, f := range frames {
		if len(buf)+len(f) > writeChunk && len(buf) > 0 {
			if err := c.write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		if len(f) > writeChunk {
			if err := c.write(f); err != nil {
				return err
			}
			continue
		}
		buf = append(buf, f...)
	}
	if len(buf) > 0 {
		return c.write(buf)
	}
	return nil
}

// write is one blocking write bounded by WRITE_TIMEOUT.
func (c *client) write(b []byte) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.hub.opts.WriteTimeout)); err != nil {
		return err
	}
	_, err := c.nc.Write(b)
	return err
}

// fail ends the writer after a write error or timeout: the connection is
// unusable, so it is closed, which also ends the reader.
func (c *client) fail(err error) {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.reason = "write failed: " + err.Error()
		c.closedAt = time.Now()
	}
	clear(c.queue)
	c.queue, c.queued = nil, 0
	c.mu.Unlock()
	c.abort()
	close(c.writerDone)
}

// finish runs after the close frame is written: it half-closes the
// connection so the peer sees end of stream after the close frame (a full
// close with unread input could reset the connection and lose the frame).
// The reader then sees the peer's close, or the sweep aborts the
// connection after closeGrace.
func (c *client) finish() {
	c.mu.Lock()
	c.closeSent = time.Now()
	c.mu.Unlock()
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	close(c.writerDone)
}

// tryWrite writes b with one non-blocking system call and returns how much
// the socket took; a full socket buffer is not an error (n < len(b)). It
// holds the write lock like Write, so whole frames never interleave with
// the WebSocket library's own (rare) writes. A partial write is finished by
// the subscriber's own writer after the lock is released; only a peer that
// has just broken the protocol can make the library write in between, and
// that connection is being closed anyway.
func (c *lockedConn) tryWrite(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int
	var werr error
	// Control, not Write: it keeps the descriptor open while the function
	// runs, which is all a single non-blocking attempt needs; Write would
	// also take the descriptor's write lock (c.mu serializes writers
	// already) and reset its poller state: 3.8% of a quiet server's CPU,
	// against 1.9% for Control.
	err := c.rc.Control(func(fd uintptr) {
		n, werr = sockWrite(fd, b)
	})
	if err != nil {
		return 0, err
	}
	if errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.EINTR) {
		return 0, nil
	}
	if werr != nil {
		return 0, fmt.Errorf("socket write: %w", werr)
	}
	return n, nil
}
