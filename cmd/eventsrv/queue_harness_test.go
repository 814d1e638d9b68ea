package main

// Helpers for the transport-level tests of work queues (#15): workers over
// a WebSocket or an SSE wait stream behind one type, so that a scenario can
// run with either or a mix, and task posting that goroutines other than the
// test's may call.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// qNotice is what a worker is told: an offer or a forced assignment
// ("task"), or the end of an offer ("expired"). For SSE, Type is the
// event's name and TaskID repeats ID.
type qNotice struct {
	Type     string          `json:"type"`
	TaskID   string          `json:"taskId"`
	Queue    string          `json:"queue"`
	ID       string          `json:"id"`
	Assigned bool            `json:"assigned"`
	Attempt  int             `json:"attempt"`
	Data     json.RawMessage `json:"data"`
	Raw      string          `json:"-"` // the frame, or the SSE event's data line
	At       time.Time       `json:"-"` // when it was read
}

// qWorker is one worker connection: a WebSocket that sent "work", or a
// GET /queue/{name}/wait stream whose answers are POSTs. Its notices come
// on a channel, closed when the connection ends; its methods may be
// called from any one goroutine at a time (actions wait for their answer).
type qWorker struct {
	name    string
	sse     bool
	notices chan qNotice
	quit    chan struct{} // closed at cleanup: the reader stops sending
	ended   chan struct{} // closed when the reader returns

	// WebSocket
	ws      *websocket.Conn
	replies chan map[string]any
	wmu     sync.Mutex

	// SSE
	base, queue, auth string
	body              io.ReadCloser
	post              *http.Client
	pings             chan struct{} // a keep-alive comment was read

	endErr error // why the reader returned; read after ended
}

// broadcastHTTP is the broadcast server's http(s) base URL.
func (s *server) broadcastHTTP() string {
	return "http" + strings.TrimPrefix(strings.TrimSuffix(s.wsURL, "/"), "ws")
}

func newQWorker(name string) *qWorker {
	return &qWorker{name: name, notices: make(chan qNotice, 4096), quit: make(chan struct{}), ended: make(chan struct{}),
		replies: make(chan map[string]any, 64), pings: make(chan struct{}, 1)}
}

// wsWorker dials, inits with auth (a full Authorization value) and sends
// work for queues. The reader runs from before the work message: offers
// for tasks already waiting arrive before its answer.
func (s *server) wsWorker(name, auth string, maxInFlight int, queues ...string) *qWorker {
	s.t.Helper()
	c := s.dial()
	require.Equal(s.t, `{"type":"init","code":"OK"}`, sendInit(s.t, c, initMsg(auth)))
	require.NoError(s.t, c.SetReadDeadline(time.Time{})) // sendInit's; the reader waits as long as the test
	w := newQWorker(name)
	w.ws = c
	go w.readWS()
	s.t.Cleanup(w.stop)
	msg, err := json.Marshal(map[string]any{"type": "work", "queues": queues, "max_in_flight": maxInFlight})
	require.NoError(s.t, err)
	require.NoError(s.t, c.WriteMessage(websocket.TextMessage, msg))
	select {
	case m, ok := <-w.replies:
		require.True(s.t, ok, "the connection ended before the work answer")
		require.Equal(s.t, map[string]any{"type": "work", "code": "OK"}, m)
	case <-time.After(10 * time.Second):
		s.t.Fatalf("%s: no answer to work", name)
	}
	return w
}

// sseWorker opens GET /queue/{queue}/wait with auth (an Authorization
// value; empty to pass a JWT in query instead) and requires 200. query is
// added as it is ("max_in_flight=2", "token=…").
func (s *server) sseWorker(name, auth, queue, query string) *qWorker {
	s.t.Helper()
	u := s.broadcastHTTP() + "/queue/" + url.PathEscape(queue) + "/wait"
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(s.t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	// A client of its own: the stream holds its connection.
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	require.NoError(s.t, err)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s.t.Fatalf("%s: GET /queue/%s/wait: %d %s", name, queue, resp.StatusCode, b)
	}
	require.Equal(s.t, "text/event-stream", resp.Header.Get("Content-Type"))
	w := newQWorker(name)
	w.sse, w.base, w.queue, w.auth, w.body = true, s.broadcastHTTP(), queue, auth, resp.Body
	tr := &http.Transport{}
	w.post = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	go w.readSSE(bufio.NewReader(resp.Body))
	s.t.Cleanup(func() {
		w.stop()
		tr.CloseIdleConnections()
	})
	return w
}

// stop ends the connection and waits for the reader.
func (w *qWorker) stop() {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	w.kill()
	<-w.ended
}

