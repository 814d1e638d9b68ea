package main

// The work queues' benchmark (#15): tasks per second through one queue of
// the real server (run() in this process, as the tests start it), with 10
// WebSocket workers; each task is POSTed to the listen server with
// ?complete=1, offered, assigned and done. Also the latency from the POST
// (just before it is sent) to the offer (when the worker has read it).
//
//	go test -run '^$' -bench BenchmarkQueueThroughput -benchtime 20000x -count 3 ./cmd/eventsrv/

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startBenchServer runs eventsrv in this process on free loopback ports
// for a benchmark, and returns the listen and broadcast URLs and a stop
// function that waits for run to return.
func startBenchServer(b *testing.B, env map[string]string) (listenURL, wsURL string, stop func()) {
	b.Helper()
	dir := b.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(testToken+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	vars := map[string]string{"BIND_ADDRESS": "127.0.0.1", "LISTEN_PORT": "0", "BROADCAST_PORT": "0",
		"METRICS_ADDRESS": "off", "TOKENS_FILE": tokens, "LOG_LEVEL": "info"}
	for k, v := range env {
		vars[k] = v
	}
	logs := newLogSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"eventsrv"}, func(k string) string { return vars[k] }, io.Discard, logs)
	}()
	select {
	case addrs := <-logs.ready:
		listenURL, wsURL = "http://"+addrs[0], "ws://"+addrs[1]+"/"
	case err := <-done:
		cancel()
		b.Fatalf("server exited: %v\n%s", err, logs)
	case <-time.After(10 * time.Second):
		cancel()
		b.Fatalf("server did not start\n%s", logs)
	}
	return listenURL, wsURL, func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("server: %v", err)
		}
	}
}

// BenchmarkQueueThroughput: window=20 keeps 20 tasks posted and not yet
// done (4 posters), enough to keep the 10 workers busy: its tasks/s is the
// queue's throughput, and its latency includes the wait for a free worker.
// window=1 posts one task at a time: the latency of a queue with free
// workers.
func BenchmarkQueueThroughput(b *testing.B) {
	for _, window := range []int{20, 1} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			benchQueue(b, 10, min(window, 4), window)
		})
	}
}

func benchQueue(b *testing.B, workers, posters, window int) {
	listenURL, wsURL, stop := startBenchServer(b, nil)
	defer stop()

	n := b.N
	sent := make([]atomic.Int64, n) // UnixNano before each task's POST
	slots := make(chan struct{}, window)
	var finished atomic.Int64
	all := make(chan struct{})
	errs := make(chan error, workers+posters)

	type frame struct {
		Type, ID, Code string
		Data           json.RawMessage
	}
	latencies := make([][]time.Duration, workers)
	conns := make([]*websocket.Conn, workers)
	for i := range conns {
		c, resp, err := websocket.DefaultDialer.Dial(wsURL, nil)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		conns[i] = c
		defer c.Close()
		for _, msg := range []string{initMsg("Basic " + testToken), `{"type":"work","queues":["bench"],"max_in_flight":1}`} {
			if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				b.Fatal(err)
			}
			if _, reply, err := c.ReadMessage(); err != nil || !strings.Contains(string(reply), `"code":"OK"`) {
				b.Fatalf("%s: %s %v", msg, reply, err)
			}
		}
		latencies[i] = make([]time.Duration, 0, n/workers+16)
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			for {
				_, raw, err := c.ReadMessage()
				if err != nil {
					select {
					case <-all:
					default:
						errs <- err
					}
					return
				}
				now := time.Now()
				var f frame
				if err := json.Unmarshal(raw, &f); err != nil {
					errs <- err
					return
				}
				var reply string
				switch {
				case f.Type == "task":
					seq, err := strconv.Atoi(string(f.Data))
					if err != nil {
						errs <- fmt.Errorf("data %s", f.Data)
						return
					}
					latencies[i] = append(latencies[i], now.Sub(time.Unix(0, sent[seq].Load())))
					reply = `{"type":"assign","id":"` + f.ID + `"}`
				case f.Type == "assign" && f.Code == "OK":
					reply = `{"type":"done","id":"` + f.ID + `"}`
				case f.Type == "done" && f.Code == "OK":
					<-slots
					if finished.Add(1) == int64(n) {
						close(all)
					}
					continue
				default:
					errs <- fmt.Errorf("worker %d: %s", i, raw)
					return
				}
				if err := c.WriteMessage(websocket.TextMessage, []byte(reply)); err != nil {
					errs <- err
					return
				}
			}
		})
	}

	tr := &http.Transport{MaxIdleConnsPerHost: posters}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for range posters {
		wg.Go(func() {
			for {
				seq := int(next.Add(1) - 1)
				if seq >= n {
					return
				}
				slots <- struct{}{}
				sent[seq].Store(time.Now().UnixNano())
				req, _ := http.NewRequest(http.MethodPost, listenURL+"/queue/bench?complete=1", strings.NewReader(strconv.Itoa(seq)))
				req.Header.Set("Authorization", "Basic "+testToken)
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("POST: %d", resp.StatusCode)
					return
				}
			}
		})
	}
	select {
	case <-all:
	case err := <-errs:
		b.Error(err)
	case <-time.After(5 * time.Minute):
		b.Errorf("%d of %d tasks done", finished.Load(), n)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	for _, c := range conns {
		c.Close()
	}
	// Posters blocked on a slot (after a failure) are let go.
	go func() {
		for range slots {
		}
	}()
	wg.Wait()
	close(slots)
	if b.Failed() {
		return
	}
	var lat []time.Duration
	for _, l := range latencies {
		lat = append(lat, l...)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "tasks/s")
	b.ReportMetric(pct(0.50), "p50-post-to-offer-us")
	b.ReportMetric(pct(0.99), "p99-post-to-offer-us")
}
