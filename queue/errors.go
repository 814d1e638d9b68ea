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

// codes names the errors of a task's actions on the wire: in the answers of
// both transports and between cluster instances, so that they agree.
var codes = []struct {
	err  error
	code string
}{
	{ErrUnknownTask, "UNKNOWN_TASK"},
	{ErrNotOfferedToYou, "NOT_OFFERED_TO_YOU"},
	{ErrOfferExpired, "OFFER_EXPIRED"},
	{ErrNotAssigned, "NOT_ASSIGNED"},
	{ErrForced, "ASSIGNED_BY_FORCE"},
	{ErrClosed, "UNAVAILABLE"},
}

// CodeOf returns the wire code of a task action's error (matched with
// errors.Is), and false when it has none.
func CodeOf(err error) (string, bool) {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code, true
		}
	}
	return "", false
}

// ErrorOf returns the error a wire code names, and false when it names none.
func ErrorOf(code string) (error, bool) {
	for _, c := range codes {
		if c.code == code {
			return c.err, true
		}
	}
	return nil, false
}
