package natstest_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"eventsrv/internal/natstest"
)

// Every test's servers and clients are gone when the package's tests end,
// but for the goroutines that IgnoreGoroutines names.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.IgnoreGoroutines()...)
}

const stream = "EVENTS"

// connect returns a JetStream client of urls that reconnects forever and
// quickly, closed when the test ends.
func connect(t *testing.T, urls string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(urls,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(20*time.Millisecond),
		nats.ReconnectJitter(0, 0),
		// Without this, a publish made while disconnected is buffered and
		// sent after the reconnect, even if its caller gave up on the ack.
		nats.ReconnectBufSize(-1),
	)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func createStream(t *testing.T, js jetstream.JetStream, replicas int) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     stream,
		Subjects: []string{"ev.>"},
		Replicas: replicas,
		Storage:  jetstream.FileStorage,
	})
	require.NoError(t, err)
	return s
}

// publish publishes once, waiting at most d for the ack.
func publish(t *testing.T, js jetstream.JetStream, id string, d time.Duration) (*jetstream.PubAck, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	return js.Publish(ctx, "ev.x", []byte(id), jetstream.WithMsgID(id))
}

// publishEventually publishes until an attempt is acked, each attempt with
// its own short timeout, and returns the ack and how long it took. The
// message ID makes a retry of an attempt that was stored but not acked in
// time a duplicate that the stream drops.
func publishEventually(t *testing.T, js jetstream.JetStream, id string) (*jetstream.PubAck, time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		ack, err := publish(t, js, id, 500*time.Millisecond)
		if err == nil {
			return ack, time.Since(start)
		}
		require.True(t, time.Now().Before(deadline), "publish %s not acked in 30s: %v", id, err)
		time.Sleep(10 * time.Millisecond)
	}
}

// requireMessages checks that the stream holds exactly the messages ids, in
// that order, and that every node of the cluster has them.
func requireMessages(t *testing.T, s jetstream.Stream, ids ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(len(ids)), info.State.Msgs)
	for i, id := range ids {
		m, err := s.GetMsg(ctx, uint64(i+1))
		require.NoError(t, err)
		require.Equal(t, id, string(m.Data), "message %d", i+1)
	}
}

// Not parallel, so that no other test's goroutines run meanwhile: the
// parallel tests wait until the sequential ones have finished.
func TestShutdownLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Run("cluster", func(t *testing.T) {
		c := natstest.StartCluster(t, 3, natstest.WithPingInterval(time.Second))
		js := connect(t, c.URLs())
		createStream(t, js, 3)
		publishEventually(t, js, "m1")
		c.Node(0).Shutdown() // the rest by Cleanup, with the client
		// Restarts are left to the other tests, whose goroutines TestMain
		// checks: a restart costs a few raft heartbeats (about 3 s).
	})
	t.Run("server", func(t *testing.T) {
		srv := natstest.StartServer(t)
		js := connect(t, srv.URL())
		createStream(t, js, 1)
		srv.Shutdown()
		srv.Restart(t)
	})
	goleak.VerifyNone(t, append(natstest.IgnoreGoroutines(), before)...)
}

func TestClusterR3PublishIsAcked(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := natstest.StartCluster(t, 3)
	t.Logf("3-node cluster ready in %v", time.Since(start))
	require.Equal(t, 3, c.Len())
	require.GreaterOrEqual(t, c.MetaLeader(), 0)
	for i := range c.Len() {
		require.True(t, c.Node(i).Running())
		require.Contains(t, c.URLs(), c.Node(i).URL())
	}

	js := connect(t, c.URLs())
	s := createStream(t, js, 3)
	ack, took := publishEventually(t, js, "m1")
	t.Logf("first publish acked %v after the stream was created", took)
	require.Equal(t, stream, ack.Stream)
	require.Equal(t, uint64(1), ack.Sequence)

	leader := c.WaitStreamLeader(t, stream)
	require.Equal(t, leader, c.StreamLeader(stream))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Len(t, info.Cluster.Replicas, 2)
	require.Equal(t, c.Node(leader).Name(), info.Cluster.Leader)

	_, err = s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "C", Replicas: 3})
	require.NoError(t, err)
	cl := c.WaitConsumerLeader(t, stream, "C")
	require.Equal(t, cl, c.ConsumerLeader(stream, "C"))
	require.Equal(t, -1, c.StreamLeader("NOSUCH"))
}

