package broadcast

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"eventsrv/auth"
	"eventsrv/internal/jsonhttp"
)

// Work queues over HTTP, on the broadcast server, for workers that cannot
// keep a WebSocket (the QueueTasks service's browsers):
//
//	GET  /queue/{name}/wait[?max_in_flight=n]       offers as SSE "task" events
//	POST /queue/{name}/tasks/{id}/assign|reject|done
//	POST /queue/{name}/take                         a free task, assigned at once; 204 when none
//
// Names are percent-encoded in the path. Each request authenticates as
// GET /events does; the POSTs act for whichever of the token's workers the
// task was offered to (the token's subject names them).

// queueRoute is a parsed /queue/ path.
type queueRoute struct {
	name, id, action string // action: wait, take, assign, reject or done
}

// parseQueuePath parses the escaped path of a /queue/ request.
func parseQueuePath(escaped string) (queueRoute, bool) {
	parts := strings.Split(strings.TrimPrefix(escaped, "/queue/"), "/")
	var rt queueRoute
	switch {
	case len(parts) == 2 && (parts[1] == "wait" || parts[1] == "take"):
		rt.action = parts[1]
	case len(parts) == 4 && parts[1] == "tasks" && (parts[3] == "assign" || parts[3] == "reject" || parts[3] == "done"):
		id, err := url.PathUnescape(parts[2])
		if err != nil || id == "" {
			return rt, false
		}
		rt.id, rt.action = id, parts[3]
	default:
		return rt, false
	}
	name, err := url.PathUnescape(parts[0])
	if err != nil || name == "" {
		return rt, false
	}
	rt.name = name
	return rt, true
}

// taskStatus is the HTTP status of each task action's refusal.
var taskStatus = map[string]int{
	"UNKNOWN_TASK":       http.StatusNotFound,
	"NOT_OFFERED_TO_YOU": http.StatusConflict,
	"OFFER_EXPIRED":      http.StatusConflict,
	"NOT_ASSIGNED":       http.StatusConflict,
	"ASSIGNED_BY_FORCE":  http.StatusConflict,
	"UNAVAILABLE":        http.StatusServiceUnavailable,
}

// serveQueue answers a /queue/ request on the broadcast server.
func (h *Hub) serveQueue(w http.ResponseWriter, r *http.Request) {
	rt, ok := parseQueuePath(r.URL.EscapedPath())
	switch {
	case h.opts.Queues == nil:
		writeError(w, http.StatusNotFound, "NOT_FOUND", "this server has no work queues")
		return
	case !ok:
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no such path: GET /queue/{name}/wait, POST /queue/{name}/take, POST /queue/{name}/tasks/{id}/assign|reject|done")
		return
	}
	method := http.MethodPost
	if rt.action == "wait" {
		method = http.MethodGet
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", fmt.Sprintf("/queue/{name}/%s answers %s", rt.action, method))
		return
	}
	if h.refuse(w, r, "queue") {
		return
	}
	if refused := h.checkQueueName(rt.name); refused != nil {
		writeError(w, http.StatusBadRequest, string(refused.code), refused.message)
		return
	}
	perms, ok := h.authenticateStream(w, r)
	if !ok {
		return
	}
	if !perms.Work.Allows(rt.name) {
		writeError(w, http.StatusForbidden, string(InitForbidden),
			fmt.Sprintf("this token may not take tasks from %q: give it work=%s (or a pattern) in the tokens file", shortName(rt.name), shortName(rt.name)))
		return
	}
	q := h.opts.Queues
	switch rt.action {
	case "wait":
		h.serveWait(w, r, perms, rt.name)
	case "take":
		n, found := q.Take(perms.Subject, rt.name)
		if !found {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		n.Kind = "task"
		jsonhttp.Write(w, http.StatusOK, append(append([]byte(`{"code":"OK","task":`), taskJSON(n, false)...), '}'))
	default:
		var err error
		switch rt.action {
		case "assign":
			err = q.AssignAs(perms.Subject, rt.name, rt.id)
		case "reject":
			err = q.RejectAs(perms.Subject, rt.name, rt.id)
		default:
			err = q.DoneAs(perms.Subject, rt.name, rt.id)
		}
		if err != nil {
			code := TaskCode(err)
			writeError(w, taskStatus[code], code, err.Error())
			return
		}
		jsonhttp.Write(w, http.StatusOK, []byte(`{"code":"OK","id":`+jsonhttp.Quote(rt.id)+`}`))
	}
}

// serveWait turns the request into an SSE stream of the queue's offers, as
// the QueueTasks service's wait-sse did: "task" events, a keep-alive
// comment every PING_INTERVAL, and "expired" when an offer times out.
func (h *Hub) serveWait(w http.ResponseWriter, r *http.Request, perms auth.Permissions, name string) {
	n := 1
	if v := r.URL.Query().Get("max_in_flight"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > MaxInFlight {
			writeError(w, http.StatusBadRequest, string(InitInvalidQueues), fmt.Sprintf("max_in_flight must be 1 to %d", MaxInFlight))
			return
		}
	}
	h.startSSE(w, r, perms, func(c *client, head []byte) {
		// Joined before the response's head, as a WebSocket worker is
		// before its OK (work.go), and held so that offers follow it.
		c.worker = c.newWorker(perms.Subject, n)
		c.workQueues = []string{name}
		c.worker.Hold()
		h.opts.Queues.Join(c.worker, []string{name})
		c.enqueue(head)
		c.worker.Release()
	})
}
