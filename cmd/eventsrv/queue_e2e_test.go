package main

// Transport-level tests of work queues (#15), the list, against the
// real server: WebSocket workers, SSE workers (GET /queue/{name}/wait with
// POSTed answers) and take-free over HTTP, tasks POSTed to the listen
// server. The model itself has its own tests in package queue.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loadTask is the data of a task in the load test: its number, and
// whether it was added with ?complete=1 (a worker cannot tell otherwise).
type loadTask struct {
	N        int  `json:"n"`
	Complete bool `json:"complete"`
}

// offerRec is one offer the load test's workers saw.
type offerRec struct{ attempt, worker int }

// loadState is what the workers of the load test did, under mu.
type loadState struct {
	mu                           sync.Mutex
	assigned                     map[string]int        // assign answered OK, by task
	done                         map[string]int        // done answered OK
	offers                       map[string][]offerRec // offers by task
	rejected, offered, reoffered int
	silent, late, expired        []int // by worker: offers left unanswered, answers too late (OFFER_EXPIRED), expired notices
	finished                     int
	problems                     []string
	killedID                     string
	killedAttempt                int
	all                          chan struct{} // closed when every task is finished
	progress                     chan struct{} // signalled at every expired notice
}

func (st *loadState) problem(format string, args ...any) {
	st.mu.Lock()
	st.problems = append(st.problems, fmt.Sprintf(format, args...))
	st.mu.Unlock()
}

// finishLocked counts a task finished (assigned without completion, or
// done); under mu.
func (st *loadState) finishLocked(tasks int) {
	if st.finished++; st.finished == tasks {
		close(st.all)
	}
}

