package main

// Work queues (#15): bad input gets a clear code over each transport, names
// travel percent-encoded, and permissions (enqueue= and work= in the tokens
// file and in JWT claims) are enforced.

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wsReply sends msg on a worker's WebSocket and returns the answer, its
// message taken off.
func wsReply(t *testing.T, w *qWorker, msg string) map[string]any {
	t.Helper()
	require.NoError(t, w.ws.WriteMessage(websocket.TextMessage, []byte(msg)))
	select {
	case m, ok := <-w.replies:
		require.True(t, ok, "the connection ended")
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer to %s", msg)
		return nil
	}
}

// A WebSocket worker's bad answers each get their code, and repeats of
// good ones are harmless.
func TestQueueBadInputWebSocket(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, map[string]string{"MAX_EVENT_NAME_BYTES": "16"})
	a := s.wsWorker("ws-a", "Basic "+testToken, 1, "b")
	c := s.wsWorker("ws-c", "Basic "+testToken, 1, "b", "elsewhere")
	id := s.enqueue("b?complete=1", `1`)
	a.offer(t, id, 1, false) // a joined first

	for _, tc := range []struct {
		who           *qWorker
		typ, id, code string
	}{
		{a, "assign", "nope", "UNKNOWN_TASK"},
		{a, "reject", "nope", "UNKNOWN_TASK"},
		{a, "done", "nope", "UNKNOWN_TASK"},
		{c, "assign", id, "NOT_OFFERED_TO_YOU"}, // offered to a
		{c, "reject", id, "NOT_OFFERED_TO_YOU"},
		{c, "done", id, "NOT_ASSIGNED"},
		{a, "done", id, "NOT_ASSIGNED"}, // offered, not assigned yet
		{a, "assign", id, "OK"},
		{a, "assign", id, "OK"}, // a repeat
		{a, "reject", id, "OFFER_EXPIRED"},
		{c, "assign", id, "NOT_OFFERED_TO_YOU"}, // assigned to a
		{a, "done", id, "OK"},
		{a, "done", id, "OK"}, // a repeat
		{c, "done", id, "NOT_ASSIGNED"},
	} {
		tc.who.must(t, tc.typ, tc.id, tc.code)
	}
	// c refused a task of its own: its late answers are OFFER_EXPIRED.
	other := s.enqueue("elsewhere", `2`)
	c.offer(t, other, 1, false)
	c.must(t, "reject", other, "OK")
	c.offer(t, other, 2, false) // its only worker: around again
	c.must(t, "reject", other, "OK")
	c.offer(t, other, 3, false)
	c.must(t, "assign", other, "OK")
	c.must(t, "reject", other, "OFFER_EXPIRED")

	for msg, code := range map[string]string{
		`{"type":"assign"}`:                                            "INVALID_TASK_ID",
		`{"type":"reject","id":""}`:                                    "INVALID_TASK_ID",
		`{"type":"done","id":5}`:                                       "INVALID_SYNTAX",
		`{"type":"work"}`:                                              "INVALID_QUEUES",
		`{"type":"work","queues":[]}`:                                  "INVALID_QUEUES",
		`{"type":"work","queues":[""]}`:                                "INVALID_QUEUES",
		`{"type":"work","queues":"b"}`:                                 "INVALID_SYNTAX",
		`{"type":"work","queues":["x"],"max_in_flight":0}`:             "INVALID_QUEUES",
		`{"type":"work","queues":["x"],"max_in_flight":1001}`:          "INVALID_QUEUES",
		`{"type":"work","queues":["x"],"max_in_flight":"2"}`:           "INVALID_SYNTAX",
		`{"type":"work","queues":["` + strings.Repeat("q", 17) + `"]}`: "EVENT_NAME_TOO_LONG",
	} {
		m := wsReply(t, a, msg)
		var sent struct{ Type string }
		require.NoError(t, json.Unmarshal([]byte(msg), &sent))
		assert.Equal(t, sent.Type, m["type"], msg)
		assert.Equal(t, code, m["code"], msg)
	}
	// Still a worker, and still serving.
	again := s.enqueue("b", `3`)
	a.offer(t, again, 1, false)
	a.must(t, "assign", again, "OK")
	a.quiet(t)
	c.quiet(t)
}

