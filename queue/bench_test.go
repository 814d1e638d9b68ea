package queue

import (
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkThroughput pushes tasks through one queue with 10 workers, each
// task offered, assigned and done (Complete), with up to 100 tasks
// outstanding. It reports tasks per second and the latency from Add to the
// worker's notify (which, under load, includes the wait for a free worker).
func BenchmarkThroughput(b *testing.B) {
	const workers, window = 10, 100
	m := NewManager(Options{MaxTasks: window, OfferTimeout: time.Minute, TaskTimeout: time.Minute})
	defer m.Close()

	datas := make([]json.RawMessage, b.N)
	for i := range datas {
		datas[i] = json.RawMessage(strconv.Itoa(i))
	}
	started := make([]time.Time, b.N)
	latency := make([]time.Duration, b.N)
	slots := make(chan struct{}, window)
	all := make(chan struct{})
	var mu sync.Mutex
	finished := 0

	var wg sync.WaitGroup
	ws := make([]*Worker, workers)
	chs := make([]chan Notice, workers)
	for i := range ws {
		ch := make(chan Notice, window)
		chs[i] = ch
		ws[i] = NewWorker("bench", 1, func(n Notice) {
			if k, err := strconv.Atoi(string(n.Data)); err == nil && n.Attempt == 1 {
				latency[k] = time.Since(started[k])
			}
			ch <- n // never blocks: at most window tasks exist
		})
		w := ws[i]
		wg.Go(func() {
			for n := range ch {
				if n.Kind != KindTask {
					continue
				}
				if err := m.Assign(w, n.ID); err != nil {
					b.Error(err)
				}
				if err := m.Done(w, n.ID); err != nil {
					b.Error(err)
				}
				<-slots
				mu.Lock()
				if finished++; finished == b.N {
					close(all)
				}
				mu.Unlock()
			}
		})
	}
	for _, w := range ws {
		m.Join(w, []string{"q"})
	}

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		slots <- struct{}{}
		started[i] = time.Now()
		if _, err := m.Add("q", datas[i], AddOptions{Complete: true}); err != nil {
			b.Fatal(err)
		}
	}
	<-all
	elapsed := time.Since(start)
	b.StopTimer()
	for _, w := range ws {
		m.Leave(w)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	for _, ch := range chs {
		close(ch)
	}
	wg.Wait()
	reportLatency(b, latency)
}

// BenchmarkAddToOffer measures one task at a time with 10 idle workers:
// the latency from Add to the offer reaching notify, then assign and done.
func BenchmarkAddToOffer(b *testing.B) {
	m := NewManager(Options{OfferTimeout: time.Minute, TaskTimeout: time.Minute})
	defer m.Close()
	var (
		got   Notice
		to    *Worker
		at    time.Time
		start time.Time
	)
	latency := make([]time.Duration, 0, b.N)
	for range 10 {
		var w *Worker
		w = NewWorker("bench", 1, func(n Notice) { got, to, at = n, w, time.Now() })
		m.Join(w, []string{"q"})
	}
	data := json.RawMessage(`{"ticket":42}`)
	b.ReportAllocs()
	for b.Loop() {
		start = time.Now()
		if _, err := m.Add("q", data, AddOptions{Complete: true}); err != nil {
			b.Fatal(err)
		}
		latency = append(latency, at.Sub(start))
		if err := m.Assign(to, got.ID); err != nil {
			b.Fatal(err)
		}
		if err := m.Done(to, got.ID); err != nil {
			b.Fatal(err)
		}
	}
	reportLatency(b, latency)
}

func reportLatency(b *testing.B, latency []time.Duration) {
	if len(latency) == 0 {
		return
	}
	slices.Sort(latency)
	b.ReportMetric(float64(latency[len(latency)/2].Nanoseconds())/1e3, "µs-p50-add-to-offer")
	b.ReportMetric(float64(latency[len(latency)*99/100].Nanoseconds())/1e3, "µs-p99-add-to-offer")
}
