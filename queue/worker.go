package queue

import (
	"container/list"
	"sync"
)

// Worker is one connection that takes tasks: a WebSocket that sent "work",
// or an SSE wait stream. Create it with NewWorker, hand it to Join, and to
// Leave when the connection is gone; a Worker that has left cannot join
// again. A Worker belongs to the first Manager it joins.
type Worker struct {
	subject string
	max     int
	notify  func(Notice)

	// Guarded by the manager's mu.
	m        *Manager
	left     bool
	detached bool                     // a take's holder: no connection, no slots
	held     int                      // open offers plus tasks awaiting Done
	stamp    uint64                   // when it was last given a task or became free; lower waited longer
	queues   map[*queue]*list.Element // joined queues; the element in the queue's free list, nil while full
	holds    map[*task]struct{}       // the tasks counted in held
	touched  bool                     // in the manager's list of workers with notices to deliver

	// The outbox: notices queued under the manager's lock and delivered
	// after it, by one goroutine at a time, so that they arrive in order.
	omu      sync.Mutex
	outbox   []Notice
	spare    []Notice
	draining bool
	paused   int  // Hold calls not yet Released: notices wait in the outbox
	gone     bool // Leave: drop what is queued and anything later
}

// NewWorker returns a worker for the connection of subject (the identity
// the *As methods act for) that holds at most maxInFlight tasks at once
// (values below 1 count as 1). notify is called with every offer, forced
// assignment and expiry, outside the manager's lock, one call at a time; it
// must not be nil and must not block.
func NewWorker(subject string, maxInFlight int, notify func(Notice)) *Worker {
	return &Worker{subject: subject, max: max(1, maxInFlight), notify: notify}
}

// Subject returns the identity the worker was created with.
func (w *Worker) Subject() string { return w.subject }

// push queues n for delivery; the caller holds the manager's lock and
// arranges for drain to run after it.
func (w *Worker) push(n Notice) {
	w.omu.Lock()
	if !w.gone {
		w.outbox = append(w.outbox, n)
	}
	w.omu.Unlock()
}

// drain delivers the queued notices unless another goroutine is already
// doing so, in which case that one delivers them too: only one goroutine
// calls notify at a time, in the order the notices were queued.
func (w *Worker) drain() {
	w.omu.Lock()
	if w.draining {
		w.omu.Unlock()
		return
	}
	w.draining = true
	for len(w.outbox) > 0 && !w.gone && w.paused == 0 {
		batch := w.outbox
		w.outbox, w.spare = w.spare[:0], nil
		w.omu.Unlock()
		for _, n := range batch {
			w.notify(n)
		}
		clear(batch) // let the data go
		w.omu.Lock()
		if w.spare == nil {
			w.spare = batch[:0]
		}
	}
	w.draining = false
	w.omu.Unlock()
}

// Hold keeps the worker's notices from being delivered until the matching
// Release; Holds nest. A transport holds its worker while it answers an
// action (assign, reject, done), so that its answer goes out before the
// offer that the action made possible: the manager makes that offer, and
// would deliver it, before Assign or Reject returns.
func (w *Worker) Hold() {
	w.omu.Lock()
	w.paused++
	w.omu.Unlock()
}

// Release ends a Hold; the last one delivers what was held, in order, on
// the caller's goroutine (so it must not be called with a lock that notify
// takes).
func (w *Worker) Release() {
	w.omu.Lock()
	w.paused--
	last := w.paused == 0
	w.omu.Unlock()
	if last {
		w.drain()
	}
}

// close drops queued notices and any later ones.
func (w *Worker) close() {
	w.omu.Lock()
	w.gone = true
	w.outbox, w.spare = nil, nil
	w.omu.Unlock()
}