// The same over HTTP: the task actions' codes with their statuses, wrong
// methods and paths, bad max_in_flight, credentials; and POST
// /queue/{name}'s own refusals.
func TestQueueBadInputHTTP(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret, "MAX_EVENT_NAME_BYTES": "16", "MAX_BODY_BYTES": "1024"})
	xTok := queueJWT(t, "x", time.Hour, map[string]any{"work": []string{"*"}})
	yTok := queueJWT(t, "y", time.Hour, map[string]any{"work": []string{"*"}})
	x := s.sseWorker("sse-x", "Bearer "+xTok, "h", "")
	s.waitWorkers("h", 1)
	y := &qWorker{name: "y", sse: true, base: s.broadcastHTTP(), queue: "h", auth: "Bearer " + yTok, post: s.http}

	id := s.enqueue("h?complete=1", `1`)
	x.offer(t, id, 1, false)
	elsewhere := &qWorker{name: "x, another queue's path", sse: true, base: x.base, queue: "other", auth: x.auth, post: s.http}
	for _, tc := range []struct {
		who           *qWorker
		typ, id, code string
	}{
		{x, "assign", "nope", "UNKNOWN_TASK"},
		{y, "assign", id, "NOT_OFFERED_TO_YOU"},
		{y, "reject", id, "NOT_OFFERED_TO_YOU"},
		{y, "done", id, "NOT_ASSIGNED"},
		{x, "done", id, "NOT_ASSIGNED"},
		{elsewhere, "assign", id, "UNKNOWN_TASK"}, // the task is in h, not in the path's queue
		{x, "assign", id, "OK"},
		{x, "assign", id, "OK"},
		{x, "reject", id, "OFFER_EXPIRED"},
		{x, "done", id, "OK"},
		{x, "done", id, "OK"},
	} {
		tc.who.must(t, tc.typ, tc.id, tc.code) // the status is checked against the code
	}
	forced := s.enqueue("h?mode=assign", `2`)
	x.offer(t, forced, 1, true)
	x.must(t, "reject", forced, "ASSIGNED_BY_FORCE")

	b := s.broadcastHTTP()
	request := func(method, u, auth string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(method, u, nil)
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := s.http.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, withoutMessage(strings.TrimSuffix(string(body), "\n")), resp.Header
	}
	long := strings.Repeat("q", 17)
	for _, tc := range []struct {
		name, method, url, auth string
		status                  int
		body                    string
	}{
		{"take is a POST", "GET", b + "/queue/h/take", "Bearer " + xTok, 405, `{"code":"METHOD_NOT_ALLOWED"}`},
		{"wait is a GET", "POST", b + "/queue/h/wait", "Bearer " + xTok, 405, `{"code":"METHOD_NOT_ALLOWED"}`},
		{"actions are POSTs", "GET", b + "/queue/h/tasks/" + id + "/done", "Bearer " + xTok, 405, `{"code":"METHOD_NOT_ALLOWED"}`},
		{"no such action", "POST", b + "/queue/h/tasks/" + id + "/finish", "Bearer " + xTok, 404, `{"code":"NOT_FOUND"}`},
		{"no such path", "POST", b + "/queue/h/other", "Bearer " + xTok, 404, `{"code":"NOT_FOUND"}`},
		{"no name", "GET", b + "/queue//wait", "Bearer " + xTok, 404, `{"code":"NOT_FOUND"}`},
		{"no id", "POST", b + "/queue/h/tasks//assign", "Bearer " + xTok, 404, `{"code":"NOT_FOUND"}`},
		{"max_in_flight 0", "GET", b + "/queue/h/wait?max_in_flight=0", "Bearer " + xTok, 400, `{"code":"INVALID_QUEUES"}`},
		{"max_in_flight 1001", "GET", b + "/queue/h/wait?max_in_flight=1001", "Bearer " + xTok, 400, `{"code":"INVALID_QUEUES"}`},
		{"max_in_flight x", "GET", b + "/queue/h/wait?max_in_flight=x", "Bearer " + xTok, 400, `{"code":"INVALID_QUEUES"}`},
		{"name too long", "GET", b + "/queue/" + long + "/wait", "Bearer " + xTok, 400, `{"code":"EVENT_NAME_TOO_LONG"}`},
		{"no credentials", "POST", b + "/queue/h/take", "", 403, `{"code":"UNAUTHENTICATED"}`},
		{"unknown scheme", "POST", b + "/queue/h/take", "Digest x", 403, `{"code":"AUTH_UNRECOGNIZED_SCHEME"}`},
		{"a Basic token in the query", "GET", b + "/queue/h/wait?token=" + testToken, "", 403, `{"code":"UNAUTHENTICATED"}`},
		{"a bad JWT", "POST", b + "/queue/h/take", "Bearer " + xTok + "x", 403, `{"code":"UNAUTHENTICATED"}`},
		{"take, none free", "POST", b + "/queue/h/take", "Bearer " + xTok, 204, ``},
		{"a JWT in the query", "POST", b + "/queue/h/take?token=" + url.QueryEscape(xTok), "", 204, ``},

		{"listen: bad complete", "POST", s.listenURL + "/queue/h?complete=x", "Basic " + testToken, 400, `{"code":"INVALID_BODY"}`},
		{"listen: name too long", "POST", s.listenURL + "/queue/" + long, "Basic " + testToken, 400, `{"code":"EVENT_NAME_TOO_LONG"}`},
		{"listen: a slash in the name", "POST", s.listenURL + "/queue/a/b", "Basic " + testToken, 404, `{"code":"NOT_FOUND"}`},
		{"listen: no credentials", "POST", s.listenURL + "/queue/h", "", 403, `{"code":"UNAUTHENTICATED"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, header := request(tc.method, tc.url, tc.auth)
			assert.Equal(t, tc.status, status)
			assert.Equal(t, tc.body, body)
			if status == 405 {
				assert.NotEmpty(t, header.Get("Allow"))
			}
		})
	}
	status, body := s.do(http.MethodPost, "/queue/h", "Basic "+testToken, `"`+strings.Repeat("x", 2000)+`"`)
	assert.Equal(t, 413, status)
	assert.Equal(t, `{"code":"PAYLOAD_TOO_LARGE"}`, body)
	// An empty body is a task whose data is null.
	empty := s.enqueue("h", ``)
	n := x.offer(t, empty, 1, false)
	assert.Equal(t, "null", string(n.Data))
	x.must(t, "assign", empty, "OK")
	x.quiet(t)
	assert.Equal(t, 0.0, queueSample(s.scrape(), "depth", "h", ""), "nothing refused was added")
}

// Queue names travel percent-encoded in paths and as they are in JSON: a
// task added to "support desk/α" reaches a WebSocket worker of that name
// and the SSE wait at its encoded path.
func TestQueueNamesPercentEncoded(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, nil)
	const name = "support desk/α?#%"
	escaped := url.PathEscape(name)
	require.Equal(t, "support%20desk%2F%CE%B1%3F%23%25", escaped)
	ws := s.wsWorker("ws", "Basic "+testToken, 1, name)
	id := s.enqueue(escaped, `{"n":1}`)
	n := ws.offer(t, id, 1, false)
	assert.Equal(t, name, n.Queue)
	ws.must(t, "assign", id, "OK")

	sse := s.sseWorker("sse", "Basic "+testToken, name, "")
	s.waitWorkers(name, 2)
	ids := []string{s.enqueue(escaped, `2`), s.enqueue(escaped, `3`)}
	// ws is free longest: the first goes to ws, the second to sse.
	ws.offer(t, ids[0], 1, false)
	n = sse.offer(t, ids[1], 1, false)
	assert.Equal(t, name, n.Queue)
	sse.must(t, "assign", ids[1], "OK") // POST /queue/support%20desk%2F…/tasks/{id}/assign
	ws.must(t, "assign", ids[0], "OK")
}

// A queue name must be valid UTF-8, as an event name can only be (it
// arrives in JSON). POST /queue/%FF is accepted today, and the queue's
// name then breaks /metrics for everything: the Prometheus client refuses
// the label value and the page answers 500.
func TestQueueNameMustBeUTF8(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, nil)
	status, body := s.do(http.MethodPost, "/queue/%FF", "Basic "+testToken, `1`)
	assert.Equal(t, 400, status, "POST /queue/%%FF: %s", body)
	req, err := http.NewRequest(http.MethodPost, s.broadcastHTTP()+"/queue/%FF/take", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Basic "+testToken)
	status, body = s.roundTripRaw(req)
	assert.Equal(t, 400, status, "POST /queue/%%FF/take: %s", body)
	status, body = s.roundTripRaw(mustRequest(t, http.MethodGet, s.metricsURL(), ""))
	assert.Equal(t, 200, status, "/metrics after a queue named %%FF: %.300s", body)
}

// Permissions from the tokens file: enqueue= adds tasks, work= takes them
// (WebSocket, SSE, take-free and the task actions), a bare token does
// both; JWT claims the same. A revoked worker's task goes back.
func TestQueuePermissions(t *testing.T) {
	clNoLeaks(t)
	const (
		enq   = "enqueue-token-0123456789abcdef"
		work  = "work-token-0123456789abcdef"
		both  = "both-token-0123456789abcdef"
		other = "events-token-0123456789abcdef"
		gone  = "gone-token-0123456789abcdef"
	)
	s := startServer(t, map[string]string{"TOKENS_RELOAD_INTERVAL": "20ms", "JWT_SECRET": jwtSecret})
	tokens := []string{testToken, enq + " enqueue=jobs.*", work + " work=jobs.*", both + " enqueue=jobs.a work=jobs.a",
		other + " publish=* subscribe=*", gone + " work=jobs.*", ""}
	require.NoError(t, writeFile(s.tokensFile, strings.Join(tokens, "\n")))
	s.waitLog(`msg="tokens file reloaded"`)

	post := func(auth, name string) int {
		t.Helper()
		status, _ := s.do(http.MethodPost, "/queue/"+url.PathEscape(name), auth, `1`)
		return status
	}
	for _, tc := range []struct {
		auth, name string
		status     int
	}{
		{"Basic " + testToken, "anything", 200},
		{"Basic " + enq, "jobs.1", 200},
		{"Basic " + enq, "other", 403},
		{"Basic " + work, "jobs.1", 403},
		{"Basic " + both, "jobs.a", 200},
		{"Basic " + both, "jobs.b", 403},
		{"Basic " + other, "jobs.1", 403},
		{"Bearer " + queueJWT(t, "backend", time.Hour, map[string]any{"enqueue": []string{"jobs.*"}}), "jobs.1", 200},
		{"Bearer " + queueJWT(t, "backend", time.Hour, map[string]any{"enqueue": []string{"jobs.*"}}), "other", 403},
		{"Bearer " + queueJWT(t, "browser", time.Hour, map[string]any{"work": []string{"jobs.*"}}), "jobs.1", 403},
	} {
		assert.Equal(t, tc.status, post(tc.auth, tc.name), "%s to %s", tc.auth[:12], tc.name)
	}

	workOK := func(token string, queues ...string) string {
		t.Helper()
		c := s.dial()
		require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Basic "+token)))
		msg := `{"type":"work","queues":["` + strings.Join(queues, `","`) + `"]}`
		return withoutMessage(sendInit(t, c, msg))
	}
	assert.Equal(t, `{"type":"work","code":"FORBIDDEN"}`, workOK(enq, "jobs.1"), "enqueue is not work")
	assert.Equal(t, `{"type":"work","code":"FORBIDDEN"}`, workOK(other, "jobs.1"), "subscribe is not work")
	assert.Equal(t, `{"type":"work","code":"FORBIDDEN"}`, workOK(work, "jobs.1", "other"), "all or nothing")
	assert.Equal(t, `{"type":"work","code":"FORBIDDEN"}`, workOK(both, "jobs.b"))
	assert.Zero(t, queueSample(s.scrape(), "workers", "jobs.1", ""), "a refused work joined nothing")
	bw := s.wsWorker("both", "Basic "+both, 1, "jobs.a")
	n := bw.offer(t, "", 1, false) // posted above with the same token
	bw.must(t, "assign", n.ID, "OK")

	b := s.broadcastHTTP()
	httpStatus := func(method, path, auth string) int {
		t.Helper()
		req := mustRequest(t, method, b+path, auth)
		resp, err := s.http.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	jwtWork := queueJWT(t, "browser", time.Hour, map[string]any{"work": []string{"jobs.*"}})
	jwtSub := queueJWT(t, "reader", time.Hour, map[string]any{"subscribe": []string{"*"}})
	for _, tc := range []struct {
		method, path, auth string
		status             int
	}{
		{"POST", "/queue/jobs.1/take", "Basic " + enq, 403},
		{"POST", "/queue/jobs.1/take", "Basic " + other, 403},
		{"POST", "/queue/other/take", "Basic " + work, 403},
		{"POST", "/queue/other/tasks/x/assign", "Basic " + work, 403},
		{"POST", "/queue/jobs.1/tasks/x/assign", "Basic " + enq, 403},
		{"GET", "/queue/jobs.1/wait", "Basic " + enq, 403},
		{"GET", "/queue/jobs.1/wait?token=" + jwtSub, "", 403},
		{"POST", "/queue/jobs.1/tasks/x/assign", "Basic " + work, 404}, // allowed; no such task
		{"POST", "/queue/jobs.1/tasks/x/assign?token=" + jwtWork, "", 404},
	} {
		assert.Equal(t, tc.status, httpStatus(tc.method, tc.path, tc.auth), "%s %s with %.20s", tc.method, tc.path, tc.auth)
	}
	// Allowed, take-free gets the tasks posted above: to jobs.1 by enq and
	// the backend JWT.
	for _, auth := range []string{"Basic " + work, "Bearer " + jwtWork} {
		n, ok, err := s.take(s.http, auth, "jobs.1")
		require.NoError(t, err)
		require.True(t, ok, "a task was free")
		assert.True(t, n.Assigned)
	}
	w := s.sseWorker("sse-jwt", "", "jobs.2", "token="+url.QueryEscape(jwtWork))
	s.waitWorkers("jobs.2", 1)
	id := s.enqueue("jobs.2", `1`)
	w.offer(t, id, 1, false)
	// The answer with the JWT in the query, as a page may send it.
	assert.Equal(t, 200, httpStatus("POST", "/queue/jobs.2/tasks/"+id+"/assign?token="+url.QueryEscape(jwtWork), ""))
	w.quiet(t)

	// A worker whose token is removed from the file is closed (4003) and
	// its task goes back, to a worker still allowed.
	revoked := s.wsWorker("revoked", "Basic "+gone, 1, "jobs.r")
	task := s.enqueue("jobs.r?complete=1", `1`)
	revoked.offer(t, task, 1, false)
	revoked.must(t, "assign", task, "OK")
	kept := s.wsWorker("kept", "Basic "+work, 1, "jobs.r")
	require.NoError(t, writeFile(s.tokensFile, strings.Join(append(tokens[:5:5], ""), "\n")))
	kept.offer(t, task, 2, false)
	kept.must(t, "assign", task, "OK")
	kept.must(t, "done", task, "OK")
	ce := revoked.closedWith(t)
	assert.Equal(t, 4003, ce.Code)
	assert.Equal(t, "token revoked", ce.Text)
}

// README: the work message "is answered {"type":"work","code":"OK"}.
// Offers then arrive", as an init's OK arrives before the first event.
// Today broadcast/work.go's handleWork queues the answer after startWork
// returns, and startWork's Join has already delivered the offers of tasks
// waiting in the queue (Manager.Join pumps and notifies before it returns,
// and notifyTask queues the frame): a worker that joins a queue with
// waiting tasks reads an offer where it expects the answer.
func TestQueueWorkAnswerComesBeforeOffers(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, nil)
	id := s.enqueue("early", `1`)
	c := s.subscribe()
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(`{"type":"work","queues":["early"]}`)))
	assert.Equal(t, `{"type":"work","code":"OK"}`, readText(t, c), "the answer first")
	assert.Contains(t, readText(t, c), `"id":"`+id+`"`, "then the offer")
}

// A worker whose token's work= no longer allows its queue after a reload
// must stop getting that queue's tasks, as a subscriber whose role no
// longer allows an event it is subscribed to is closed with 4003
// "permissions changed" (README, "Revocation applies to open
// connections"). Today Hub.Recheck (broadcast/hub.go, client.recheck)
// checks only the subscriptions, so a narrowed worker goes on taking the
// queue's tasks, over a WebSocket and over SSE alike.
func TestQueueNarrowedWorkEndsWorkers(t *testing.T) {
	clNoLeaks(t)
	const narrow = "narrow-token-0123456789abcdef"
	s := startServer(t, map[string]string{"TOKENS_RELOAD_INTERVAL": "20ms"})
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+narrow+" work=jobs.*\n"))
	s.waitLog(`msg="tokens file reloaded"`)
	ws := s.wsWorker("ws", "Basic "+narrow, 1, "jobs.1")
	sse := s.sseWorker("sse", "Basic "+narrow, "jobs.1", "")
	s.waitWorkers("jobs.1", 2)

	before := strings.Count(s.logs.String(), `msg="tokens file reloaded"`)
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+narrow+" work=other\n"))
	require.Eventually(t, func() bool {
		return strings.Count(s.logs.String(), `msg="tokens file reloaded"`) > before
	}, 10*time.Second, 5*time.Millisecond)

	// Both are closed, the WebSocket with 4003 "permissions changed".
	ended := map[*qWorker]bool{}
	deadline := time.Now().Add(3 * time.Second)
	for _, w := range []*qWorker{ws, sse} {
		select {
		case <-w.ended:
			ended[w] = true
		case <-time.After(time.Until(deadline)):
			t.Errorf("%s: its token may no longer work on jobs.1, and its connection is still open", w.name)
		}
	}
	if ended[ws] {
		var ce *websocket.CloseError
		if assert.ErrorAs(t, ws.endErr, &ce) {
			assert.Equal(t, 4003, ce.Code)
			assert.Equal(t, "permissions changed", ce.Text)
		}
	}
	// A task added now waits for an allowed worker. (A closed worker that
	// its teardown has not yet removed is offered it, and leaves at once:
	// the task is back in the queue before the POST is answered.)
	id := s.enqueue("jobs.1", `1`)
	n, ok, err := s.take(s.http, "Basic "+testToken, "jobs.1")
	require.NoError(t, err)
	if assert.True(t, ok, "the task waits for an allowed worker") {
		assert.Equal(t, id, n.ID)
	}
}
