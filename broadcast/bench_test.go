package broadcast

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"eventsrv/history"
)

// discardConn is a net.Conn that accepts and drops every write, counting
// the bytes into sink when it has one. Reads report end of stream.
type discardConn struct {
	sink *byteSink
}

var _ net.Conn = discardConn{}

func (c discardConn) Write(p []byte) (int, error) {
	if c.sink != nil {
		c.sink.add(len(p))
	}
	return len(p), nil
}
func (discardConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (discardConn) Close() error                     { return nil }
func (discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// byteSink counts bytes written by many connections and closes done when
// the count reaches target.
type byteSink struct {
	total  atomic.Int64
	target int64
	done   chan struct{}
}

func (s *byteSink) add(n int) {
	if s.total.Add(int64(n)) == s.target {
		close(s.done)
	}
}

// benchEpoch gives benchmark IDs a realistic length.
const benchEpoch = 1795425601234

var benchData = []byte(`{"id":"3f8a1c2e-9b4d-4e7a-8c61-2d5f0a9b7e13","total":129.95,"currency":"EUR","items":12,"paid":true}`)

func BenchmarkEventFrame(b *testing.B) {
	require.Len(b, benchData, 100)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchData)))
	for b.Loop() {
		_ = eventFrame(history.ID{Epoch: benchEpoch, Seq: 123456}, "order.created", benchData)
	}
}

// BenchmarkPublishFanout publishes to 1000 subscribers of one event, whose
// connections discard what they are sent, and waits until every frame has
// been written, so ns/op is the whole cost of one publish (enqueue and
// delivery), ns/delivery that cost per subscriber, and enqueue-ns/op the
// time Publish itself takes. A discardConn cannot be written without
// blocking, so these subscribers are served as TLS ones are: each by a
// writer goroutine of its own.
func BenchmarkPublishFanout(b *testing.B) {
	benchmarkFanout(b, nil, exactName, func(b *testing.B, sink *byteSink) (net.Conn, *lockedConn) {
		return discardConn{sink: sink}, nil
	})
}

// BenchmarkPublishFanoutPatterns is BenchmarkPublishFanout with every
// subscriber on the pattern order.* and on a pattern of its own that the
// event does not match (x<i>.*): 1,001 distinct patterns, against
// BenchmarkPublishFanout's exact names.
//
// Over loopback TCP, as BenchmarkPublishFanoutTCP (whose history=off run is
// the figure to compare with): the discarding connections of
// BenchmarkPublishFanout start a writer goroutine per wake-up, which makes
// their figures vary with the scheduler more than with the hub.
func BenchmarkPublishFanoutPatterns(b *testing.B) {
	benchmarkFanoutTCP(b, nil, func(i int) []string { return []string{"order.*", "x" + strconv.Itoa(i) + ".*"} })
}

// exactName subscribes every benchmark subscriber to the event's name.
func exactName(int) []string { return []string{"order.created"} }

// BenchmarkPublishFanoutTCP is BenchmarkPublishFanout over real loopback
// TCP connections, whose far ends are drained by goroutines: the path of
// plain-TCP subscribers, served by the hub's flushers with non-blocking
// writes.
// It runs with and without a history (the default one of cmd/eventsrv), to
// show what keeping events for resume costs.
func BenchmarkPublishFanoutTCP(b *testing.B) {
	b.Run("history=off", func(b *testing.B) { benchmarkFanoutTCP(b, nil, exactName) })
	b.Run("history=on", func(b *testing.B) {
		benchmarkFanoutTCP(b, history.NewMemory(history.Limits{Size: 1000, TTL: 5 * time.Minute, MaxBytes: 64 << 20}), exactName)
	})
}