// kill cuts the connection at once, without a close frame: a crashed
// worker, or a closed tab.
func (w *qWorker) kill() {
	if w.sse {
		_ = w.body.Close()
		return
	}
	_ = w.ws.UnderlyingConn().Close()
}

func (w *qWorker) emit(n qNotice) bool {
	n.At = time.Now()
	select {
	case w.notices <- n:
		return true
	case <-w.quit:
		return false
	}
}

func (w *qWorker) readWS() {
	defer close(w.ended)
	defer close(w.notices)
	defer close(w.replies)
	for {
		_, raw, err := w.ws.ReadMessage()
		if err != nil {
			w.endErr = err
			return
		}
		var m map[string]any
		if json.Unmarshal(raw, &m) != nil {
			m = map[string]any{"type": "unparsable", "raw": string(raw)}
		}
		switch m["type"] {
		case "task", "expired":
			var n qNotice
			_ = json.Unmarshal(raw, &n)
			n.Raw = string(raw)
			if !w.emit(n) {
				return
			}
		default:
			delete(m, "message") // for people; tests compare codes
			select {
			case w.replies <- m:
			case <-w.quit:
				return
			}
		}
	}
}

// readSSE parses the wait stream: "task" and "expired" events become
// notices; keep-alive comments are signalled on pings.
func (w *qWorker) readSSE(br *bufio.Reader) {
	defer close(w.ended)
	defer close(w.notices)
	var event, data string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if event != "" || data != "" {
				var n qNotice
				if json.Unmarshal([]byte(data), &n) != nil {
					n.ID = "unparsable"
				}
				n.Type, n.Raw = event, data
				if !w.emit(n) {
					return
				}
			}
			event, data = "", ""
		case strings.HasPrefix(line, ":"):
			select {
			case w.pings <- struct{}{}:
			default:
			}
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
}

// closedWith waits for the server to close the WebSocket and returns its
// close frame.
func (w *qWorker) closedWith(t *testing.T) *websocket.CloseError {
	t.Helper()
	for {
		select {
		case <-w.notices:
			continue
		case <-w.ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not closed", w.name)
		}
		break
	}
	var ce *websocket.CloseError
	require.ErrorAs(t, w.endErr, &ce)
	return ce
}

// next returns the next notice, failing t after 10 s or when the
// connection ended.
func (w *qWorker) next(t *testing.T) qNotice {
	t.Helper()
	select {
	case n, ok := <-w.notices:
		require.True(t, ok, "%s: the connection ended", w.name)
		return n
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no notice within 10 s", w.name)
		return qNotice{}
	}
}

// offer returns the next notice, requiring a task with that id (any id
// when empty) and attempt.
func (w *qWorker) offer(t *testing.T, id string, attempt int, assigned bool) qNotice {
	t.Helper()
	n := w.next(t)
	require.Equal(t, "task", n.Type, "%s: %s", w.name, n.Raw)
	if id != "" {
		require.Equal(t, id, n.ID, "%s: %s", w.name, n.Raw)
	}
	require.Equal(t, attempt, n.Attempt, "%s: %s", w.name, n.Raw)
	require.Equal(t, assigned, n.Assigned, "%s: %s", w.name, n.Raw)
	if w.sse {
		require.Equal(t, n.ID, n.TaskID, "SSE events carry taskId as the QueueTasks service did")
	}
	return n
}

// quiet requires that no notice is waiting: used after a step that
// already had its signal (an answer arrived after the frames it caused).
func (w *qWorker) quiet(t *testing.T) {
	t.Helper()
	select {
	case n := <-w.notices:
		t.Fatalf("%s: unexpected notice %s %s", w.name, n.Type, n.Raw)
	default:
	}
}

// act sends an assign, reject or done for the task id and returns the
// answer's code. Over SSE it is a POST, whose status must match the code.
// It fails only on transport errors, so that worker goroutines may call it.
func (w *qWorker) act(typ, id string) (string, error) {
	if w.sse {
		return w.postAction(typ, w.queue, id)
	}
	msg, _ := json.Marshal(map[string]string{"type": typ, "id": id})
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if err := w.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		return "", err
	}
	select {
	case m, ok := <-w.replies:
		if !ok {
			return "", errors.New(w.name + ": the connection ended before the answer")
		}
		if m["type"] != typ || m["id"] != id {
			return "", fmt.Errorf("%s: %s %s answered %v", w.name, typ, id, m)
		}
		code, _ := m["code"].(string)
		return code, nil
	case <-time.After(10 * time.Second):
		return "", fmt.Errorf("%s: no answer to %s %s", w.name, typ, id)
	}
}

