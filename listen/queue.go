package listen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"eventsrv/internal/jsonhttp"
	"eventsrv/queue"
)

// Enqueuer adds tasks to work queues; *queue.Manager is one.
type Enqueuer interface {
	Add(queue string, data json.RawMessage, o queue.AddOptions) (id string, err error)
}

// Codes of POST /queue/{name}.
const (
	CodeQueueFull     Code = "QUEUE_FULL"
	CodeTooManyQueues Code = "TOO_MANY_QUEUES"
)

// enqueue serves POST /queue/{name}: the body is the task's data (any
// JSON); ?mode=assign offers it already assigned (the QueueTasks service's
// forced mode), ?complete=1 makes the worker also send done.
func (h *handler) enqueue(w http.ResponseWriter, r *http.Request) {
	if h.opts.Queues == nil {
		writeError(w, CodeNotFound, "this server has no work queues")
		return
	}
	escaped := strings.TrimPrefix(r.URL.EscapedPath(), "/queue/")
	name, err := url.PathUnescape(escaped)
	if err != nil || name == "" || strings.Contains(escaped, "/") {
		writeError(w, CodeNotFound, "no such path: add a task with POST /queue/{name}, the name percent-encoded")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.answer(w, CodeMethodNotAllowed, "add a task with POST /queue/{name}")
		return
	}
	perms, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	if !utf8.ValidString(name) {
		h.answer(w, CodeInvalidBody, "the queue name must be UTF-8, percent-encoded in the path")
		return
	}
	if limit := h.opts.MaxEventNameBytes; limit > 0 && len(name) > limit {
		h.answer(w, CodeNameTooLong, fmt.Sprintf("the queue name is %d bytes; at most %d are allowed (MAX_EVENT_NAME_BYTES)", len(name), limit))
		return
	}
	if !perms.Enqueue.Allows(name) {
		h.answer(w, CodeForbidden, fmt.Sprintf("this token may not add tasks to %q: give it enqueue=%s (or a pattern) in the tokens file", logName(name), logName(name)))
		return
	}
	var o queue.AddOptions
	q := r.URL.Query()
	switch q.Get("mode") {
	case "", "offer":
	case "assign":
		o.Forced = true
	default:
		h.answer(w, CodeInvalidBody, `mode must be "assign" (forced assignment) or absent (offers)`)
		return
	}
	switch q.Get("complete") {
	case "", "0", "false":
	case "1", "true":
		o.Complete = true
	default:
		h.answer(w, CodeInvalidBody, "complete must be 1 or absent")
		return
	}
	body, ok := h.readBody(w, r, h.opts.MaxBodyBytes, "MAX_BODY_BYTES", "", "task")
	if !ok {
		return
	}
	// Compact: the data travels in SSE data lines, which hold no line break.
	var data bytes.Buffer
	if len(bytes.TrimSpace(body)) == 0 {
		data.WriteString("null")
	} else if err := json.Compact(&data, body); err != nil {
		h.answer(w, CodeInvalidBody, "the body is the task's data and must be JSON: "+err.Error())
		return
	}
	id, err := h.opts.Queues.Add(name, data.Bytes(), o)
	if errors.Is(err, queue.ErrQueueFull) {
		h.answer(w, CodeQueueFull, err.Error()+": take tasks from it, or raise QUEUE_MAX_TASKS")
		return
	}
	if errors.Is(err, queue.ErrTooManyQueues) {
		h.answer(w, CodeTooManyQueues, err.Error()+" hold tasks: finish or take the tasks of another queue, or raise QUEUE_MAX_QUEUES")
		return
	}
	if err != nil {
		h.answer(w, CodeUnavailable, err.Error())
		return
	}
	h.count(CodeOK)
	jsonhttp.Write(w, http.StatusOK, []byte(`{"code":"OK","id":`+jsonhttp.Quote(id)+`}`))
}