// runQueueLoad is the test: tasks POSTed to queue, workers that
// reject 20% of their offers at random and stay silent on 5% (OFFER_TIMEOUT
// ends those), the worker at kill killed right after it assigned a task
// that needs completion (once it has done killAfter tasks). Odd tasks need
// completion. In the end every task was assigned exactly once (done
// exactly once when it needs completion; the killed worker's task was
// assigned twice, the second time on a later attempt), none is lost, and
// the server's counters agree with what the workers saw.
func runQueueLoad(t *testing.T, s *server, queue string, workers []*qWorker, kill, killAfter, tasks int) {
	st := &loadState{
		assigned: map[string]int{}, done: map[string]int{}, offers: map[string][]offerRec{},
		silent: make([]int, len(workers)), late: make([]int, len(workers)), expired: make([]int, len(workers)),
		all: make(chan struct{}), progress: make(chan struct{}, 1),
	}
	stop := make(chan struct{})
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i)+1, 15))
			mine := 0 // tasks this worker finished
			for {
				var n qNotice
				var ok bool
				select {
				case n, ok = <-w.notices:
				case <-stop:
					return
				}
				if !ok {
					select {
					case <-stop:
					default:
						st.problem("%s: the connection ended", w.name)
					}
					return
				}
				if n.Type == "expired" {
					st.mu.Lock()
					st.expired[i]++
					st.mu.Unlock()
					select {
					case st.progress <- struct{}{}:
					default:
					}
					continue
				}
				if n.Type != "task" || n.Assigned || n.Queue != queue || (w.sse && n.TaskID != n.ID) {
					st.problem("%s: unexpected notice %s %s", w.name, n.Type, n.Raw)
					continue
				}
				var d loadTask
				if err := json.Unmarshal(n.Data, &d); err != nil {
					st.problem("%s: data %s: %v", w.name, n.Data, err)
					continue
				}
				st.mu.Lock()
				st.offers[n.ID] = append(st.offers[n.ID], offerRec{n.Attempt, i})
				st.offered++
				if n.Attempt > 1 {
					st.reoffered++
				}
				st.mu.Unlock()

				r := rng.Float64()
				switch {
				case r < 0.20:
					code, err := w.act("reject", n.ID)
					st.mu.Lock()
					switch {
					case err != nil:
						st.problems = append(st.problems, err.Error())
					case code == "OK":
						st.rejected++
					case code == "OFFER_EXPIRED": // it expired before the answer came
						st.late[i]++
					default:
						st.problems = append(st.problems, fmt.Sprintf("%s: reject %s: %s", w.name, n.ID, code))
					}
					st.mu.Unlock()
				case r < 0.25:
					st.mu.Lock()
					st.silent[i]++ // OFFER_TIMEOUT will take it back
					st.mu.Unlock()
				default:
					code, err := w.act("assign", n.ID)
					st.mu.Lock()
					switch {
					case err != nil:
						st.problems = append(st.problems, err.Error())
					case code == "OFFER_EXPIRED":
						st.late[i]++
					case code != "OK":
						st.problems = append(st.problems, fmt.Sprintf("%s: assign %s: %s", w.name, n.ID, code))
					default:
						st.assigned[n.ID]++
						if i == kill && d.Complete && mine >= killAfter && st.killedID == "" {
							st.killedID, st.killedAttempt = n.ID, n.Attempt
							st.mu.Unlock()
							w.kill() // mid-task: assigned, not done
							close(killed)
							return
						}
						if !d.Complete {
							mine++
							st.finishLocked(tasks)
						}
					}
					st.mu.Unlock()
					if code != "OK" || !d.Complete {
						continue
					}
					code, err = w.act("done", n.ID)
					st.mu.Lock()
					switch {
					case err != nil:
						st.problems = append(st.problems, err.Error())
					case code != "OK":
						st.problems = append(st.problems, fmt.Sprintf("%s: done %s: %s", w.name, n.ID, code))
					default:
						st.done[n.ID]++
						mine++
						st.finishLocked(tasks)
					}
					st.mu.Unlock()
				}
			}
		})
	}
	// Stopped before the final counts too: a worker between an answer and
	// its tally would otherwise be missing from them.
	stopWorkers := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopWorkers()

	// Post from 4 goroutines, over kept-alive connections.
	start := time.Now()
	ids := make([]string, tasks)
	var posters sync.WaitGroup
	for p := range 4 {
		posters.Go(func() {
			for i := p; i < tasks; i += 4 {
				path := queue
				if i%2 == 1 {
					path += "?complete=1"
				}
				data, _ := json.Marshal(loadTask{N: i, Complete: i%2 == 1})
				id, err := s.postTask(s.http, "Basic "+testToken, path, string(data))
				if err != nil {
					st.problem("post %d: %v", i, err)
					return
				}
				ids[i] = id
			}
		})
	}
	posters.Wait()
	posted := time.Since(start)
	select {
	case <-st.all:
	case <-time.After(40 * time.Second):
		st.mu.Lock()
		finished, problems := st.finished, st.problems
		st.mu.Unlock()
		t.Fatalf("only %d of %d tasks finished; problems: %v", finished, tasks, problems)
	}
	t.Logf("%d tasks posted in %v, all finished in %v", tasks, posted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	select {
	case <-killed:
	default:
		t.Fatalf("worker %d was never killed", kill)
	}
	// Every unanswered or late offer is told "expired"; the last may
	// still be on its way when the last task finishes.
	deadline := time.After(10 * time.Second)
	for {
		st.mu.Lock()
		settled := true
		for i := range workers {
			settled = settled && st.expired[i] == st.silent[i]+st.late[i]
		}
		st.mu.Unlock()
		if settled {
			break
		}
		select {
		case <-st.progress:
		case <-deadline:
			st.mu.Lock()
			msg := fmt.Sprintf("expired notices %v, for silent %v and late %v offers", st.expired, st.silent, st.late)
			st.mu.Unlock()
			t.Fatal(msg)
		}
	}

	stopWorkers()
	st.mu.Lock()
	defer st.mu.Unlock()
	require.Empty(t, st.problems)
	complete := map[string]bool{}
	for i, id := range ids {
		require.NotEmpty(t, id, "task %d", i)
		complete[id] = i%2 == 1
	}
	require.Len(t, complete, tasks, "task IDs are unique")
	require.True(t, complete[st.killedID], "the killed worker held a task that needs completion")
	for id, c := range complete {
		wantAssigned := 1
		if id == st.killedID {
			wantAssigned = 2
		}
		require.Equal(t, wantAssigned, st.assigned[id], "task %s assigned", id)
		if c {
			require.Equal(t, 1, st.done[id], "task %s done", id)
		} else {
			require.Zero(t, st.done[id], "task %s needed no done", id)
		}
		// attempt counts every offer: 1, 2, … (as read, which may be out
		// of order across workers).
		offers := st.offers[id]
		slices.SortFunc(offers, func(a, b offerRec) int { return a.attempt - b.attempt })
		for k, o := range offers {
			require.Equal(t, k+1, o.attempt, "task %s: attempt counts every offer", id)
		}
	}
	for id := range st.assigned {
		require.Contains(t, complete, id, "only posted tasks are offered")
	}
	// The killed worker's task came back, to another worker.
	again := 0
	for _, o := range st.offers[st.killedID] {
		if o.attempt > st.killedAttempt {
			again++
			require.NotEqual(t, kill, o.worker, "offered to the killed worker")
		}
	}
	require.Positive(t, again, "the killed worker's task was offered again")
	var silent, late, expired int
	for i := range workers {
		silent, late, expired = silent+st.silent[i], late+st.late[i], expired+st.expired[i]
	}
	t.Logf("offers %d (re-offers %d), rejected %d, silent %d, late answers %d, expired %d; the killed worker's task was on attempt %d",
		st.offered, st.reoffered, st.rejected, silent, late, expired, st.killedAttempt)
	require.Greater(t, st.rejected, tasks/10)
	require.Greater(t, silent, tasks/50)

	// The server counted the same.
	m := s.scrape()
	for event, want := range map[string]int{
		"added": tasks, "offered": st.offered, "reoffered": st.reoffered, "assigned": tasks + 1, "taken": 0,
		"rejected": st.rejected, "timed_out": expired, "task_timed_out": 0, "abandoned": 1, "done": tasks / 2, "refused_full": 0,
	} {
		assert.Equal(t, float64(want), queueSample(m, "tasks_total", queue, event), event)
	}
	assert.Zero(t, queueSample(m, "depth", queue, ""))
	assert.Zero(t, queueSample(m, "oldest_waiting_seconds", queue, ""))
	assert.Equal(t, float64(len(workers)-1), queueSample(m, "workers", queue, ""))
}