func benchmarkFanoutTCP(b *testing.B, hist History, subscriptions func(i int) []string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	defer ln.Close()
	var drainers sync.WaitGroup
	defer drainers.Wait() // after the hub's Close has closed every connection
	benchmarkFanout(b, hist, subscriptions, func(b *testing.B, sink *byteSink) (net.Conn, *lockedConn) {
		far, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(b, err)
		near, err := ln.Accept()
		require.NoError(b, err)
		drainers.Add(1)
		go func() {
			defer drainers.Done()
			defer far.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := far.Read(buf)
				sink.add(n)
				if err != nil {
					return
				}
			}
		}()
		rc, err := near.(syscall.Conn).SyscallConn()
		require.NoError(b, err)
		lc := &lockedConn{Conn: near, rc: rc}
		return lc, lc
	})
}

// benchmarkFanout runs the fan-out benchmark over connections from attach,
// which returns a subscriber's connection and, when it can be written
// without blocking, the same connection as raw.
func benchmarkFanout(b *testing.B, hist History, subscriptions func(i int) []string, attach func(*testing.B, *byteSink) (nc net.Conn, raw *lockedConn)) {
	const (
		clients = 1000
		event   = "order.created"
	)
	// Frames grow with their IDs' digits: count each one's bytes.
	baseLen := len(eventFrame(history.ID{Epoch: benchEpoch}, event, benchData)) - 1
	reply := initOK // each subscriber is sent its init reply first
	perClient := int64(len(reply))
	for seq := 1; seq <= b.N; seq++ {
		perClient += int64(baseLen + len(strconv.Itoa(seq)))
	}
	sink := &byteSink{target: clients * perClient, done: make(chan struct{})}
	h := NewHub(nil, Options{
		QueueMaxBytes:    1 << 40, // never a slow consumer: every frame is counted
		WriteTimeout:     time.Minute,
		PingInterval:     time.Hour, // no pings among the counted bytes
		InitTimeout:      time.Minute,
		MaxMessageBytes:  1 << 10,
		MaxSubscriptions: 10,
		Log:              slog.New(slog.DiscardHandler),
		History:          hist,
		Epoch:            benchEpoch,
	})
	var standIns sync.WaitGroup
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(b, h.Close(ctx))
		standIns.Wait()
		require.Zero(b, h.Subscribers())
	}()
	for i := range clients {
		nc, raw := attach(b, sink)
		c := newClient(h, nil, nc, nil, "bench")
		c.raw = raw
		require.True(b, h.register(c))
		subs := subscriptions(i)
		for _, name := range subs {
			c.subs[name] = struct{}{}
		}
		h.subscribe(c, subs, nil, func(*resumed) [][]byte { return [][]byte{reply} })
		// Stand in for the reader (client.run): once the writer has
		// finished, leave the hub as run would.
		standIns.Add(1)
		go func() {
			defer standIns.Done()
			<-c.writerDone
			h.unsubscribe(c, c.subs)
			h.deregister(c)
			_ = c.nc.Close()
			h.readers.Done()
		}()
	}

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := h.Publish(event, benchData); err != nil {
			b.Fatal(err)
		}
	}
	enqueued := time.Since(start)
	select {
	case <-sink.done:
	case <-time.After(time.Minute):
		b.Fatalf("delivered %d of %d bytes", sink.total.Load(), sink.target)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*clients), "ns/delivery")
	b.ReportMetric(float64(enqueued.Nanoseconds())/float64(b.N), "enqueue-ns/op")
	for _, c := range h.snapshot() {
		c.mu.Lock()
		closing := c.closing
		c.mu.Unlock()
		require.False(b, closing, "no subscriber may have been cut off")
	}
}

func BenchmarkWriteFrames(b *testing.B) {
	const n, size = 64, 150
	c := newClient(&Hub{opts: Options{WriteTimeout: time.Minute}}, nil, discardConn{}, nil, "bench")
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = textFrame([]byte(strings.Repeat("x", size-4))) // 4-byte header: 126..65535
		require.Len(b, frames[i], size)
	}
	buf := make([]byte, 0, writeChunk) // as the pool's buffers
	bp := &buf
	b.ReportAllocs()
	b.SetBytes(n * size)
	for b.Loop() {
		if err := c.writeFrames(frames, bp); err != nil {
			b.Fatal(err)
		}
	}
}
