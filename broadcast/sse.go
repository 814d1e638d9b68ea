package broadcast

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strings"

	"eventsrv/auth"
	"eventsrv/history"
)

// Server-Sent Events: GET /events?event=a&event=b on the broadcast server,
// for browsers (EventSource). An SSE subscriber is a client like a
// WebSocket one, on the same queues, flushers, poller and sweep; only the
// bytes differ: each event is encoded for SSE once per publish, when its
// topic has SSE subscribers, and pings are comment lines. The stream has no
// replies and no pongs: a peer that goes away is found by end of stream or
// a failed write.

// ssePath is where the broadcast server serves SSE.
const ssePath = "/events"

// ssePing keeps proxies and browsers from closing an idle stream.
var ssePing = []byte(": ping\n\n")

// sseEventFrame encodes one delivery: "id: <id>", "event: <name>" and the
// data as "data:" lines (a line break inside the JSON, which can only be
// white space, becomes a line of its own; EventSource joins them with "\n").
func sseEventFrame(id history.ID, name string, data []byte) []byte {
	b := make([]byte, 0, len("id: \nevent: \n\n")+history.MaxIDLen+len(name)+len(data)+8)
	b = append(b, "id: "...)
	b = id.AppendTo(b)
	b = append(b, "\nevent: "...)
	b = append(b, name...)
	b = append(b, '\n')
	for len(data) > 0 {
		var line []byte
		i := bytes.IndexAny(data, "\r\n")
		switch {
		case i < 0:
			line, data = data, nil
		case data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n':
			line, data = data[:i], data[i+2:]
		default:
			line, data = data[:i], data[i+1:]
		}
		b = append(b, "data: "...)
		b = append(b, line...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}

// ssePosition sets the browser's lastEventId to id without dispatching an
// event (a field block with no data only updates the last event ID), so
// that a stream that has received no event yet still resumes from where
// it began when EventSource reconnects.
func ssePosition(id history.ID) []byte {
	return append(id.AppendTo([]byte("id: ")), "\n\n"...)
}

// sseReset tells a resuming stream that events were lost: the client
// reloads from its own source of truth.
var sseReset = []byte("event: reset\ndata: {\"recovered\":false}\n\n")

// sseComment is a comment line, which EventSource ignores: the reason a
// stream is closed travels this way.
func sseComment(text string) []byte {
	return []byte(": " + strings.NewReplacer("\r", " ", "\n", " ").Replace(text) + "\n\n")
}

// validSSEName reports whether an event name can be an SSE event field.
func validSSEName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "\r\n")
}

// serveSSE answers GET /events: it authenticates (Authorization header, or
// a JWT in the token query parameter, since EventSource cannot send
// headers), checks the events, then turns the connection into a stream.
func (h *Hub) serveSSE(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "open the stream with GET /events?event=<name>")
		return
	}
	if h.refuse(w, r, "sse") {
		return
	}
	q := r.URL.Query()
	events := q["event"]
	if len(events) == 0 || !allValid(events) {
		writeError(w, http.StatusBadRequest, string(InitInvalidEventsMissing),
			"name the events in the query, one event parameter each, without line breaks: /events?event=a&event=b")
		return
	}
	perms, ok := h.authenticateStream(w, r)
	if !ok {
		return
	}
	// The same checks as a WebSocket init (permissions, MAX_SUBSCRIPTIONS,
	// duplicates), on a client that has no subscription yet.
	pending := &client{hub: h, subs: make(map[string]struct{})}
	added, refused := pending.newEvents(events, perms)
	if refused != nil {
		status := http.StatusBadRequest
		if refused.code == InitForbidden {
			status = http.StatusForbidden
		}
		writeError(w, status, string(refused.code), refused.message)
		return
	}
	// EventSource sends Last-Event-ID when it reconnects; lastEventId is
	// for a page that reopens a stream itself.
	since := r.Header.Get("Last-Event-ID")
	if since == "" {
		since = q.Get("lastEventId")
	}
	h.startSSE(w, r, perms, func(c *client, head []byte) { c.subscribeSSE(added, since, head) })
}

// authenticateStream authenticates a request for a stream: the
// Authorization header, or a JWT in the token query parameter (EventSource
// cannot send headers). It answers a refused one.
func (h *Hub) authenticateStream(w http.ResponseWriter, r *http.Request) (auth.Permissions, bool) {
	creds := r.Header.Get("Authorization")
	inQuery := creds == "" && r.URL.Query().Get("token") != ""
	if inQuery {
		// For JWTs only: a long-lived Basic token in a URL would end up
		// in proxies' and browsers' logs. A Basic token sent this way is
		// verified as a JWT, and fails.
		creds = "Bearer " + r.URL.Query().Get("token")
	}
	perms, err := h.auth.Authenticate(creds, r.RemoteAddr, "sse")
	if err != nil {
		code := InitUnauthenticated
		if errors.Is(err, auth.ErrUnrecognizedScheme) {
			code = InitAuthUnrecognizedScheme
		}
		message := auth.Explain(err, creds, "the Authorization header")
		if inQuery {
			message = "?token= takes a JWT only (a token in a URL ends up in logs), and this one is not accepted; " +
				"send a Basic token in the Authorization header instead"
		}
		writeError(w, http.StatusForbidden, string(code), message)
		return auth.Permissions{}, false
	}
	return perms, true
}

func allValid(events []string) bool {
	for _, e := range events {
		if !validSSEName(e) {
			return false
		}
	}
	return true
}

// startSSE hijacks the connection and registers the stream; begin, called
// with the response head, queues the head and starts what the stream
// carries (a subscription, or a worker's offers), so that the head goes
// through the queue like everything else and precedes it all.
func (h *Hub) startSSE(w http.ResponseWriter, r *http.Request, perms auth.Permissions, begin func(c *client, head []byte)) {
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "INTERNAL", "the connection could not be taken over for the stream: "+err.Error())
		return
	}
	lc := newLockedConn(nc)
	_ = brw // nothing more is read from a GET's connection but its end
	c := h.newSubscriber(r, nil, lc, bufio.NewReaderSize(lc, 64))
	c.sse = true
	c.authMu.Lock() // until subscribed: see Hub.Recheck
	c.grant(perms)
	c.initialized.Store(true)
	if !h.register(c) {
		c.authMu.Unlock()
		_ = nc.Close()
		return
	}
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" +
		"X-Accel-Buffering: no\r\nConnection: close\r\n")
	for _, k := range []string{"Access-Control-Allow-Origin", "Vary"} {
		for _, v := range w.Header().Values(k) {
			head.WriteString(k + ": " + v + "\r\n")
		}
	}
	head.WriteString("\r\n")
	begin(c, head.Bytes())
	c.authMu.Unlock()
	h.startReading(c)
}

// subscribeSSE subscribes a new stream, which always resumes: from since,
// or from now when since is empty. The response head comes first, then a
// reset event if events were lost, the replay, and the position.
func (c *client) subscribeSSE(events []string, since string, head []byte) {
	c.addSubscriptions(events, &since, func(r *resumed) [][]byte {
		frames := make([][]byte, 0, len(r.frames)+3)
		frames = append(frames, head)
		if !r.recovered {
			frames = append(frames, sseReset)
		}
		frames = append(frames, r.frames...)
		return append(frames, ssePosition(r.position))
	})
}