// 1,000 tasks, 5 WebSocket workers (see runQueueLoad).
func TestQueueThousandTasksWebSocket(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, map[string]string{"OFFER_TIMEOUT": "200ms"})
	workers := make([]*qWorker, 5)
	for i := range workers {
		workers[i] = s.wsWorker(fmt.Sprint("ws-", i), "Basic "+testToken, 1, "load")
	}
	runQueueLoad(t, s, "load", workers, 0, 60, 1000)
}

// The same with 3 WebSocket and 2 SSE workers, each SSE worker its own
// subject (a JWT): an SSE worker's answers act for its subject. The killed
// worker is an SSE stream (a closed tab).
func TestQueueThousandTasksMixed(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, map[string]string{"OFFER_TIMEOUT": "200ms", "JWT_SECRET": jwtSecret})
	runQueueLoad(t, s, "load", mixedLoadWorkers(t, s), 1, 60, 1000)
}

// mixedLoadWorkers joins 2 SSE workers, each its own subject (a JWT), and 3
// WebSocket workers to the queue "load", the SSE ones first.
func mixedLoadWorkers(t *testing.T, s *server) []*qWorker {
	var workers []*qWorker
	for i := range 2 {
		tok := queueJWT(t, fmt.Sprint("sse-worker-", i), time.Hour, map[string]any{"work": []string{"load"}})
		workers = append(workers, s.sseWorker(fmt.Sprint("sse-", i), "Bearer "+tok, "load", ""))
	}
	for i := range 3 {
		workers = append(workers, s.wsWorker(fmt.Sprint("ws-", i), "Basic "+testToken, 1, "load"))
	}
	s.waitWorkers("load", 5)
	return workers
}

