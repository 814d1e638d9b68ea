package broadcast

import (
	"fmt"
	"sync"
	"sync/atomic"

	"eventsrv/internal/uring"
)

// batchSender writes a flusher's whole batch with one io_uring submission
// instead of one send(2) per subscriber. On this VM a system call's entry
// and exit cost about 1.1 µs, and a quiet server's burst is one small send
// per subscriber: at 20 events/s × 1,000 subscribers the ring cut the
// server's CPU per delivery from ~10 µs to ~7. Under load each write
// carries many frames, the entry is a small part of it, and the ring cost
// 20% of full-load deliveries/s (6 alternating runs; not profiled
// further), so the flushers use it only while they are not batching (see
// flushers.batching). Each flusher has its own ring; where
// io_uring is refused (an old kernel, the kernel.io_uring_disabled
// setting, Docker's default seccomp profile) every write is one send(2).
type batchSender struct {
	ring        *uring.Ring
	submissions *atomic.Int64 // the flushers' count, for the tests
	writes      []pendingWrite
	fds         []int // by write; -1 when the connection had closed
	sendFD      []int // the open ones, in order, for the ring
	bufs        [][]byte
	n           []int
	errs        []error
	ctlErr      []error // by write: why its descriptor could not be had
	sentN       []int   // the ring's results, by open write
	sentE       []error
}

// ringProbe is the fate of the process's first ring: after a refusal no
// flusher of any hub tries again, and the refusal is logged once.
var ringProbe = &probe{newRing: uring.New}

// probe makes rings, and remembers whether the first was refused; newRing
// is uring.New but in the test of a refusal.
type probe struct {
	once    sync.Once
	err     error
	newRing func(entries uint32) (*uring.Ring, error)
}

// newBatchSender returns the flusher's batch sender, or nil when the hub
// does not use io_uring or the kernel refuses it.
func (f *flushers) newBatchSender() *batchSender {
	if !f.ioURing {
		return nil
	}
	var ring *uring.Ring
	var err error
	first := false
	p := ringProbe
	p.once.Do(func() {
		first = true
		ring, err = p.newRing(flushBatch)
		p.err = err
	})
	switch {
	case !first && p.err != nil:
		return nil // refused, and logged, once already
	case !first:
		ring, err = p.newRing(flushBatch)
	}
	if err != nil {
		f.onRefused(err)
		return nil
	}
	return &batchSender{ring: ring, submissions: &f.submissions}
}

func (s *batchSender) close() {
	if s != nil {
		s.ring.Close()
	}
}

// flush writes every client of batch as client.flush does, with one
// submission for all of them.
func (s *batchSender) flush(batch []*client, wrote *writeCount) {
	s.writes = s.writes[:0]
	for _, c := range batch {
		if w, ok := c.prepare(); ok {
			s.writes = append(s.writes, w)
		}
	}
	if len(s.writes) == 0 {
		return
	}
	k := len(s.writes)
	s.fds = resize(s.fds, k)
	s.ctlErr = resize(s.ctlErr, k)
	s.n = resize(s.n, k)
	s.errs = resize(s.errs, k)
	// Each connection's write lock, as tryWrite holds it, so that our
	// frames never interleave with the WebSocket library's own writes.
	for i := range s.writes {
		s.writes[i].c.raw.mu.Lock()
	}
	s.withDescriptors(0)
	for i := range s.writes {
		s.writes[i].c.raw.mu.Unlock()
	}
	for i := range s.writes {
		err := s.errs[i]
		if err != nil {
			err = fmt.Errorf("socket write: %w", err)
		}
		if s.ctlErr[i] != nil {
			err = s.ctlErr[i]
		}
		wrote.add(s.writes[i].wrote(s.n[i], err))
		s.writes[i] = pendingWrite{}
	}
}

// withDescriptors holds the descriptors of writes[i:] open, each inside
// its RawConn.Control as tryWrite does, so that a concurrent close cannot
// hand the number to another socket mid-send; with all held, it sends.
func (s *batchSender) withDescriptors(i int) {
	for ; i < len(s.writes); i++ {
		called := false
		err := s.writes[i].c.raw.rc.Control(func(fd uintptr) {
			called = true
			s.fds[i], s.ctlErr[i] = int(fd), nil
			s.withDescriptors(i + 1)
		})
		if called {
			return
		}
		s.fds[i], s.ctlErr[i] = -1, err
	}
	s.send()
}

// send submits the writes whose descriptors are held and spreads the
// results back by write.
func (s *batchSender) send() {
	s.sendFD, s.bufs = s.sendFD[:0], s.bufs[:0]
	for i, fd := range s.fds {
		s.n[i], s.errs[i] = 0, nil
		if fd >= 0 {
			s.sendFD = append(s.sendFD, fd)
			s.bufs = append(s.bufs, s.writes[i].buf)
		}
	}
	m := len(s.sendFD)
	s.sentN, s.sentE = resize(s.sentN, m), resize(s.sentE, m)
	s.submissions.Add(1)
	if err := s.ring.Send(s.sendFD, s.bufs, s.sentN, s.sentE); err != nil {
		// The ring failed as a whole (not a socket): fail no subscriber
		// for it; report nothing written, so each client's own writer
		// takes its bytes.
		clear(s.bufs)
		return
	}
	j := 0
	for i, fd := range s.fds {
		if fd >= 0 {
			s.n[i], s.errs[i] = s.sentN[j], s.sentE[j]
			j++
		}
	}
	clear(s.bufs)
}

// resize returns b with length n, reusing its storage.
func resize[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}
