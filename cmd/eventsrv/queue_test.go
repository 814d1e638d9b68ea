package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// enqueue adds a task with POST /queue/{path} and returns its ID.
func (s *server) enqueue(path, data string) string {
	s.t.Helper()
	status, body := s.do(http.MethodPost, "/queue/"+path, "Basic "+testToken, data)
	require.Equal(s.t, http.StatusOK, status, body)
	var a struct{ Code, ID string }
	require.NoError(s.t, json.Unmarshal([]byte(body), &a))
	return a.ID
}

// worker dials, inits and sends a work message for queues.
func (s *server) worker(queues ...string) *websocket.Conn {
	s.t.Helper()
	c := s.subscribe()
	msg, _ := json.Marshal(map[string]any{"type": "work", "queues": queues, "max_in_flight": 1})
	require.Equal(s.t, `{"type":"work","code":"OK"}`, sendInit(s.t, c, string(msg)))
	return c
}

func readJSON(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, raw, err := c.ReadMessage()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m), string(raw))
	return m
}

func send(t *testing.T, c *websocket.Conn, msg string) map[string]any {
	t.Helper()
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(msg)))
	return readJSON(t, c)
}

// The QueueTasks flow over a WebSocket: an offer, assign, and done for a
// task that needs completion; a forced task arrives assigned.
func TestWorkQueueOverWebSocket(t *testing.T) {
	s := startServer(t, nil)
	w := s.worker("tickets")
	id := s.enqueue("tickets?complete=1", `{"subject": "printer on fire"}`)
	offer := readJSON(t, w)
	assert.Equal(t, map[string]any{"type": "task", "queue": "tickets", "id": id, "assigned": false, "attempt": 1.0,
		"data": map[string]any{"subject": "printer on fire"}}, offer)
	assert.Equal(t, map[string]any{"type": "done", "id": id, "code": "NOT_ASSIGNED"}, withoutMsg(send(t, w, `{"type":"done","id":"`+id+`"}`)))
	assert.Equal(t, map[string]any{"type": "assign", "id": id, "code": "OK"}, send(t, w, `{"type":"assign","id":"`+id+`"}`))
	assert.Equal(t, map[string]any{"type": "done", "id": id, "code": "OK"}, send(t, w, `{"type":"done","id":"`+id+`"}`))

	forced := s.enqueue("tickets?mode=assign", `7`)
	offer = readJSON(t, w)
	assert.Equal(t, true, offer["assigned"])
	assert.Equal(t, forced, offer["id"])
	assert.Equal(t, "ASSIGNED_BY_FORCE", send(t, w, `{"type":"reject","id":"`+forced+`"}`)["code"])
	assert.Equal(t, "UNKNOWN_TASK", send(t, w, `{"type":"assign","id":"nope"}`)["code"])
}

func withoutMsg(m map[string]any) map[string]any {
	delete(m, "message")
	return m
}

// A rejected task goes to the next worker; the one who rejected it is not
// offered it again while another has not refused it.
func TestWorkQueueReject(t *testing.T) {
	s := startServer(t, nil)
	a := s.worker("q")
	id := s.enqueue("q", `1`)
	require.Equal(t, id, readJSON(t, a)["id"])
	b := s.worker("q")
	assert.Equal(t, "OK", send(t, a, `{"type":"reject","id":"`+id+`"}`)["code"])
	offer := readJSON(t, b)
	assert.Equal(t, id, offer["id"])
	assert.Equal(t, 2.0, offer["attempt"])
	assert.Equal(t, "OFFER_EXPIRED", send(t, a, `{"type":"assign","id":"`+id+`"}`)["code"], "its offer to a is over")
}