// Fairness: tasks posted one at a time while every worker is free go to
// the worker free longest, so that each worker's count is within
// max(2, mean/5) of the mean; here, with nothing else going on, exactly
// in turn. 3 WebSocket and 2 SSE workers.
func TestQueueFairness(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret})
	var workers []*qWorker
	for i := range 5 {
		if i%2 == 1 {
			tok := queueJWT(t, fmt.Sprint("fair-", i), time.Hour, map[string]any{"work": []string{"fair"}})
			workers = append(workers, s.sseWorker(fmt.Sprint("sse-", i), "Bearer "+tok, "fair", ""))
		} else {
			workers = append(workers, s.wsWorker(fmt.Sprint("ws-", i), "Basic "+testToken, 1, "fair"))
		}
		s.waitWorkers("fair", i+1) // join in this order
	}
	const tasks = 100
	order := make([]int, 0, tasks)
	for k := range tasks {
		id := s.enqueue("fair", fmt.Sprint(k))
		// The one worker offered it assigns; its answer comes after its
		// slot was freed, so every worker is free again for the next task.
		got := waitAny(t, workers, id)
		workers[got].must(t, "assign", id, "OK")
		order = append(order, got)
	}
	counts := make([]int, len(workers))
	for _, i := range order {
		counts[i]++
	}
	mean := tasks / len(workers)
	t.Logf("tasks per worker: %v", counts)
	for i, c := range counts {
		assert.InDelta(t, mean, c, float64(max(2, mean/5)), "worker %d", i)
	}
	// Longest free first: in turn, in the order they joined.
	for k, i := range order {
		assert.Equal(t, k%len(workers), i, "task %d", k)
	}
	for _, w := range workers {
		w.quiet(t)
	}
}

// waitAny waits until one of workers is offered the task id and returns
// its index.
func waitAny(t *testing.T, workers []*qWorker, id string) int {
	t.Helper()
	got := make(chan int, len(workers))
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() {
			select {
			case n, ok := <-w.notices:
				if ok && n.ID == id {
					got <- i
					return
				}
				got <- -1 - i // wrong notice
			case <-done:
			}
		})
	}
	defer func() {
		close(done)
		wg.Wait()
	}()
	select {
	case i := <-got:
		require.GreaterOrEqual(t, i, 0, "worker %d got another notice", -1-i)
		return i
	case <-time.After(10 * time.Second):
		t.Fatalf("no worker was offered %s", id)
		return -1
	}
}

// Re-offer timing with a short OFFER_TIMEOUT: an offer left unanswered for
// OFFER_TIMEOUT is taken back, its worker told {"type":"expired",…} (SSE:
// an expired event), and the task offered to the next worker with attempt
// 2; answers to the old offer are OFFER_EXPIRED. When every live worker has
// refused it, it goes around again. A refused task stays at the head of
// its queue, ahead of newer tasks.
func TestQueueReofferTiming(t *testing.T) {
	clNoLeaks(t)
	const timeout = 200 * time.Millisecond
	s := startServer(t, map[string]string{"OFFER_TIMEOUT": timeout.String(), "JWT_SECRET": jwtSecret})
	a := s.wsWorker("ws-a", "Basic "+testToken, 1, "r")
	tok := queueJWT(t, "sse-b", time.Hour, map[string]any{"work": []string{"r"}})
	b := s.sseWorker("sse-b", "Bearer "+tok, "r", "")
	s.waitWorkers("r", 2)

	start := time.Now()
	id := s.enqueue("r", `{"ticket":1}`)
	first := a.offer(t, id, 1, false)
	assert.JSONEq(t, `{"ticket":1}`, string(first.Data))

	// a stays silent: at OFFER_TIMEOUT a is told, and b is offered it.
	expired := a.next(t)
	assert.Equal(t, `{"type":"expired","queue":"r","id":"`+id+`"}`, expired.Raw)
	second := b.offer(t, id, 2, false)
	for name, at := range map[string]time.Time{"the expiry": expired.At, "the second offer": second.At} {
		assert.GreaterOrEqual(t, at.Sub(start), timeout, "%s came before OFFER_TIMEOUT", name)
		assert.Less(t, at.Sub(first.At), timeout+2*time.Second, "%s came long after OFFER_TIMEOUT", name)
	}
	t.Logf("offer at %v, expired at %v, offered again at %v after the POST",
		first.At.Sub(start).Round(time.Millisecond), expired.At.Sub(start).Round(time.Millisecond), second.At.Sub(start).Round(time.Millisecond))
	a.must(t, "assign", id, "OFFER_EXPIRED")
	a.must(t, "reject", id, "OFFER_EXPIRED")

	// b stays silent too: b gets an expired event, and, both live workers
	// having refused it, the task goes around again, to a.
	bExpired := b.next(t)
	assert.Equal(t, "expired", bExpired.Type)
	assert.Equal(t, `{"taskId":"`+id+`","queue":"r","id":"`+id+`"}`, bExpired.Raw)
	assert.GreaterOrEqual(t, bExpired.At.Sub(start), 2*timeout)
	third := a.offer(t, id, 3, false)
	assert.GreaterOrEqual(t, third.At.Sub(start), 2*timeout)
	b.must(t, "assign", id, "OFFER_EXPIRED")

	// Going around forgot the refusals: a's rejection sends it to b.
	a.must(t, "reject", id, "OK")
	b.offer(t, id, 4, false)
	b.must(t, "assign", id, "OK")
	a.must(t, "assign", id, "OFFER_EXPIRED") // a saw it: its offer ended

	// The head of the queue: with only a, a rejected task comes back to a
	// before a newer one.
	b.stop()
	s.waitWorkers("r", 1)
	older := s.enqueue("r", `"older"`)
	a.offer(t, older, 1, false)
	newer := s.enqueue("r", `"newer"`)
	a.must(t, "reject", older, "OK")
	a.offer(t, older, 2, false)
	a.must(t, "assign", older, "OK")
	a.offer(t, newer, 1, false)
	a.must(t, "assign", newer, "OK")
	a.quiet(t)

	m := s.scrape()
	assert.Equal(t, 2.0, queueSample(m, "tasks_total", "r", "timed_out"))
	assert.Equal(t, 2.0, queueSample(m, "tasks_total", "r", "rejected"))
	assert.Equal(t, 4.0, queueSample(m, "tasks_total", "r", "reoffered"))
}

