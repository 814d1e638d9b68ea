package main

// Work queues in cluster mode (#15 over #13): the transport tests of
// queue_e2e_test.go against the JetStream queues (one instance with
// NATS_EMBED), and instances sharing a queue on one NATS. An instance
// killed outright is cluster/e2e_queue_test.go's (real processes).

import (
	"fmt"
	"maps"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/internal/natstest"
)

// embedEnv is env with an embedded JetStream server of the test's own.
func embedEnv(t *testing.T, env map[string]string) map[string]string {
	out := map[string]string{"NATS_EMBED": t.TempDir(), "LOG_LEVEL": "info"}
	maps.Copy(out, env)
	return out
}

// startCluster starts n instances on one NATS server, ready.
func startCluster(t *testing.T, n int, env map[string]string) []*server {
	t.Helper()
	ns := natstest.StartServer(t)
	e := map[string]string{"NATS_URL": ns.URL(), "LOG_LEVEL": "info"}
	maps.Copy(e, env)
	var out []*server
	for range n {
		s := startServer(t, e)
		s.waitReady()
		out = append(out, s)
	}
	return out
}

// The 1,000 tasks with 5 WebSocket workers, on the JetStream
// queues: every task assigned once (done once with completion), the
// killed worker's task again on a later attempt, attempt counting every
// offer, and the counters as the workers saw them.
func TestQueueClusterThousandTasks(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, embedEnv(t, map[string]string{"OFFER_TIMEOUT": "200ms"}))
	s.waitReady()
	workers := make([]*qWorker, 5)
	for i := range workers {
		workers[i] = s.wsWorker(fmt.Sprint("ws-", i), "Basic "+testToken, 1, "load")
	}
	runQueueLoad(t, s, "load", workers, 0, 60, 1000)
}

// The same with SSE workers among them, the killed one an SSE stream.
func TestQueueClusterThousandTasksMixed(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, embedEnv(t, map[string]string{"OFFER_TIMEOUT": "200ms", "JWT_SECRET": jwtSecret}))
	s.waitReady()
	runQueueLoad(t, s, "load", mixedLoadWorkers(t, s), 1, 60, 1000)
}

