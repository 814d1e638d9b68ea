package cluster_test

// Work queues in cluster mode (#15 over #13), with real processes: a
// worker's instance is killed (SIGKILL) while its worker holds offers it
// has not answered and tasks it assigned and has not done; the other
// instance's worker is offered each of them once, on a later attempt, and
// nothing else comes back twice.

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/internal/natstest"
)

// qworker is a WebSocket worker of one instance.
type qworker struct {
	t       *testing.T
	name    string
	c       *websocket.Conn
	notices chan map[string]any // task and expired frames
	replies chan map[string]any // answers to work, assign, reject, done
}

// work connects a worker to in's queue with max_in_flight n.
func work(t *testing.T, in *instance, name, queue string, n int) *qworker {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(in.wsURL, nil)
	require.NoError(t, err)
	resp.Body.Close()
	w := &qworker{t: t, name: name, c: c, notices: make(chan map[string]any, 100), replies: make(chan map[string]any, 100)}
	done := make(chan struct{})
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	init, _ := json.Marshal(map[string]any{"authentication": "Basic " + token, "events": []string{}})
	require.NoError(t, c.WriteMessage(websocket.TextMessage, init))
	_, msg, err := c.ReadMessage()
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"init","code":"OK"}`, string(msg))
	go func() {
		defer close(done)
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(msg, &m) != nil {
				continue
			}
			m["at"] = time.Now()
			if m["type"] == "task" || m["type"] == "expired" {
				w.notices <- m
			} else {
				w.replies <- m
			}
		}
	}()
	w.send(map[string]any{"type": "work", "queues": []string{queue}, "max_in_flight": n})
	assert.Equal(t, "OK", w.reply()["code"])
	return w
}

func (w *qworker) send(m map[string]any) {
	b, _ := json.Marshal(m)
	require.NoError(w.t, w.c.WriteMessage(websocket.TextMessage, b))
}

func (w *qworker) reply() map[string]any {
	select {
	case m := <-w.replies:
		return m
	case <-time.After(10 * time.Second):
		w.t.Fatalf("%s: no answer", w.name)
		return nil
	}
}

// act sends assign, reject or done for id and returns the code.
func (w *qworker) act(typ, id string) string {
	w.send(map[string]any{"type": typ, "id": id})
	m := w.reply()
	require.Equal(w.t, typ, m["type"])
	require.Equal(w.t, id, m["id"])
	code, _ := m["code"].(string)
	return code
}

// next is the next task or expired frame, within timeout.
func (w *qworker) next(timeout time.Duration) map[string]any {
	select {
	case m := <-w.notices:
		return m
	case <-time.After(timeout):
		w.t.Fatalf("%s: no task within %v", w.name, timeout)
		return nil
	}
}

func (w *qworker) quiet(d time.Duration) {
	select {
	case m := <-w.notices:
		w.t.Fatalf("%s: unexpected %v", w.name, m)
	case <-time.After(d):
	}
}

// enqueue adds a task to in's queue (query as is) and returns its ID.
func enqueue(t *testing.T, client *http.Client, in *instance, queue, data string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, in.listenURL+"/queue/"+queue, strings.NewReader(data))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Basic "+token)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var a struct{ Code, ID string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
	require.Equal(t, "OK", a.Code)
	return a.ID
}

func TestE2EQueueInstanceDies(t *testing.T) {
	eventsrvBinary(t)
	ns := natstest.StartServer(t)
	// OFFER_TIMEOUT is also the queues' ack wait (2 s at least): how long a
	// dead instance's tasks stay out.
	f := startFleet(t, 2, map[string]string{"NATS_URL": ns.URL(), "NATS_STREAM": "E2EQ", "OFFER_TIMEOUT": "3s", "TASK_TIMEOUT": "1m"})
	a, b := f.get(0), f.get(1)
	client := newHTTPClient(t)

	wa := work(t, a, "wa", "jobs", 5)
	acked := enqueue(t, client, b, "jobs", `"acked"`)
	unanswered := []string{enqueue(t, client, b, "jobs", `"offer"`), enqueue(t, client, b, "jobs?complete=1", `"offer, complete"`)}
	assigned := []string{enqueue(t, client, b, "jobs?complete=1", `"mid-task 1"`), enqueue(t, client, b, "jobs?complete=1", `"mid-task 2"`)}
	offers := map[string]bool{}
	for range 5 {
		m := wa.next(10 * time.Second)
		require.Equal(t, "task", m["type"])
		offers[m["id"].(string)] = true
	}
	require.Len(t, offers, 5)
	require.Equal(t, "OK", wa.act("assign", acked))
	for _, id := range assigned {
		require.Equal(t, "OK", wa.act("assign", id))
	}

	// The other instance's worker gets none of them while they are held.
	wb := work(t, b, "wb", "jobs", 10)
	wb.quiet(time.Second)
	killed := time.Now()
	a.kill()
	want := map[string]bool{}
	for _, id := range append(unanswered, assigned...) {
		want[id] = true
	}
	got := map[string]int{}
	for range want {
		m := wb.next(15 * time.Second)
		id, _ := m["id"].(string)
		require.Equal(t, "task", m["type"], "%v", m)
		require.True(t, want[id], "%s offered: not one the dead instance held", id)
		assert.Equal(t, 2.0, m["attempt"], "a re-delivery is visible")
		assert.True(t, m["at"].(time.Time).After(killed))
		got[id]++
		require.Equal(t, "OK", wb.act("assign", id))
		if id != unanswered[0] {
			require.Equal(t, "OK", wb.act("done", id))
		}
	}
	t.Logf("the killed instance's %d tasks were offered on the other within %v", len(want), time.Since(killed).Round(time.Millisecond))
	// Nothing more: not the acked one, none twice.
	wb.quiet(2 * time.Second)
	for id := range want {
		assert.Equal(t, 1, got[id], id)
	}
	// A new task still flows.
	last := enqueue(t, client, b, "jobs", `"after"`)
	m := wb.next(10 * time.Second)
	assert.Equal(t, last, m["id"])
	assert.Equal(t, 1.0, m["attempt"])
}