// A disconnect is a refusal too: the offer goes at once (not after
// OFFER_TIMEOUT, 40 s here) to the next worker, over either transport.
func TestQueueDisconnectReoffers(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret})
	tok := queueJWT(t, "sse-a", time.Hour, map[string]any{"work": []string{"d"}})
	a := s.sseWorker("sse-a", "Bearer "+tok, "d", "")
	s.waitWorkers("d", 1)
	b := s.wsWorker("ws-b", "Basic "+testToken, 1, "d")
	c := s.wsWorker("ws-c", "Basic "+testToken, 1, "d")

	id := s.enqueue("d", `1`)
	a.offer(t, id, 1, false)
	start := time.Now()
	a.kill()
	b.offer(t, id, 2, false)
	b.kill()
	c.offer(t, id, 3, false)
	assert.Less(t, time.Since(start), 10*time.Second)
	c.must(t, "assign", id, "OK")
	assert.Equal(t, 2.0, queueSample(s.scrape(), "tasks_total", "d", "abandoned"))
}

// Forced assignment (?mode=assign, QueueTasks' forced mode): the task
// arrives "assigned":true and cannot be rejected. It takes no slot unless
// it needs completion; one that does holds the slot until done, and goes
// back (forced again, to another worker) when its worker vanishes. One
// that finds no free worker waits, for a worker or a take.
func TestQueueForcedAssign(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret})
	a := s.wsWorker("ws-a", "Basic "+testToken, 1, "f")
	f1 := s.enqueue("f?mode=assign", `{"forced":1}`)
	n := a.offer(t, f1, 1, true)
	assert.Equal(t, `{"type":"task","queue":"f","id":"`+f1+`","assigned":true,"attempt":1,"data":{"forced":1}}`, n.Raw)
	a.must(t, "reject", f1, "ASSIGNED_BY_FORCE")
	a.must(t, "assign", f1, "OK") // a repeat: it is the worker's already
	a.must(t, "done", f1, "OK")   // a worker may send done for every task

	// No slot taken: a (max_in_flight 1) is offered the next task at once.
	t1 := s.enqueue("f", `1`)
	a.offer(t, t1, 1, false)
	// Now a is full: a forced task waits for it.
	f2 := s.enqueue("f?mode=assign", `2`)
	assert.Equal(t, 1.0, queueSample(s.scrape(), "depth", "f", ""))
	a.quiet(t)
	a.must(t, "assign", t1, "OK") // frees a: f2 follows this answer
	a.offer(t, f2, 1, true)

	// A forced task that needs completion holds the slot until done.
	f3 := s.enqueue("f?mode=assign&complete=1", `3`)
	a.offer(t, f3, 1, true)
	t2 := s.enqueue("f", `4`)
	assert.Equal(t, 1.0, queueSample(s.scrape(), "depth", "f", ""))
	a.quiet(t)
	a.must(t, "done", f3, "OK")
	a.offer(t, t2, 1, false)
	a.must(t, "assign", t2, "OK")

	// Its worker vanishes before done: it goes, forced, to the next.
	f4 := s.enqueue("f?mode=assign&complete=1", `5`)
	a.offer(t, f4, 1, true)
	tok := queueJWT(t, "sse-b", time.Hour, map[string]any{"work": []string{"f"}})
	b := s.sseWorker("sse-b", "Bearer "+tok, "f", "")
	s.waitWorkers("f", 2)
	a.kill()
	n = b.offer(t, f4, 2, true)
	assert.Equal(t, `{"taskId":"`+f4+`","queue":"f","id":"`+f4+`","assigned":true,"attempt":2,"data":5}`, n.Raw)
	b.must(t, "reject", f4, "ASSIGNED_BY_FORCE")
	b.must(t, "done", f4, "OK")

	// With no free worker, a forced task waits, and take-free gets it.
	f5 := s.enqueue("nobody?mode=assign", `6`)
	got, ok, err := s.take(s.http, "Basic "+testToken, "nobody")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, `{"type":"task","queue":"nobody","id":"`+f5+`","assigned":true,"attempt":1,"data":6}`, got.Raw)

	m := s.scrape()
	assert.Equal(t, 1.0, queueSample(m, "tasks_total", "f", "abandoned"))
	assert.Equal(t, 2.0, queueSample(m, "tasks_total", "f", "done"))
	assert.Zero(t, queueSample(m, "tasks_total", "f", "rejected"))
}