// qStatus is the HTTP status of each task action's code (README).
var qStatus = map[string]int{"OK": 200, "UNKNOWN_TASK": 404, "NOT_OFFERED_TO_YOU": 409, "OFFER_EXPIRED": 409,
	"NOT_ASSIGNED": 409, "ASSIGNED_BY_FORCE": 409}

// postAction is POST /queue/{queue}/tasks/{id}/{typ} with w's credentials.
func (w *qWorker) postAction(typ, queue, id string) (string, error) {
	u := w.base + "/queue/" + url.PathEscape(queue) + "/tasks/" + url.PathEscape(id) + "/" + typ
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		return "", err
	}
	if w.auth != "" {
		req.Header.Set("Authorization", w.auth)
	}
	resp, err := w.post.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	var a struct{ Code, ID string }
	if err := json.Unmarshal(b, &a); err != nil {
		return "", fmt.Errorf("%s: %s %s: %d %q", w.name, typ, id, resp.StatusCode, b)
	}
	if want, ok := qStatus[a.Code]; !ok || want != resp.StatusCode || (a.Code == "OK" && a.ID != id) {
		return a.Code, fmt.Errorf("%s: %s %s: status %d with %s", w.name, typ, id, resp.StatusCode, b)
	}
	return a.Code, nil
}

// must is act for the test's goroutine: it requires the code.
func (w *qWorker) must(t *testing.T, typ, id, code string) {
	t.Helper()
	got, err := w.act(typ, id)
	require.NoError(t, err)
	require.Equal(t, code, got, "%s: %s %s", w.name, typ, id)
}

// postTask adds a task with POST /queue/{path} (path already escaped,
// with its query) and returns its ID; safe for any goroutine.
func (s *server) postTask(c *http.Client, auth, path, data string) (string, error) {
	req, err := http.NewRequest(http.MethodPost, s.listenURL+"/queue/"+path, strings.NewReader(data))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", auth)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	var a struct{ Code, ID string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &a) != nil || a.Code != "OK" || a.ID == "" {
		return "", fmt.Errorf("POST /queue/%s: %d %s", path, resp.StatusCode, b)
	}
	return a.ID, nil
}

// take is POST /queue/{queue}/take on the broadcast server: the task, or
// ok false for 204.
func (s *server) take(c *http.Client, auth, queue string) (n qNotice, ok bool, err error) {
	req, err := http.NewRequest(http.MethodPost, s.broadcastHTTP()+"/queue/"+url.PathEscape(queue)+"/take", nil)
	if err != nil {
		return n, false, err
	}
	req.Header.Set("Authorization", auth)
	resp, err := c.Do(req)
	if err != nil {
		return n, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return n, false, err
	}
	switch resp.StatusCode {
	case http.StatusNoContent:
		if len(b) != 0 {
			return n, false, fmt.Errorf("204 with a body: %q", b)
		}
		return n, false, nil
	case http.StatusOK:
		var a struct {
			Code string
			Task json.RawMessage
		}
		if err := json.Unmarshal(b, &a); err != nil || a.Code != "OK" {
			return n, false, fmt.Errorf("take: %s", b)
		}
		if err := json.Unmarshal(a.Task, &n); err != nil {
			return n, false, err
		}
		n.Raw = string(a.Task)
		return n, true, nil
	}
	return n, false, fmt.Errorf("take: %d %s", resp.StatusCode, b)
}

// queueSample is one sample of a work queue's metrics, e.g.
// queueSample(m, "tasks_total", "q", "added").
func queueSample(m map[string]float64, metric, queue, event string) float64 {
	if event != "" {
		return m[`eventsrv_queue_`+metric+`{event="`+event+`",queue="`+queue+`"}`]
	}
	return m[`eventsrv_queue_`+metric+`{queue="`+queue+`"}`]
}

// waitWorkers waits until the queue has n live workers. An SSE worker's
// response head may reach it before it joins (the head is queued first),
// and the order of joining is the order of offers.
func (s *server) waitWorkers(queue string, n int) {
	s.t.Helper()
	require.Eventually(s.t, func() bool {
		return queueSample(s.scrape(), "workers", queue, "") == float64(n)
	}, 10*time.Second, 5*time.Millisecond, "queue %s never had %d workers", queue, n)
}

// queueJWT is a JWT for the server's JWT_SECRET (jwtSecret) with subject
// sub and these claims (work, enqueue, …), valid for ttl.
func queueJWT(t testing.TB, sub string, ttl time.Duration, claims map[string]any) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(ttl).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(jwtSecret))
	require.NoError(t, err)
	return tok
}