func TestClusterStreamLeaderFailover(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := natstest.StartCluster(t, 3)
	t.Logf("cluster ready in %v", time.Since(start))
	js := connect(t, c.URLs())
	s := createStream(t, js, 3)
	publishEventually(t, js, "m1")
	t.Logf("stream created and first publish acked after %v", time.Since(start))

	old := c.WaitStreamLeader(t, stream)
	start = time.Now()
	c.Node(old).Shutdown()
	stopped := time.Since(start)
	require.False(t, c.Node(old).Running())
	now := c.WaitStreamLeader(t, stream)
	elected := time.Since(start)
	require.NotEqual(t, old, now)
	ack, took := publishEventually(t, js, "m2")
	t.Logf("stream leader shut down in %v, new leader after %v, publish acked after %v more",
		stopped, elected, took)
	require.Equal(t, uint64(2), ack.Sequence)
	requireMessages(t, s, "m1", "m2")

	// The old leader comes back on its ports and catches up.
	start = time.Now()
	c.Node(old).Restart(t)
	t.Logf("old leader restarted and cluster ready in %v", time.Since(start))
	require.True(t, c.Node(old).Running())
	_, err := publish(t, js, "m3", 5*time.Second)
	require.NoError(t, err)
	requireMessages(t, s, "m1", "m2", "m3")
}

// Stopping the two followers of a node that leads both the stream and the
// meta group: the leader stays, but cannot commit. Once they are back its
// heartbeats bring them in, with no election.
func TestClusterQuorumLostAndRegained(t *testing.T) {
	t.Parallel()
	c := natstest.StartCluster(t, 3)
	js := connect(t, c.URLs())
	s := createStream(t, js, 3)
	publishEventually(t, js, "m1")

	leader := c.MetaLeader()
	require.GreaterOrEqual(t, leader, 0)
	c.MoveStreamLeader(t, stream, leader)
	require.Equal(t, leader, c.StreamLeader(stream))
	down := []int{(leader + 1) % 3, (leader + 2) % 3}
	testQuorumLost(t, c, js, s, down)
}

// Stopping the stream leader and a follower leaves the third node a
// candidate that cannot win (the same goes for the meta group if its leader
// is stopped); once the others are back, a leader is elected only when an
// election timer fires (4 s to 9 s after the candidate's last campaign), so
// this takes 4 s to 10 s. Run it with NATSTEST_SLOW=1.
func TestClusterQuorumLostWithLeader(t *testing.T) {
	if os.Getenv("NATSTEST_SLOW") == "" {
		t.Skip("takes an election timeout (4-9 s); set NATSTEST_SLOW=1 to run it")
	}
	t.Parallel()
	c := natstest.StartCluster(t, 3)
	js := connect(t, c.URLs())
	s := createStream(t, js, 3)
	publishEventually(t, js, "m1")

	leader := c.WaitStreamLeader(t, stream)
	down := []int{leader, (leader + 1) % 3}
	testQuorumLost(t, c, js, s, down)
}

func testQuorumLost(t *testing.T, c *natstest.Cluster, js jetstream.JetStream, s jetstream.Stream, down []int) {
	t.Helper()
	for _, i := range down {
		c.Node(i).Shutdown()
	}
	_, err := publish(t, js, "lost", 1*time.Second)
	require.Error(t, err, "a publish without quorum must not be acked")

	start := time.Now()
	c.Restart(t, down...)
	t.Logf("2 nodes restarted and cluster ready in %v", time.Since(start))
	ack, took := publishEventually(t, js, "m2")
	t.Logf("then publish acked in %v", took)
	// The publish that was not acked reached a leader that may have logged
	// it, and then committed it when quorum came back: a timeout does not
	// mean the message was not stored. Either way the earlier message is
	// still there, first.
	if ack.Sequence == 3 {
		t.Logf("the unacked publish was stored after all")
		requireMessages(t, s, "m1", "lost", "m2")
	} else {
		requireMessages(t, s, "m1", "m2")
	}
}

func TestServerRestartKeepsStream(t *testing.T) {
	t.Parallel()
	srv := natstest.StartServer(t)
	url := srv.URL()
	js := connect(t, url)
	s := createStream(t, js, 1)
	for i := range 3 {
		_, err := publish(t, js, fmt.Sprint("m", i+1), 5*time.Second)
		require.NoError(t, err)
	}

	srv.Shutdown()
	require.False(t, srv.Running())
	_, err := publish(t, js, "down", 200*time.Millisecond)
	require.Error(t, err)
	srv.Restart(t)
	require.True(t, srv.Running())
	require.Equal(t, url, srv.URL())

	ack, _ := publishEventually(t, js, "m4")
	require.Equal(t, uint64(4), ack.Sequence)
	requireMessages(t, s, "m1", "m2", "m3", "m4")
	srv.Shutdown() // twice is harmless: Cleanup shuts it down again
}