// Take-free races with offers: tasks are posted in bursts while WebSocket
// workers take offers (rejecting some, so that refused tasks wait at the
// head) and HTTP callers take free tasks as fast as they can. Every task
// goes to exactly one of them; no worker's assign is refused (a take
// never takes an offered task), and a taken task that needs completion is
// done by its taker.
func TestQueueTakeRacesOffers(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret})
	const tasks = 400
	var (
		mu       sync.Mutex
		byWorker = map[string]int{}
		byTake   = map[string]int{}
		problems []string
		count    int
		all      = make(chan struct{})
	)
	got := func(m map[string]int, id string) {
		m[id]++
		if count++; count == tasks {
			close(all)
		}
	}
	problem := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for i := range 3 {
		w := s.wsWorker(fmt.Sprint("ws-", i), "Basic "+testToken, 1, "race")
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for {
				var n qNotice
				select {
				case n = <-w.notices:
				case <-stop:
					return
				}
				if n.Type != "task" {
					problem("%s: %s", w.name, n.Raw)
					return
				}
				if rng.Float64() < 0.3 {
					if code, err := w.act("reject", n.ID); err != nil || code != "OK" {
						problem("%s: reject %s: %s %v", w.name, n.ID, code, err)
					}
					continue
				}
				code, err := w.act("assign", n.ID)
				if err != nil || code != "OK" {
					problem("%s: assign %s: %s %v (taken from under an offer?)", w.name, n.ID, code, err)
					continue
				}
				var complete bool
				_ = json.Unmarshal(n.Data, &complete)
				if complete {
					if code, err := w.act("done", n.ID); err != nil || code != "OK" {
						problem("%s: done %s: %s %v", w.name, n.ID, code, err)
					}
				}
				mu.Lock()
				got(byWorker, n.ID)
				mu.Unlock()
			}
		})
	}
	for i := range 2 {
		auth := "Bearer " + queueJWT(t, fmt.Sprint("taker-", i), time.Hour, map[string]any{"work": []string{"race"}})
		tr := &http.Transport{}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		taker := &qWorker{name: fmt.Sprint("taker-", i), sse: true, base: s.broadcastHTTP(), queue: "race", auth: auth, post: c}
		wg.Go(func() {
			defer tr.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				case <-all:
					return
				default:
				}
				n, ok, err := s.take(c, auth, "race")
				if err != nil {
					problem("%s: %v", taker.name, err)
					return
				}
				if !ok {
					continue
				}
				if !n.Assigned || n.Type != "task" {
					problem("%s: took %s", taker.name, n.Raw)
				}
				var complete bool
				_ = json.Unmarshal(n.Data, &complete)
				if complete {
					if code, err := taker.act("done", n.ID); err != nil || code != "OK" {
						problem("%s: done %s: %s %v", taker.name, n.ID, code, err)
					}
				}
				mu.Lock()
				got(byTake, n.ID)
				mu.Unlock()
			}
		})
	}

	ids := make(map[string]bool, tasks)
	var posters sync.WaitGroup
	var idsMu sync.Mutex
	for p := range 2 {
		posters.Go(func() {
			for i := p; i < tasks; i += 2 {
				path := "race"
				if i%3 == 0 {
					path += "?complete=1"
				}
				id, err := s.postTask(s.http, "Basic "+testToken, path, fmt.Sprint(i%3 == 0))
				if err != nil {
					problem("post: %v", err)
					return
				}
				idsMu.Lock()
				ids[id] = true
				idsMu.Unlock()
			}
		})
	}
	posters.Wait()
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		mu.Lock()
		msg := fmt.Sprintf("%d of %d tasks went out; problems %v", count, tasks, problems)
		mu.Unlock()
		t.Fatal(msg)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, problems)
	require.Len(t, ids, tasks)
	for id := range ids {
		require.Equal(t, 1, byWorker[id]+byTake[id], "task %s went to exactly one", id)
	}
	t.Logf("%d tasks: %d by offers to WebSocket workers, %d by take-free", tasks, len(byWorker), len(byTake))
	require.NotEmpty(t, byTake, "the takers took some")
	require.NotEmpty(t, byWorker, "the workers took some")
	m := s.scrape()
	assert.Equal(t, float64(tasks), queueSample(m, "tasks_total", "race", "assigned"))
	assert.Equal(t, float64(len(byTake)), queueSample(m, "tasks_total", "race", "taken"))
	assert.Equal(t, float64(tasks/3+1), queueSample(m, "tasks_total", "race", "done"))
	assert.Zero(t, queueSample(m, "depth", "race", ""))
}

