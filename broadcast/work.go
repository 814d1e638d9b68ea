package broadcast

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"eventsrv/internal/jsonhttp"
	"eventsrv/queue"
)

// Work queues over the subscribers' connections (package queue has the
// model): after an init, a WebSocket sends
//
//	{"type":"work","queues":["tickets"],"max_in_flight":1}
//
// and gets offers {"type":"task",...}, which it answers with assign,
// reject and done messages; an SSE stream at GET /queue/{name}/wait gets
// the same offers as "task" events (queuehttp.go).

// Queues is the work-queue manager as the connections use it;
// *queue.Manager implements it.
type Queues interface {
	Join(w *queue.Worker, queues []string)
	Leave(w *queue.Worker)
	Assign(w *queue.Worker, id string) error
	Reject(w *queue.Worker, id string) error
	Done(w *queue.Worker, id string) error
	AssignAs(subject, queue, id string) error
	RejectAs(subject, queue, id string) error
	DoneAs(subject, queue, id string) error
	Take(subject, queue string) (queue.Notice, bool)
}

// Message types and codes of work queues.
const (
	typeWork   = "work"
	typeAssign = "assign"
	typeReject = "reject"
	typeDone   = "done"

	// MaxInFlight bounds a worker's max_in_flight.
	MaxInFlight = 1000

	InitInvalidQueues InitCode = "INVALID_QUEUES"
	InitInvalidID     InitCode = "INVALID_TASK_ID"
	InitNoQueues      InitCode = "QUEUES_OFF"
)

// workMessage is a work, assign, reject or done message.
type workMessage struct {
	Type        string   `json:"type"`
	Queues      []string `json:"queues"`
	MaxInFlight *int     `json:"max_in_flight"`
	ID          *string  `json:"id"`
}

// taskRefusal is the refusal of a task action that the manager refused.
func taskRefusal(err error) *refusal {
	if code, ok := queue.CodeOf(err); ok {
		return &refusal{InitCode(code), err.Error()}
	}
	return &refusal{"UNKNOWN_TASK", err.Error()}
}

// TaskCode is the wire code of a task action's error, for the HTTP
// transport.
func TaskCode(err error) string { return string(taskRefusal(err).code) }

// handleWork answers a work, assign, reject or done message; under
// c.authMu.
func (c *client) handleWork(typ string, msg []byte) {
	var m workMessage
	var refused *refusal
	switch {
	case json.Unmarshal(msg, &m) != nil:
		refused = &refusal{InitInvalidSyntax, "not a JSON object of the " + typ + " message's form (see the README's work queues)"}
	case c.hub.opts.Queues == nil:
		refused = &refusal{InitNoQueues, "this server has no work queues"}
	case !c.initialized.Load():
		refused = notInitialized
	case typ == typeWork:
		var join func()
		if join, refused = c.startWork(m); refused == nil {
			// Joined before the OK, so that a worker told OK has its
			// place in the line: one that joins after it was told waits
			// behind it. Held meanwhile, so that the offers Join makes
			// go out after the OK.
			c.worker.Hold()
			join()
			c.enqueue(workReply(typ, m.ID, nil))
			c.worker.Release()
			return
		}
	default:
		if w := c.worker; w != nil {
			// The answer first: a reject (or an assign or done that
			// frees a slot) makes the next offer before it returns, and
			// that offer waits until the answer is queued.
			w.Hold()
			defer w.Release()
		}
		refused = c.taskAction(typ, m)
	}
	if refused != nil {
		c.enqueue(workReply(typ, m.ID, refused))
		return
	}
	c.enqueue(workReply(typ, m.ID, nil))
}

// startWork checks a work message and returns what makes the connection
// a worker of its queues, to be called once the OK is queued.
func (c *client) startWork(m workMessage) (join func(), refused *refusal) {
	if len(m.Queues) == 0 {
		return nil, &refusal{InitInvalidQueues, `"queues" must be a non-empty array of queue names, e.g. "queues":["tickets"]`}
	}
	for _, q := range m.Queues {
		if r := c.hub.checkQueueName(q); r != nil {
			return nil, r
		}
		if !c.perms.Work.Allows(q) {
			return nil, &refusal{InitForbidden, fmt.Sprintf("this token may not take tasks from %q: give it work=%s (or a pattern) in the tokens file", shortName(q), shortName(q))}
		}
	}
	n := 1
	if m.MaxInFlight != nil {
		n = *m.MaxInFlight
	}
	if n < 1 || n > MaxInFlight {
		return nil, &refusal{InitInvalidQueues, fmt.Sprintf(`"max_in_flight" must be 1 to %d`, MaxInFlight)}
	}
	if c.worker == nil {
		c.worker = c.newWorker(c.perms.Subject, n)
	}
	c.workQueues = append(c.workQueues, m.Queues...)
	return func() { c.hub.opts.Queues.Join(c.worker, m.Queues) }, nil
}

