package main

// A closed worker leaves its queues at once, and a worker's answer comes
// before the offer it made possible (#15).

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// adminCloseByRemote closes, as an admin, the client whose remote address
// is c's local one.
func (s *server) adminCloseByRemote(c *websocket.Conn) {
	s.t.Helper()
	status, body := s.do(http.MethodGet, "/admin/clients", "Basic "+adminToken, "")
	require.Equal(s.t, http.StatusOK, status, body)
	var list struct {
		Clients []struct {
			ID     uint64 `json:"id"`
			Remote string `json:"remote"`
		}
	}
	require.NoError(s.t, json.Unmarshal([]byte(body), &list))
	for _, cl := range list.Clients {
		if cl.Remote == c.LocalAddr().String() {
			status, body := s.do(http.MethodPost, "/admin/clients/"+strconv.FormatUint(cl.ID, 10)+"/close", "Basic "+adminToken, "")
			require.Equal(s.t, http.StatusOK, status, body)
			return
		}
	}
	s.t.Fatalf("no client at %s in %s", c.LocalAddr(), body)
}

// queueState is one queue of GET /admin/queues.
func (s *server) queueState(name string) (workers, offering int) {
	s.t.Helper()
	status, body := s.do(http.MethodGet, "/admin/queues", "Basic "+adminToken, "")
	require.Equal(s.t, http.StatusOK, status, body)
	var list struct {
		Queues []struct {
			Name     string `json:"name"`
			Workers  int    `json:"workers"`
			Offering int    `json:"offering"`
		}
	}
	require.NoError(s.t, json.Unmarshal([]byte(body), &list))
	for _, q := range list.Queues {
		if q.Name == name {
			return q.Workers, q.Offering
		}
	}
	return 0, 0
}

// A worker whose connection the server closes (here an admin) leaves its
// queues at once: not at its teardown, which waits for the peer's side of
// the closing handshake (up to a second after the close frame, longer for
// a peer that reads nothing). The closed workers here read nothing, as a
// hung process would not. A task held by such a worker goes to another
// worker well within that second; a task added later never waits on it.
func TestQueueClosedWorkerLeavesAtOnce(t *testing.T) {
	clNoLeaks(t)
	// WRITE_TIMEOUT 200ms makes the sweep look every 50 ms; the teardown
	// still waits a second after the close frame (closeGrace).
	s := startServer(t, map[string]string{"TOKENS_RELOAD_INTERVAL": "20ms", "WRITE_TIMEOUT": "200ms"})
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+adminToken+" admin\n"))
	s.waitLog(`msg="tokens file reloaded"`)

	// a holds an offer; b is free. An admin closes a, which never reads
	// again: b gets the task long before a's teardown.
	a := s.worker("c")
	id := s.enqueue("c", `1`)
	assert.Equal(t, id, readJSON(t, a)["id"])
	b := s.wsWorker("b", "Basic "+testToken, 1, "c")
	s.waitWorkers("c", 2)
	start := time.Now()
	s.adminCloseByRemote(a)
	n := b.offer(t, id, 2, false)
	took := n.At.Sub(start)
	t.Logf("offered again %v after the admin's close", took.Round(time.Millisecond))
	assert.Less(t, took, 700*time.Millisecond, "the task waited for the closed worker's teardown")
	b.must(t, "assign", id, "OK")

	// c has been free longer than b: a task added right after c is
	// closed would be offered to c. It is b's, before the POST answers.
	busy := s.enqueue("c", `"busy"`)
	b.offer(t, busy, 1, false)
	c := s.worker("c")
	s.waitWorkers("c", 2)
	b.must(t, "assign", busy, "OK")
	s.adminCloseByRemote(c)
	id2 := s.enqueue("c", `2`)
	workers, offering := s.queueState("c")
	assert.Equal(t, 1, workers, "the closed worker left before the POST was answered")
	assert.Equal(t, 1, offering)
	n = b.next(t)
	assert.Equal(t, "task", n.Type)
	assert.Equal(t, id2, n.ID)
	b.must(t, "assign", id2, "OK")
}

// A worker that is also a subscriber, and stops reading, is cut off as a
// slow consumer: it leaves its queues then, not at its teardown, which
// waits for its last write to time out (WRITE_TIMEOUT, 2 s here).
func TestQueueSlowWorkerLeavesAtOnce(t *testing.T) {
	clNoLeaks(t)
	const writeTimeout = 2 * time.Second
	s := startServer(t, map[string]string{"WRITE_TIMEOUT": writeTimeout.String(), "MAX_BODY_BYTES": "65536", "QUEUE_MAX_BYTES": "262144"})
	a := s.subscribeSmall("news")
	require.Equal(t, `{"type":"work","code":"OK"}`, sendInit(t, a, `{"type":"work","queues":["s"]}`))
	id := s.enqueue("s", `1`)
	assert.Equal(t, id, readJSON(t, a)["id"])
	b := s.wsWorker("b", "Basic "+testToken, 1, "s")
	s.waitWorkers("s", 2)

	// a reads nothing more: events fill its socket, then its queue.
	big := `"` + strings.Repeat("x", 60_000) + `"`
	var cut time.Time
	for i := 0; cut.IsZero(); i++ {
		require.Less(t, i, 2000, "a was never cut off")
		s.publish("news", big)
		if strings.Contains(s.logs.String(), `msg="subscriber cut off"`) {
			cut = time.Now()
		}
	}
	n := b.offer(t, id, 2, false)
	took := n.At.Sub(cut)
	t.Logf("offered again %v after the cut-off", took.Round(time.Millisecond))
	assert.Less(t, took, writeTimeout*3/4, "the task waited for the slow worker's teardown")
	b.must(t, "assign", id, "OK")
}

// The answer to an assign, reject or done comes before the offer that it
// made possible, on the same WebSocket: the README's order, as the work
// message's OK comes before the first offer.
func TestQueueAnswerComesBeforeNextOffer(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, nil)
	w := s.worker("o") // max_in_flight 1
	ids := []string{s.enqueue("o", `1`), s.enqueue("o?complete=1", `2`), s.enqueue("o", `3`), s.enqueue("o", `4`)}
	expectOffer := func(id string, attempt int) {
		t.Helper()
		m := readJSON(t, w)
		assert.Equal(t, "task", m["type"], "%v", m)
		assert.Equal(t, id, m["id"], "%v", m)
		assert.Equal(t, float64(attempt), m["attempt"], "%v", m)
	}
	answer := func(typ, id string) {
		t.Helper()
		require.NoError(t, w.WriteMessage(websocket.TextMessage, []byte(`{"type":"`+typ+`","id":"`+id+`"}`)))
		assert.Equal(t, map[string]any{"type": typ, "id": id, "code": "OK"}, readJSON(t, w), "the answer first")
	}
	expectOffer(ids[0], 1)
	answer("assign", ids[0]) // frees the slot: the next offer follows
	expectOffer(ids[1], 1)
	answer("assign", ids[1]) // needs done: no offer yet
	answer("done", ids[1])   // frees the slot
	expectOffer(ids[2], 1)
	answer("reject", ids[2]) // the only worker refused it: it goes around, to w
	expectOffer(ids[2], 2)
	answer("assign", ids[2])
	expectOffer(ids[3], 1)
	answer("assign", ids[3])
	require.NoError(t, w.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, msg, err := w.ReadMessage()
	assert.Error(t, err, "nothing more: %s", msg)
}