// An SSE worker waits at GET /queue/{name}/wait, gets "task" events with
// the QueueTasks service's taskId, and answers with POSTs.
func TestWorkQueueOverSSE(t *testing.T) {
	s := startServer(t, nil)
	base := "http" + strings.TrimPrefix(strings.TrimSuffix(s.wsURL, "/"), "ws")
	req, err := http.NewRequest(http.MethodGet, base+"/queue/support%20desk/wait", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Basic "+testToken)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))

	id := s.enqueue("support%20desk", `{"n":1}`)
	br := bufio.NewReader(resp.Body)
	event, _ := br.ReadString('\n')
	data, _ := br.ReadString('\n')
	assert.Equal(t, "event: task\n", event)
	assert.Equal(t, `data: {"taskId":"`+id+`","queue":"support desk","id":"`+id+`","assigned":false,"attempt":1,"data":{"n":1}}`+"\n", data)

	post := func(path string) (int, string) {
		r, err := http.NewRequest(http.MethodPost, base+path, nil)
		require.NoError(t, err)
		r.Header.Set("Authorization", "Basic "+testToken)
		status, body := s.roundTripRaw(r)
		return status, withoutMessage(strings.TrimSuffix(body, "\n"))
	}
	status, body := post("/queue/support%20desk/tasks/" + id + "/assign")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, `{"code":"OK","id":"`+id+`"}`, body)
	status, body = post("/queue/support%20desk/tasks/nope/assign")
	assert.Equal(t, http.StatusNotFound, status)
	assert.Equal(t, `{"code":"UNKNOWN_TASK"}`, body)

	// Take-free: nothing is free now; a task added while the only worker
	// is busy with its max_in_flight is.
	status, _ = post("/queue/other/take")
	assert.Equal(t, http.StatusNoContent, status)
	free := s.enqueue("other", `"x"`)
	status, body = post("/queue/other/take")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, `{"code":"OK","task":{"type":"task","queue":"other","id":"`+free+`","assigned":true,"attempt":1,"data":"x"}}`, body)
}

func TestWorkQueueErrors(t *testing.T) {
	s := startServer(t, map[string]string{"QUEUE_MAX_TASKS": "1", "TOKENS_RELOAD_INTERVAL": "20ms"})
	require.NoError(t, writeFile(s.tokensFile, testToken+"\nenqueuer-token-0123456789 enqueue=jobs\n"))
	s.waitLog(`msg="tokens file reloaded"`)
	s.enqueue("full", `1`)
	for _, tc := range []struct {
		name, method, path, auth, body string
		status                         int
		answer                         string
	}{
		{"full", "POST", "/queue/full", "Basic " + testToken, `2`, 429, `{"code":"QUEUE_FULL"}`},
		{"not JSON", "POST", "/queue/q", "Basic " + testToken, `{`, 400, `{"code":"INVALID_BODY"}`},
		{"bad mode", "POST", "/queue/q?mode=x", "Basic " + testToken, `1`, 400, `{"code":"INVALID_BODY"}`},
		{"forbidden", "POST", "/queue/other", "Basic enqueuer-token-0123456789", `1`, 403, `{"code":"FORBIDDEN"}`},
		{"no token", "POST", "/queue/jobs", "", `1`, 403, `{"code":"UNAUTHENTICATED"}`},
		{"GET", "GET", "/queue/jobs", "Basic " + testToken, ``, 405, `{"code":"METHOD_NOT_ALLOWED"}`},
		{"no name", "POST", "/queue/", "Basic " + testToken, `1`, 404, `{"code":"NOT_FOUND"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.do(tc.method, tc.path, tc.auth, tc.body)
			assert.Equal(t, tc.status, status)
			assert.Equal(t, tc.answer, body)
		})
	}
	status, body := s.do("POST", "/queue/jobs", "Basic enqueuer-token-0123456789", `1`)
	assert.Equal(t, 200, status, body)

	c := s.dial()
	assert.Equal(t, "UNAUTHENTICATED", send(t, c, `{"type":"work","queues":["jobs"]}`)["code"], "work needs an init first")
	require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Basic enqueuer-token-0123456789")))
	assert.Equal(t, "FORBIDDEN", send(t, c, `{"type":"work","queues":["jobs"]}`)["code"], "enqueue is not work")
	assert.Equal(t, "INVALID_QUEUES", send(t, c, `{"type":"work","queues":[]}`)["code"])
	assert.Equal(t, "NOT_OFFERED_TO_YOU", send(t, c, `{"type":"assign","id":"x"}`)["code"])
}

// Each queue's state is in /admin/queues and in the metrics.
func TestWorkQueueVisibleState(t *testing.T) {
	s := startAdminServer(t)
	s.enqueue("tickets", `1`)
	s.enqueue("tickets", `2`)
	status, body := s.do(http.MethodGet, "/admin/queues", "Basic "+adminToken, "")
	require.Equal(t, http.StatusOK, status, body)
	var list struct {
		Queues []map[string]any `json:"queues"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list.Queues, 1)
	q := list.Queues[0]
	assert.Equal(t, "tickets", q["name"])
	assert.Equal(t, 2.0, q["depth"])
	assert.Equal(t, 2.0, q["added"])
	assert.Greater(t, q["oldest_waiting_seconds"], 0.0)

	_, metrics := s.get(s.metricsURL())
	assert.Contains(t, metrics, `eventsrv_queue_depth{queue="tickets"} 2`)
	assert.Contains(t, metrics, `eventsrv_queue_tasks_total{event="added",queue="tickets"} 2`)
}