// TestQueueReofferTiming's scenario on the JetStream queues: expiry at
// OFFER_TIMEOUT, the next worker on attempt 2, around again when both
// refused, a refused task back before a newer one; forced assignment; a
// disconnect as a refusal; take-free.
func TestQueueClusterTransport(t *testing.T) {
	clNoLeaks(t)
	const timeout = 200 * time.Millisecond
	s := startServer(t, embedEnv(t, map[string]string{"OFFER_TIMEOUT": timeout.String(), "JWT_SECRET": jwtSecret,
		"TOKENS_RELOAD_INTERVAL": "20ms"}))
	s.waitReady()
	a := s.wsWorker("ws-a", "Basic "+testToken, 1, "r")
	tok := queueJWT(t, "sse-b", time.Hour, map[string]any{"work": []string{"r", "f"}})
	b := s.sseWorker("sse-b", "Bearer "+tok, "r", "")
	s.waitWorkers("r", 2)

	start := time.Now()
	id := s.enqueue("r", `{"ticket":1}`)
	first := a.offer(t, id, 1, false)
	assert.JSONEq(t, `{"ticket":1}`, string(first.Data))
	expired := a.next(t)
	assert.Equal(t, `{"type":"expired","queue":"r","id":"`+id+`"}`, expired.Raw)
	second := b.offer(t, id, 2, false)
	assert.GreaterOrEqual(t, expired.At.Sub(start), timeout)
	assert.Less(t, second.At.Sub(first.At), timeout+2*time.Second)
	a.must(t, "assign", id, "OFFER_EXPIRED")
	a.must(t, "reject", id, "OFFER_EXPIRED")
	bExpired := b.next(t)
	assert.Equal(t, `{"taskId":"`+id+`","queue":"r","id":"`+id+`"}`, bExpired.Raw)
	a.offer(t, id, 3, false) // both refused: around again
	b.must(t, "assign", id, "OFFER_EXPIRED")
	a.must(t, "reject", id, "OK")
	b.offer(t, id, 4, false)
	b.must(t, "assign", id, "OK")
	a.must(t, "assign", id, "OFFER_EXPIRED")

	b.stop()
	s.waitWorkers("r", 1)
	older := s.enqueue("r", `"older"`)
	a.offer(t, older, 1, false)
	newer := s.enqueue("r", `"newer"`)
	a.must(t, "reject", older, "OK")
	// The refused task comes back ahead of the newer one when JetStream
	// redelivers it within the 250 ms the instance holds newer tasks back
	// (README); on a loaded machine (CI, -race) it can take longer, and
	// then the newer one comes first. Either way each is offered once more.
	back := a.next(t)
	require.Equal(t, "task", back.Type, back.Raw)
	if back.ID == newer {
		t.Log("the refused task came back after the newer one (redelivery over 250 ms)")
		require.Equal(t, 1, back.Attempt, back.Raw)
		a.must(t, "assign", newer, "OK")
		a.offer(t, older, 2, false)
		a.must(t, "assign", older, "OK")
	} else {
		require.Equal(t, older, back.ID, back.Raw)
		require.Equal(t, 2, back.Attempt, back.Raw)
		a.must(t, "assign", older, "OK")
		a.offer(t, newer, 1, false)
		a.must(t, "assign", newer, "OK")
	}

	m := s.scrape()
	assert.Equal(t, 2.0, queueSample(m, "tasks_total", "r", "timed_out"))
	assert.Equal(t, 2.0, queueSample(m, "tasks_total", "r", "rejected"))
	assert.Equal(t, 4.0, queueSample(m, "tasks_total", "r", "reoffered"))

	// Forced: arrives assigned, cannot be refused, holds no slot without
	// completion; with it, goes to the next worker when its own vanishes.
	f := s.wsWorker("ws-f", "Basic "+testToken, 1, "f")
	f1 := s.enqueue("f?mode=assign", `{"forced":1}`)
	n := f.offer(t, f1, 1, true)
	assert.Equal(t, `{"type":"task","queue":"f","id":"`+f1+`","assigned":true,"attempt":1,"data":{"forced":1}}`, n.Raw)
	f.must(t, "reject", f1, "ASSIGNED_BY_FORCE")
	f.must(t, "done", f1, "OK")
	f4 := s.enqueue("f?mode=assign&complete=1", `5`)
	f.offer(t, f4, 1, true)
	g := s.sseWorker("sse-g", "Bearer "+tok, "f", "")
	s.waitWorkers("f", 2)
	f.kill() // a disconnect before done: forced again, to the next
	n = g.offer(t, f4, 2, true)
	assert.Equal(t, `{"taskId":"`+f4+`","queue":"f","id":"`+f4+`","assigned":true,"attempt":2,"data":5}`, n.Raw)
	g.must(t, "done", f4, "OK")

	// Take-free: a waiting task, assigned at once; 204 when none.
	f5 := s.enqueue("nobody?mode=assign", `6`)
	got, ok, err := s.take(s.http, "Basic "+testToken, "nobody")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, `{"type":"task","queue":"nobody","id":"`+f5+`","assigned":true,"attempt":1,"data":6}`, got.Raw)
	_, ok, err = s.take(s.http, "Basic "+testToken, "nobody")
	require.NoError(t, err)
	assert.False(t, ok)

	// The state: depth and the oldest waiting task, from JetStream.
	s.enqueue("idle", `1`)
	require.Eventually(t, func() bool {
		m := s.scrape()
		return queueSample(m, "depth", "idle", "") == 1 && queueSample(m, "oldest_waiting_seconds", "idle", "") > 0
	}, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+adminToken+" admin\n"))
	s.waitLog(`msg="tokens file reloaded"`)
	status, body := s.do(http.MethodGet, "/admin/queues", "Basic "+adminToken, "")
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, `"name":"idle"`)
}

