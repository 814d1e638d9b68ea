package jsqueue

import (
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"eventsrv/internal/natstest"
	"eventsrv/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.IgnoreGoroutines()...)
}

// instance is one Broker with a NATS connection of its own: an eventsrv
// instance as far as work queues go.
type instance struct {
	*Broker
	nc *nats.Conn
}

// short are the test's options: timeouts short enough to be waited for.
func short() Options {
	return Options{Stream: "T", OfferTimeout: 300 * time.Millisecond, TaskTimeout: 10 * time.Second, Retain: time.Minute}
}

// start returns a started Broker on its own connection to s, ready, with
// presence quicker than by default (so that instances learn of each other
// fast); closed at cleanup.
// debugLog is the Brokers' log with JSQUEUE_LOG=1 (on stderr).
var debugLog = func() *slog.Logger {
	if os.Getenv("JSQUEUE_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}()

func start(t *testing.T, s *natstest.Server, o Options) *instance {
	if debugLog != nil && o.Log == nil {
		o.Log = debugLog
	}
	t.Helper()
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.ReconnectBufSize(-1))
	require.NoError(t, err)
	b := New(o)
	b.tm.presence = 100 * time.Millisecond
	b.tm.peerTTL = 400 * time.Millisecond
	require.NoError(t, b.Start(nc))
	in := &instance{b, nc}
	t.Cleanup(func() {
		b.Close()
		nc.Close()
	})
	require.Eventually(t, func() bool { return b.Ready() == nil }, 10*time.Second, 5*time.Millisecond, "never ready: %v", b.Ready())
	return in
}

// peers waits until every instance knows every other one.
func peers(t *testing.T, ins ...*instance) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, in := range ins {
			if in.livePeers(time.Now()) != len(ins)-1 {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
}

// probe is a worker whose notices land in a channel.
type probe struct {
	*queue.Worker
	name string
	ch   chan queue.Notice
}

func newProbe(t testing.TB, subject string, maxInFlight int) *probe {
	p := &probe{name: subject, ch: make(chan queue.Notice, 4096)}
	p.Worker = queue.NewWorker(subject, maxInFlight, func(n queue.Notice) {
		select {
		case p.ch <- n:
		default:
			t.Errorf("%s: notice channel full", subject)
		}
	})
	return p
}

// next returns the next notice.
func (p *probe) next(t testing.TB) queue.Notice {
	t.Helper()
	select {
	case n := <-p.ch:
		return n
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no notice", p.name)
		return queue.Notice{}
	}
}

// offer returns the next notice, requiring an offer of id (any when
// empty) on attempt (any when 0).
func (p *probe) offer(t testing.TB, id string, attempt int) queue.Notice {
	t.Helper()
	n := p.next(t)
	require.Equal(t, queue.KindTask, n.Kind, "%s: %+v", p.name, n)
	if id != "" {
		require.Equal(t, id, n.ID, "%s", p.name)
	}
	if attempt > 0 {
		require.Equal(t, attempt, n.Attempt, "%s: attempt of %s", p.name, n.ID)
	}
	return n
}

// quiet requires that nothing is delivered within d.
func (p *probe) quiet(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case n := <-p.ch:
		t.Fatalf("%s: unexpected notice %+v", p.name, n)
	case <-time.After(d):
	}
}

func add(t testing.TB, b *instance, name, data string, o queue.AddOptions) string {
	t.Helper()
	id, err := b.Add(name, json.RawMessage(data), o)
	require.NoError(t, err)
	return id
}

func statsOf(t testing.TB, b *instance, name string) queue.QueueStats {
	t.Helper()
	for _, s := range b.Stats() {
		if s.Name == name {
			return s
		}
	}
	return queue.QueueStats{Name: name}
}

// holders takes both (all) instances' locks at once and returns, for each
// task held anywhere, the instances that hold it: never more than one, if
// JetStream's leases hold.
func holders(ins ...*instance) map[string][]int {
	for _, in := range ins {
		in.mu.Lock()
	}
	defer func() {
		for _, in := range ins {
			in.mu.Unlock()
		}
	}()
	out := map[string][]int{}
	for i, in := range ins {
		for id, t := range in.tasks {
			if t.held() {
				out[id] = append(out[id], i)
			}
		}
	}
	return out
}

// watchHolders checks holders every few milliseconds until stop, and
// reports a task held by two instances at once.
func watchHolders(t *testing.T, ins ...*instance) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			for id, at := range holders(ins...) {
				if len(at) > 1 {
					t.Errorf("task %s held by instances %v at once", id, at)
				}
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	})
	return sync.OnceFunc(func() {
		close(done)
		wg.Wait()
	})
}
