package queue

import "errors"

// Errors the Manager returns, possibly wrapped with a detail; callers branch
// with errors.Is and map each to a wire code (QUEUE_FULL, UNKNOWN_TASK,
// NOT_OFFERED_TO_YOU, OFFER_EXPIRED, NOT_ASSIGNED, ...) in one table.
var (
	// ErrQueueFull: the queue holds Options.MaxTasks unfinished tasks; the
	// task was not added.
	ErrQueueFull = errors.New("queue full")
	// ErrTooManyQueues: Options.MaxQueues queues hold tasks, and the
	// task's queue holds none; the task was not added.
	ErrTooManyQueues = errors.New("too many queues")
	// ErrUnknownTask: no such task in this queue, or it finished longer ago
	// than the manager remembers.
	ErrUnknownTask = errors.New("unknown task")
	// ErrNotOfferedToYou: the task exists but was never offered to the
	// caller.
	ErrNotOfferedToYou = errors.New("task not offered to you")
	// ErrOfferExpired: the caller's offer has ended: it timed out, was
	// rejected, was lost when the worker left, or was already answered.
	ErrOfferExpired = errors.New("offer expired or already answered")
	// ErrNotAssigned: done for a task that is not assigned to the caller.
	ErrNotAssigned = errors.New("task not assigned to you")
	// ErrForced: a forced-mode task arrives assigned and cannot be
	// rejected.
	ErrForced = errors.New("a forced-mode task cannot be rejected")
	// ErrClosed: the manager was closed (the server is shutting down).
	ErrClosed = errors.New("queues closed")
)