// The wait stream keeps itself alive with a comment every PING_INTERVAL,
// as the QueueTasks service's did every 25 s; max_in_flight works over SSE
// as over a WebSocket.
func TestQueueSSEKeepAliveAndMaxInFlight(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, map[string]string{"PING_INTERVAL": "100ms"})
	w := s.sseWorker("sse", "Basic "+testToken, "k", "max_in_flight=2")
	select {
	case <-w.pings:
	case <-time.After(5 * time.Second):
		t.Fatal("no keep-alive comment on the wait stream")
	}
	ids := []string{s.enqueue("k", `1`), s.enqueue("k", `2`), s.enqueue("k", `3`)}
	w.offer(t, ids[0], 1, false)
	w.offer(t, ids[1], 1, false)
	w.quiet(t) // two in flight: the third waits
	w.must(t, "assign", ids[1], "OK")
	w.offer(t, ids[2], 1, false)

	ws := s.wsWorker("ws", "Basic "+testToken, 3, "k3")
	more := []string{s.enqueue("k3", `1`), s.enqueue("k3", `2`), s.enqueue("k3", `3`), s.enqueue("k3", `4`)}
	for _, id := range more[:3] {
		ws.offer(t, id, 1, false)
	}
	ws.quiet(t)
	ws.must(t, "reject", more[0], "OK")
	// Refused by its only worker, more[0] went around again, ahead of
	// more[3].
	ws.offer(t, more[0], 2, false)
	ws.quiet(t)
}
