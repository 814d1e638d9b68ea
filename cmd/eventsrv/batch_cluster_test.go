package main

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/cluster"
	"eventsrv/history"
	"eventsrv/internal/natstest"
	"eventsrv/listen"
)

// The bus takes a batch's events all at once, and stores a batch as one.
var (
	_ listen.AsyncPublisher  = (*cluster.Bus)(nil)
	_ listen.AtomicPublisher = (*cluster.Bus)(nil)
)

// requireConsecutive requires IDs of one epoch with consecutive sequences.
func requireConsecutive(t *testing.T, ids []string) {
	t.Helper()
	first, err := history.ParseID(ids[0])
	require.NoError(t, err)
	for i, id := range ids {
		require.Equal(t, history.ID{Epoch: first.Epoch, Seq: first.Seq + uint64(i)}.String(), id,
			"event %d of a batch stored as one: %v", i, ids)
	}
}

// waitReady waits until the instance's /readyz is 200.
func (s *server) waitReady() {
	s.t.Helper()
	require.Eventually(s.t, func() bool {
		status, _ := s.get(s.listenURL + "/readyz")
		return status == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "not ready\n%s", s.logs)
}

// readDeliveries reads n events from c.
func readDeliveries(t *testing.T, c *websocket.Conn, n int) []delivery {
	t.Helper()
	out := make([]delivery, n)
	for i := range out {
		out[i] = readDelivery(t, c)
	}
	return out
}

// TestBatchCluster: in cluster mode (2 instances, a 3-node NATS, R3), a
// batch is stored in its order with the IDs every instance delivers;
// concurrent batches do not interleave (each is one JetStream atomic
// batch, with consecutive IDs); a batch retried
// on another instance with its Idempotency-Key answers the same IDs and
// is delivered once; with the stream's quorum lost a batch is answered
// 503 UNAVAILABLE with the stored prefix, and its retry once NATS is back
// completes it, every event delivered once.
func TestBatchCluster(t *testing.T) {
	nats := natstest.StartCluster(t, 3)
	env := map[string]string{"NATS_URL": nats.URLs(), "NATS_REPLICAS": "3", "NATS_PUBLISH_TIMEOUT": "5s", "LOG_LEVEL": "info"}
	a, b := startServer(t, env), startServer(t, env)
	a.waitReady()
	b.waitReady()
	sub := b.subscribe("a", "b")
	good := "Basic " + testToken

	// One batch to a, delivered on b in order, with the answer's IDs.
	status, raw, _ := postEvents(t, a.http, a.listenURL, good, "", numbered("a", 0, 300))
	require.Equal(t, http.StatusOK, status, "%s\n%s", raw, a.logs)
	first := decodeBatch(t, raw)
	require.Len(t, first.IDs, 300)
	requireConsecutive(t, first.IDs)
	requireDeliveries(t, sub, first.IDs, 0)

	// Concurrent batches to both instances: each batch's events keep
	// their order in the one order every subscriber sees.
	const publishers, batches, size = 4, 3, 100
	answers := make([][]string, publishers*batches)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			to := []*server{a, b}[p%2]
			for i := range batches {
				n := p*batches + i
				status, raw, _ := postEvents(t, to.http, to.listenURL, good, "", numbered("b", n*size, size))
				if !assert.Equal(t, http.StatusOK, status, raw) {
					return
				}
				answers[n] = decodeBatch(t, raw).IDs
			}
		})
	}
	wg.Wait()
	require.False(t, t.Failed())
	got := readDeliveries(t, sub, publishers*batches*size)
	position := make(map[string]int, len(got))
	for i, d := range got {
		position[d.ID] = i
	}
	for n, ids := range answers {
		require.Len(t, ids, size)
		requireConsecutive(t, ids)
		for i, id := range ids {
			at, ok := position[id]
			require.True(t, ok, "batch %d's event %d (%s) was not delivered", n, i, id)
			require.Equal(t, fmt.Sprint(n*size+i), string(got[at].Data), "batch %d's event %d", n, i)
		}
	}

	// A retry on the other instance with the same key: the same IDs, and
	// nothing delivered twice.
	status, raw, _ = postEvents(t, a.http, a.listenURL, good, "retry-1", numbered("a", 0, 50))
	require.Equal(t, http.StatusOK, status, raw)
	keyed := decodeBatch(t, raw)
	status, raw, _ = postEvents(t, b.http, b.listenURL, good, "retry-1", numbered("a", 0, 50))
	require.Equal(t, http.StatusOK, status, raw)
	retried := decodeBatch(t, raw)
	assert.Equal(t, keyed.IDs, retried.IDs)
	assert.Equal(t, 50, retried.Duplicates)
	marker := a.publish("a", `"marker"`)
	requireDeliveries(t, sub, keyed.IDs, 0)
	require.Equal(t, marker, readDelivery(t, sub).ID, "the retried batch was delivered again")

	// Quorum lost: 503 UNAVAILABLE, Retry-After, and what was stored.
	leader := nats.WaitStreamLeader(t, "EVENTSRV")
	down := []int{(leader + 1) % 3, (leader + 2) % 3}
	for _, i := range down {
		nats.Node(i).Shutdown()
	}
	status, raw, retryAfter := postEvents(t, a.http, a.listenURL, good, "retry-2", numbered("a", 1000, 20))
	require.Equal(t, http.StatusServiceUnavailable, status, raw)
	assert.Equal(t, "1", retryAfter)
	partial := decodeBatch(t, raw)
	assert.Equal(t, "UNAVAILABLE", partial.Code)
	assert.Contains(t, partial.Message, "events stored (their IDs are in ids)")
	assert.Contains(t, partial.Message, "a retry with the same Idempotency-Key publishes only what is missing")
	require.NotNil(t, partial.IDs, "a 503 lists the stored prefix, perhaps empty: %s", raw)
	require.Less(t, len(partial.IDs), 20)

	nats.Restart(t, down...)
	a.waitReady()
	var done batchAnswer
	require.Eventually(t, func() bool {
		status, raw, _ := postEvents(t, a.http, a.listenURL, good, "retry-2", numbered("a", 1000, 20))
		if status != http.StatusOK {
			return false
		}
		done = decodeBatch(t, raw)
		return true
	}, 30*time.Second, 100*time.Millisecond, "the retried batch never completed")
	require.Len(t, done.IDs, 20)
	assert.Equal(t, partial.IDs, done.IDs[:len(partial.IDs)], "the stored prefix keeps its IDs")
	// A leader without quorum may keep what it was sent and store it once
	// quorum is back, so the retry may store the rest after some of it:
	// each event is delivered once, with its answer's ID.
	marker = a.publish("a", `"marker 2"`)
	rest := readDeliveries(t, sub, 20)
	require.Equal(t, marker, readDelivery(t, sub).ID, "an event of the batch was delivered twice")
	ids := make([]string, len(rest))
	datas := make([]string, len(rest))
	for i, d := range rest {
		ids[i], datas[i] = d.ID, string(d.Data)
		j := slices.Index(done.IDs, d.ID)
		require.GreaterOrEqual(t, j, 0, "delivered %s, which the answer does not list", d.ID)
		assert.Equal(t, fmt.Sprint(1000+j), datas[i])
	}
	slices.Sort(datas)
	assert.Len(t, slices.Compact(datas), 20, "each event once")
}