// Instances share a queue: a task posted to one is offered to a worker
// on another; an SSE worker's answers may reach any instance (no sticky
// sessions); a task taken on one is done on another; fairness holds
// across instances within max(2, mean/5).
func TestQueueClusterInstancesShare(t *testing.T) {
	clNoLeaks(t)
	ss := startCluster(t, 2, map[string]string{"JWT_SECRET": jwtSecret})
	a, b := ss[0], ss[1]
	tok := queueJWT(t, "sse-b", time.Hour, map[string]any{"work": []string{"s", "t"}})
	w := b.sseWorker("sse-b", "Bearer "+tok, "s", "")
	b.waitWorkers("s", 1)
	id := a.enqueue("s?complete=1", `{"x":1}`)
	w.offer(t, id, 1, false)
	// The answers to the other instance.
	onA := &qWorker{name: "sse-b via a", sse: true, base: a.broadcastHTTP(), queue: "s", auth: "Bearer " + tok, post: w.post}
	onA.must(t, "done", id, "NOT_ASSIGNED")
	onA.must(t, "assign", id, "OK")
	onA.must(t, "assign", id, "OK") // a repeat
	w.must(t, "done", id, "OK")
	onA.must(t, "done", id, "OK") // a repeat, elsewhere
	onA.must(t, "assign", "0123", "UNKNOWN_TASK")

	// A take on a, done on b.
	t2 := b.enqueue("t?complete=1", `2`)
	got, ok, err := a.take(a.http, "Bearer "+tok, "t")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, t2, got.ID)
	onB := &qWorker{name: "taker via b", sse: true, base: b.broadcastHTTP(), queue: "t", auth: "Bearer " + tok, post: w.post}
	onB.must(t, "done", t2, "OK")

	assert.Equal(t, 1.0, queueSample(a.scrape(), "tasks_total", "s", "added"))
	mb := b.scrape()
	assert.Equal(t, 1.0, queueSample(mb, "tasks_total", "s", "offered"))
	assert.Equal(t, 1.0, queueSample(mb, "tasks_total", "s", "done"))

	// Fairness: 2 workers on each instance, tasks posted one at a time to
	// either while every worker is free.
	var workers []*qWorker
	for i := range 4 {
		workers = append(workers, ss[i%2].wsWorker(fmt.Sprint("ws-", i), "Basic "+testToken, 1, "fair"))
	}
	for _, s := range ss {
		s.waitWorkers("fair", 2)
	}
	const tasks = 80
	counts := make([]int, len(workers))
	for k := range tasks {
		id := ss[k%2].enqueue("fair", fmt.Sprint(k))
		i := waitAny(t, workers, id)
		workers[i].must(t, "assign", id, "OK")
		counts[i]++
	}
	mean := tasks / len(workers)
	t.Logf("tasks per worker (a, b, a, b): %v", counts)
	for i, c := range counts {
		assert.InDelta(t, mean, c, float64(max(2, mean/5)), "worker %d", i)
	}
}

// An instance that shuts down gives its workers' tasks back at once: the
// other instance's worker is offered them well within the ack wait.
func TestQueueClusterShutdownGivesBack(t *testing.T) {
	clNoLeaks(t)
	ss := startCluster(t, 2, map[string]string{"OFFER_TIMEOUT": "30s", "SHUTDOWN_DELAY": "0s"})
	a, b := ss[0], ss[1]
	wa := a.wsWorker("ws-a", "Basic "+testToken, 2, "g")
	i1 := a.enqueue("g", `1`)
	i2 := a.enqueue("g?complete=1", `2`)
	got := map[string]bool{}
	for range 2 {
		got[wa.offer(t, "", 1, false).ID] = true
	}
	require.Equal(t, map[string]bool{i1: true, i2: true}, got)
	wa.must(t, "assign", i2, "OK")
	wb := b.wsWorker("ws-b", "Basic "+testToken, 2, "g")
	stopped := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.stop() })
	got = map[string]bool{}
	for range 2 {
		got[wb.offer(t, "", 2, false).ID] = true
	}
	assert.Equal(t, map[string]bool{i1: true, i2: true}, got)
	assert.Less(t, time.Since(stopped), 10*time.Second, "not after the 30 s ack wait")
	wg.Wait()
}

// With NATS_EMBED the queues survive a restart: a task added before it is
// offered after it, and one that was out with a worker when the instance
// stopped (given back) comes back on a later attempt.
func TestQueueClusterSurvivesRestart(t *testing.T) {
	clNoLeaks(t)
	env := embedEnv(t, map[string]string{"SHUTDOWN_DELAY": "0s"})
	s := startServer(t, env)
	s.waitReady()
	waiting := s.enqueue("keep", `"waiting"`)
	w := s.wsWorker("ws-1", "Basic "+testToken, 1, "out")
	out := s.enqueue("out?complete=1", `"out"`)
	w.offer(t, out, 1, false)
	w.must(t, "assign", out, "OK")
	require.NoError(t, s.stop())

	s2 := startServer(t, env)
	s2.waitReady()
	k := s2.wsWorker("ws-2", "Basic "+testToken, 1, "keep")
	k.offer(t, waiting, 1, false)
	o := s2.wsWorker("ws-3", "Basic "+testToken, 1, "out")
	o.offer(t, out, 2, false)
	o.must(t, "assign", out, "OK")
	o.must(t, "done", out, "OK")
}
