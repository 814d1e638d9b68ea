package queue

// For Broker implementations outside this package (the JetStream one of
// cluster mode, eventsrv/cluster/jsqueue). They keep their own state per
// worker, and deliver notices through the worker's outbox as the Manager
// does, so that a transport's Hold works the same with them.

// MaxInFlight returns the most tasks the worker holds at once, as
// NewWorker was given it (at least 1).
func (w *Worker) MaxInFlight() int { return w.max }

// QueueNotice queues n for delivery; a Broker calls it under its lock, in
// the order the worker is to be told, and DeliverNotices after the
// unlock. Nothing is queued after DropNotices.
func (w *Worker) QueueNotice(n Notice) { w.push(n) }

// DeliverNotices delivers the queued notices, one goroutine at a time, in
// order, unless a Hold is in force (Release delivers them then).
func (w *Worker) DeliverNotices() { w.drain() }

// DropNotices drops the queued notices and any later ones: the worker
// left.
func (w *Worker) DropNotices() { w.close() }