// taskAction applies an assign, reject or done.
func (c *client) taskAction(typ string, m workMessage) *refusal {
	if m.ID == nil || *m.ID == "" {
		return &refusal{InitInvalidID, `"id" must be the task's id from its offer`}
	}
	if c.worker == nil {
		return &refusal{"NOT_OFFERED_TO_YOU", `this connection takes no tasks: send {"type":"work","queues":[...]} first`}
	}
	q := c.hub.opts.Queues
	var err error
	switch typ {
	case typeAssign:
		err = q.Assign(c.worker, *m.ID)
	case typeReject:
		err = q.Reject(c.worker, *m.ID)
	default:
		err = q.Done(c.worker, *m.ID)
	}
	if err != nil {
		return taskRefusal(err)
	}
	return nil
}

// checkQueueName refuses a queue name that could not be an event name.
func (h *Hub) checkQueueName(q string) *refusal {
	switch {
	case q == "":
		return &refusal{InitInvalidQueues, "a queue name must not be empty"}
	case !utf8.ValidString(q):
		return &refusal{InitInvalidQueues, "a queue name must be UTF-8 (percent-encoded in paths)"}
	case h.opts.MaxEventNameBytes > 0 && len(q) > h.opts.MaxEventNameBytes:
		return &refusal{InitNameTooLong, fmt.Sprintf("a queue name is %d bytes; at most %d are allowed (MAX_EVENT_NAME_BYTES)", len(q), h.opts.MaxEventNameBytes)}
	}
	return nil
}

// workReply is the answer to a work message: {"type":"work","code":"OK"},
// or for a task action {"type":"assign","id":"…","code":"OK"}, with a
// message when refused.
func workReply(typ string, id *string, r *refusal) []byte {
	b := []byte(`{"type":"` + typ + `"`)
	if id != nil && typ != typeWork {
		b = append(b, `,"id":`...)
		b = append(b, jsonhttp.Quote(*id)...)
	}
	if r == nil {
		return textFrame(append(b, `,"code":"OK"}`...))
	}
	b = append(b, `,"code":"`+string(r.code)+`","message":`...)
	b = append(b, jsonhttp.Quote(r.message)...)
	return textFrame(append(b, '}'))
}

// newWorker makes the connection a worker of subject that holds at most
// maxInFlight tasks; it joins no queue yet.
func (c *client) newWorker(subject string, maxInFlight int) *queue.Worker {
	var w *queue.Worker
	w = queue.NewWorker(subject, maxInFlight, func(n queue.Notice) { c.notifyTask(w, n) })
	return w
}

// notifyTask queues a notice from the manager to the worker w: a task frame
// (an offer or a forced assignment), or an expired one. A connection that
// is closing (an admin closed it, its token was narrowed, it was cut off
// as slow, or this very frame overflowed its queue) drops the frame; the
// worker then leaves at once, so that the task goes to another worker now
// rather than when the connection's teardown gives it back, after the
// closing handshake.
func (c *client) notifyTask(w *queue.Worker, n queue.Notice) {
	if c.sse {
		c.enqueue(sseTaskFrame(n))
	} else {
		c.enqueue(textFrame(taskJSON(n, false)))
	}
	if c.isClosing() {
		c.hub.opts.Queues.Leave(w) // the manager allows this from notify
	}
}

// leaveClosing gives back the tasks of a closing connection's worker,
// before its teardown, which waits for the peer's side of the closing
// handshake (up to closeGrace, or WRITE_TIMEOUT for a peer that reads
// nothing). The sweep calls it for every closing connection; when the
// reader holds authMu it does nothing, and the next sweep tries again.
func (c *client) leaveClosing() {
	if !c.authMu.TryLock() {
		return
	}
	w := c.worker
	c.authMu.Unlock()
	if w != nil {
		c.hub.opts.Queues.Leave(w)
	}
}

// taskJSON is a notice as JSON: {"type":"task","queue":…,"id":…,
// "assigned":false,"attempt":1,"data":…}, or {"type":"expired",…}. For SSE
// (sse true) the type is the event's name, and "taskId" repeats the ID as
// the QueueTasks service's events had it.
func taskJSON(n queue.Notice, sse bool) []byte {
	b := []byte{'{'}
	if !sse {
		b = append(b, `"type":"`+n.Kind+`",`...)
	} else {
		b = append(b, `"taskId":`...)
		b = append(b, jsonhttp.Quote(n.ID)...)
		b = append(b, ',')
	}
	b = append(b, `"queue":`...)
	b = append(b, jsonhttp.Quote(n.Queue)...)
	b = append(b, `,"id":`...)
	b = append(b, jsonhttp.Quote(n.ID)...)
	if n.Kind == "task" {
		b = append(b, `,"assigned":`...)
		b = strconv.AppendBool(b, n.Assigned)
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(n.Attempt), 10)
		b = append(b, `,"data":`...)
		if len(n.Data) == 0 {
			b = append(b, "null"...)
		} else {
			b = append(b, n.Data...)
		}
	}
	return append(b, '}')
}

// sseTaskFrame is a notice as an SSE event named task or expired.
func sseTaskFrame(n queue.Notice) []byte {
	b := []byte("event: " + n.Kind + "\ndata: ")
	b = append(b, taskJSON(n, true)...)
	return append(b, "\n\n"...)
}
