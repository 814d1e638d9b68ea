package cluster_test

// The scenarios of issue #13's "Tests (real servers; nothing to install)":
// eventsrv instances as processes against a 3-node JetStream cluster in the
// test process (one JetStream server of its own for NATS_EMBED).

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/history"
	"eventsrv/internal/natstest"
)

// stream is the tests' NATS_STREAM.
const stream = "E2E"

// names are the event names published: dots, spaces, '*', '>' and
// non-ASCII, which all become one subject token each.
var names = []string{"order.created", "a b", "*", ">", "é.ü"}

// subsets are different subscriptions, overlapping. A name ending in "*"
// is a pattern (README, "Patterns"): "order.*" gets order.created, which
// the same subscriber also names (delivered once); "*" gets everything.
var subsets = [][]string{{"order.created"}, {"a b", ">"}, {"order.*", "é.ü", "order.created"}, {"*"}}

// clusterSetup starts a 3-node JetStream cluster and n instances on it with
// an R3 stream.
func clusterSetup(t *testing.T, n int, extra map[string]string) (*natstest.Cluster, *fleet) {
	t.Helper()
	eventsrvBinary(t)
	start := time.Now()
	c := natstest.StartCluster(t, 3)
	env := map[string]string{"NATS_URL": c.URLs(), "NATS_REPLICAS": "3", "NATS_STREAM": stream,
		// The stream keeps HISTORY_SIZE events per name. Publishers post
		// flat out, some 1,000 a second without -race, and a feed may stall
		// for 11 s (see TestE2ENATSNodeDies): with the default 1,000 the
		// stream would drop events before a stalled feed reads them, which
		// TestE2EFeedBehindLimits covers on its own.
		"HISTORY_SIZE": "100000"}
	maps.Copy(env, extra)
	f := startFleet(t, n, env)
	t.Logf("3 NATS nodes and %d instances ready in %v (instances: %s; eventsrv built in %v, race %v)",
		n, time.Since(start).Round(time.Millisecond), f.startup(), buildTime.Round(time.Millisecond), raceEnabled)
	return c, f
}

// waitAcked waits until the ledger holds at least n acknowledged events.
func waitAcked(t *testing.T, l *ledger, n int, timeout time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return l.acked() >= n }, timeout, 5*time.Millisecond,
		"%d events acknowledged, want %d", l.acked(), n)
}

// lastN is the number of the last event the ledger handed out.
func (l *ledger) lastN() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// waitPast waits until every subscriber has received an event numbered
// above n (published after n was handed out), and returns when.
func waitPast(t *testing.T, subs []*subscriber, n int, timeout time.Duration) time.Time {
	t.Helper()
	for _, s := range subs {
		s.waitFor(t, timeout, fmt.Sprintf("event after n=%d", n), func() bool {
			return len(s.got) > 0 && s.got[len(s.got)-1].n > n
		})
	}
	return time.Now()
}

// One order everywhere: posts go round-robin to three instances;
// subscribers on all of them, with different subscriptions, get exactly the
// acknowledged events of their names with the IDs the POSTs got, each in
// ascending stream sequence, so each is a subsequence of the one order.
func TestE2EOneOrderEverywhere(t *testing.T) {
	_, f := clusterSetup(t, 3, nil)
	client := newHTTPClient(t)
	l := newLedger()
	var subs []*subscriber
	for i := range 3 {
		for j := range 2 {
			set := subsets[(2*i+j)%len(subsets)]
			subs = append(subs, subscribe(t, f, f.get(i), fmt.Sprintf("i%d/%q", i, set), set...))
		}
	}
	// A freshly made R3 stream may still change leaders just after every
	// instance is ready (CI saw 3 POSTs answered 503 UNAVAILABLE 0.6 s
	// after start, "no response from stream"): publishers retry those
	// with the same Idempotency-Key, as clients are told to, and any
	// other answer fails the test (halt).
	p := startPublishers(t, f, l, client, publishOpts{n: 3, names: names, retry: true})
	waitAcked(t, l, 300, 60*time.Second)
	p.halt(t)
	fence(t, f, l, client, subs)
	t.Logf("%d POSTs answered 503 UNAVAILABLE and retried", p.failures.Load())
	checkDeliveries(t, l, subs, checkOptions{allRecovered: true})
	epochs := map[uint64]bool{}
	total := 0
	for _, s := range subs {
		got, inits, drops, _ := s.snapshot()
		assert.Len(t, inits, 1, "subscriber %s reconnected: %v", s.label, drops)
		for _, d := range got {
			epochs[d.hid.Epoch] = true
		}
		total += len(got)
	}
	assert.Len(t, epochs, 1, "one stream, one epoch")
	t.Logf("%d events acknowledged, %d deliveries to %d subscribers on 3 instances", l.acked(), total, len(subs))
}

// An instance dies: SIGKILL while publishers post flat out. Each of its
// subscribers reconnects to another instance with its last ID, gets
// recovered:true, and then has exactly the acknowledged events of its
// names, none missing, none twice, in order; an event whose POST got no
// answer may arrive, at most once.
func TestE2EInstanceDies(t *testing.T) {
	_, f := clusterSetup(t, 3, nil)
	client := newHTTPClient(t)
	l := newLedger()
	victim := f.get(0)
	var subs, orphans []*subscriber
	for j, set := range subsets[:3] {
		s := subscribe(t, f, victim, fmt.Sprintf("i0/%d/%q", j, set), set...)
		subs, orphans = append(subs, s), append(orphans, s)
	}
	subs = append(subs, subscribe(t, f, f.get(1), "i1/all", names...), subscribe(t, f, f.get(2), "i2/all", names...))

	p := startPublishers(t, f, l, client, publishOpts{n: 2, names: names})
	waitAcked(t, l, 150, 60*time.Second)
	killedAt := time.Now()
	victim.kill()
	n := l.lastN()
	for _, s := range orphans {
		s.waitFor(t, 30*time.Second, "resume on another instance", func() bool { return len(s.inits) >= 2 })
	}
	waitPast(t, subs, n, 30*time.Second)
	waitAcked(t, l, l.acked()+100, 60*time.Second)
	p.halt(t)
	fence(t, f, l, client, subs)

	checkDeliveries(t, l, subs, checkOptions{unackedOnce: true, allRecovered: true})
	for _, s := range orphans {
		_, inits, drops, _ := s.snapshot()
		for _, in := range inits[1:] {
			assert.NotEqual(t, victim.name, in.where, "subscriber %s resumed on the dead instance", s.label)
		}
		t.Logf("subscriber %s: resumed on %s %v after the kill (since %s, position %s, replayed %d, recovered %v); drops %v",
			s.label, inits[1].where, inits[1].at.Sub(killedAt).Round(time.Millisecond),
			inits[1].since, inits[1].position, inits[1].replayed, inits[1].recovered, drops)
	}
	unacked := 0
	for _, r := range l.all() {
		if !r.acked {
			unacked++
		}
	}
	t.Logf("%d events acknowledged, %d POSTs without an OK (not retried)", l.acked(), unacked)
}

// liveNodes maps each running node to the connections, named by their
// client ports, that hold a subscription to the stream's live messages:
// each instance's feed, which comes from the node it is connected to.
func liveNodes(t *testing.T, c *natstest.Cluster) map[int][]string {
	t.Helper()
	out := map[int][]string{}
	for i := range c.Len() {
		if !c.Node(i).Running() {
			continue
		}
		connz, err := c.Node(i).Inner().Connz(&server.ConnzOptions{Subscriptions: true})
		require.NoError(t, err)
		for _, ci := range connz.Conns {
			for _, sub := range ci.Subs {
				if strings.HasPrefix(sub, stream+"_LIVE.") {
					out[i] = append(out[i], fmt.Sprintf("%s:%d", ci.IP, ci.Port))
					break
				}
			}
		}
	}
	return out
}

// stall is how long deliveries and acknowledgements stopped around a kill.
type stall struct {
	delivery   time.Duration            // the longest gap of any subscriber
	byInstance map[string]time.Duration // the longest gap of its subscribers
	publish    time.Duration            // the longest gap between OKs
}

func measureStall(subs []*subscriber, l *ledger, from, to time.Time) stall {
	st := stall{byInstance: map[string]time.Duration{}}
	for _, s := range subs {
		g := longestGap(s.deliveryTimes(), from, to)
		st.delivery = max(st.delivery, g)
		st.byInstance[s.home] = max(st.byInstance[s.home], g)
	}
	st.publish = longestGap(l.allAckTimes(), from, to)
	return st
}

func (st stall) String() string {
	var by []string
	for _, in := range slices.Sorted(maps.Keys(st.byInstance)) {
		by = append(by, fmt.Sprintf("%s %v", in, st.byInstance[in].Round(time.Millisecond)))
	}
	return fmt.Sprintf("longest delivery gap %v (by instance: %s), longest gap between OKs %v",
		st.delivery.Round(time.Millisecond), strings.Join(by, ", "), st.publish.Round(time.Millisecond))
}

// feedInterruptions counts, for each instance, its log's "feed
// interrupted" warnings.
func feedInterruptions(f *fleet) map[string]int {
	out := map[string]int{}
	for _, in := range f.live() {
		out[in.name] = in.logs.count(`"NATS stream feed interrupted`)
	}
	return out
}

// A NATS node dies: first the stream's leader, then a node an instance is
// connected to (its feed's live messages come through it), while
// publishers post flat out and retry 503s with the same Idempotency-Key.
// Nothing is lost or duplicated, no subscriber is disconnected, and the
// stall is bounded.
//
// What bounds it: a node that shuts down hands the stream's leadership
// over at once (publishes in flight may wait NATS_PUBLISH_TIMEOUT, 1 s
// here, and are retried); an election, when the hand-over fails, takes
// 4 s to 9 s. An instance whose node goes reconnects to another at once
// (nats.go's ReconnectWait, 250 ms, is only between tries of one server);
// the live messages republished meanwhile are a gap, which the feed fills
// from the stream when the next live message comes (feed.go), or after
// watchInterval (1 s) without one. Measured here under -race: 0.03 s to
// 0.3 s for either loss.
func TestE2ENATSNodeDies(t *testing.T) {
	c, f := clusterSetup(t, 3, map[string]string{"NATS_PUBLISH_TIMEOUT": "1s"})
	client := newHTTPClient(t)
	l := newLedger()
	var subs []*subscriber
	for i := range 3 {
		for j := range 2 {
			set := subsets[(2*i+j)%len(subsets)]
			subs = append(subs, subscribe(t, f, f.get(i), fmt.Sprintf("i%d/%q", i, set), set...))
		}
	}
	p := startPublishers(t, f, l, client, publishOpts{n: 2, names: names, retry: true})
	waitAcked(t, l, 100, 60*time.Second)

	leader := c.WaitStreamLeader(t, stream)
	before := feedInterruptions(f)
	killedAt := time.Now()
	c.Node(leader).Shutdown()
	took := time.Since(killedAt)
	n := l.lastN()
	back := waitPast(t, subs, n, 30*time.Second)
	waitAcked(t, l, l.acked()+50, 30*time.Second)
	st1 := measureStall(subs, l, killedAt, time.Now())
	t.Logf("stream leader %s shut down (%v): every subscriber had a newer event %v after; %s; feed interruptions logged %v, before %v",
		c.Node(leader).Name(), took.Round(time.Millisecond), back.Sub(killedAt).Round(time.Millisecond), st1, feedInterruptions(f), before)

	c.Node(leader).Restart(t)
	waitAcked(t, l, l.acked()+50, 30*time.Second)

	// Each instance's feed comes live from the node it is connected to;
	// the node is found from the servers' own account of connections.
	var lnodes map[int][]string
	require.Eventually(t, func() bool { lnodes = liveNodes(t, c); return len(lnodes) > 0 },
		10*time.Second, 10*time.Millisecond, "no node holds a subscription to the live messages")
	sl := c.StreamLeader(stream)
	victim := -1
	for i := range c.Len() {
		if len(lnodes[i]) > 0 && (victim < 0 || i != sl) {
			victim = i
		}
	}
	before = feedInterruptions(f)
	killedAt = time.Now()
	c.Node(victim).Shutdown()
	took = time.Since(killedAt)
	n = l.lastN()
	back = waitPast(t, subs, n, 30*time.Second)
	waitAcked(t, l, l.acked()+50, 30*time.Second)
	st2 := measureStall(subs, l, killedAt, time.Now())
	t.Logf("node %s, serving the feeds of %v of %v (stream leader %s), shut down (%v): every subscriber had a newer event %v after; %s; feed interruptions logged %v, before %v",
		c.Node(victim).Name(), lnodes[victim], lnodes, c.Node(max(sl, 0)).Name(), took.Round(time.Millisecond),
		back.Sub(killedAt).Round(time.Millisecond), st2, feedInterruptions(f), before)

	p.halt(t)
	fence(t, f, l, client, subs)
	checkDeliveries(t, l, subs, checkOptions{allRecovered: true})
	for _, s := range subs {
		_, inits, drops, _ := s.snapshot()
		assert.Len(t, inits, 1, "subscriber %s was disconnected: %v", s.label, drops)
	}
	// The bounds (see the test's comment), with slack for -race on 2
	// cores: a failed hand-over's election and a publish timeout; a
	// reconnect and a watch interval.
	assert.Less(t, st1.delivery, 20*time.Second, "stall after the stream leader's loss")
	assert.Less(t, st2.delivery, 10*time.Second, "stall after the loss of the node the feeds come through")
	t.Logf("%d events acknowledged, %d POSTs retried", l.acked(), p.failures.Load())
}

// Quorum lost: with two of three NATS nodes down, POST is 503 UNAVAILABLE
// with Retry-After on every instance, /readyz is 503 with a reason, and
// subscribers stay connected. With the nodes back, POSTs (retried with
// their keys) are OK again and every subscriber gets every acknowledged
// event, nothing missing or twice, on the connection it had.
func TestE2EQuorumLost(t *testing.T) {
	if testing.Short() {
		t.Skip("about 20 s: raft elections after the nodes return; not with -short")
	}
	c, f := clusterSetup(t, 3, map[string]string{"NATS_PUBLISH_TIMEOUT": "500ms"})
	client := newHTTPClient(t)
	l := newLedger()
	var subs []*subscriber
	for i := range 3 {
		subs = append(subs, subscribe(t, f, f.get(i), fmt.Sprintf("i%d/all", i), names...))
		set := subsets[i]
		subs = append(subs, subscribe(t, f, f.get(i), fmt.Sprintf("i%d/%q", i, set), set...))
	}
	for k := range 30 {
		publishOK(t, f, l, client, names[k%len(names)], 10*time.Second)
	}

	// The stream's two followers go: the leader stays, alone, without a
	// quorum.
	sl := c.WaitStreamLeader(t, stream)
	down := []int{(sl + 1) % 3, (sl + 2) % 3}
	downAt := time.Now()
	for _, i := range down {
		c.Node(i).Shutdown()
	}
	t.Logf("nodes %s and %s shut down in %v", c.Node(down[0]).Name(), c.Node(down[1]).Name(), time.Since(downAt).Round(time.Millisecond))

	// Every POST meanwhile is refused: none is OK without an ack. They are
	// retried below, with their keys, once the nodes are back.
	type pending struct {
		r   *pubRec
		key string
	}
	var refused []pending
	for round := range 3 {
		for i := range 3 {
			in := f.get(i)
			r := l.newEvent(names[(round+i)%len(names)])
			key := fmt.Sprintf("quorum-%d", r.n)
			a := post(client, in, key, r.name, dataOf(r.n))
			require.NoError(t, a.err)
			assert.Equal(t, http.StatusServiceUnavailable, a.status, "%s without quorum: %s", in.name, a)
			assert.Equal(t, "UNAVAILABLE", a.code, "%s: %s", in.name, a)
			assert.NotEmpty(t, a.retryAfter, "%s: 503 without Retry-After", in.name)
			refused = append(refused, pending{r, key})
		}
	}
	// /readyz says what is wrong: the bus reads the stream's state every
	// second with a 2 s timeout, so 10 s is plenty.
	notReady := map[string]string{}
	last := map[string]string{}
	for deadline := time.Now().Add(10 * time.Second); len(notReady) < 3 && time.Now().Before(deadline); {
		for i := range 3 {
			in := f.get(i)
			if _, ok := notReady[in.name]; ok {
				continue
			}
			status, body := in.readyz()
			last[in.name] = fmt.Sprintf("%d %s", status, body)
			var rz struct{ Status, Reason string }
			if status == http.StatusServiceUnavailable && json.Unmarshal([]byte(body), &rz) == nil && rz.Reason != "" {
				notReady[in.name] = fmt.Sprintf("%s (%v after the nodes went down)", body, time.Since(downAt).Round(time.Millisecond))
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 3 {
		in := f.get(i)
		if r, ok := notReady[in.name]; ok {
			t.Logf("%s: /readyz 503 %s", in.name, r)
		} else {
			t.Errorf("%s: /readyz is %s %v after 2 of 3 NATS nodes went down, not 503 with a reason", in.name, last[in.name], time.Since(downAt).Round(time.Millisecond))
		}
	}
	if len(notReady) < 3 {
		t.Logf("the stream as the node left (%s) tells it: %s", c.Node(sl).Name(), streamInfoOf(c.Node(sl).URL()))
	}
	r := l.newEvent("order.created")
	a := post(client, f.get(0), "quorum-last", r.name, dataOf(r.n))
	assert.Equal(t, http.StatusServiceUnavailable, a.status, "still no quorum: %s", a)
	refused = append(refused, pending{r, "quorum-last"})

	upAt := time.Now()
	for _, i := range down {
		c.Node(i).Restart(t)
	}
	t.Logf("nodes back and the cluster ready in %v (quorum lost for %v)", time.Since(upAt).Round(time.Millisecond), time.Since(downAt).Round(time.Millisecond))
	for _, pe := range refused {
		deadline := time.Now().Add(30 * time.Second)
		for {
			in := f.next()
			a := post(client, in, pe.key, pe.r.name, dataOf(pe.r.n))
			if a.err == nil && a.status == http.StatusOK {
				l.ack(-1, pe.r, a.id)
				break
			}
			require.True(t, time.Now().Before(deadline), "retrying event %d after quorum is back: %s from %s", pe.r.n, a, in.name)
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("POST OK again %v after the nodes were restarted", time.Since(upAt).Round(time.Millisecond))
	for k := range 30 {
		publishOK(t, f, l, client, names[k%len(names)], 10*time.Second)
	}
	for i := range 3 {
		f.get(i).waitReady(30 * time.Second)
	}
	fence(t, f, l, client, subs)
	checkDeliveries(t, l, subs, checkOptions{allRecovered: true})
	for _, s := range subs {
		_, inits, drops, _ := s.snapshot()
		assert.Len(t, inits, 1, "subscriber %s was disconnected: %v", s.label, drops)
	}
}

// Idempotency: the same Idempotency-Key to two other instances gets the
// first one's ID with "duplicate":true, also with another body, and the
// event is delivered once, as first published.
//
// Its instances start at the same moment on a fresh cluster, as a deploy
// starts them, and it logs how long that took: JetStream answers only one
// of identical stream creates made at once, so the others wait for
// ensureStream's 5 s timeout and try again.
func TestE2EIdempotency(t *testing.T) {
	eventsrvBinary(t)
	c := natstest.StartCluster(t, 3)
	start := time.Now()
	f := startFleetHow(t, 3, map[string]string{"NATS_URL": c.URLs(), "NATS_REPLICAS": "3", "NATS_STREAM": stream}, true)
	t.Logf("3 instances started together on a new cluster were all ready in %v (%s)",
		time.Since(start).Round(time.Millisecond), f.startup())
	client := newHTTPClient(t)
	l := newLedger()
	var subs []*subscriber
	for i := range 3 {
		subs = append(subs, subscribe(t, f, f.get(i), fmt.Sprintf("i%d", i), "order.created", "a b"))
	}
	first := l.newEvent("order.created")
	a1 := post(client, f.get(0), "key-1", first.name, dataOf(first.n))
	require.NoError(t, a1.err)
	require.Equal(t, http.StatusOK, a1.status, a1.String())
	assert.False(t, a1.duplicate, a1.String())
	l.ack(-1, first, a1.id)

	a2 := post(client, f.get(1), "key-1", first.name, dataOf(first.n))
	require.Equal(t, http.StatusOK, a2.status, a2.String())
	assert.Equal(t, a1.id, a2.id, "a retry on another instance")
	assert.True(t, a2.duplicate, a2.String())

	other := l.newEvent("a b") // never to be stored: its key was used
	a3 := post(client, f.get(2), "key-1", other.name, dataOf(other.n))
	require.Equal(t, http.StatusOK, a3.status, a3.String())
	assert.Equal(t, a1.id, a3.id, "the same key with another body")
	assert.True(t, a3.duplicate, a3.String())

	second := l.newEvent("a b")
	a4 := post(client, f.get(2), "key-2", second.name, dataOf(second.n))
	require.Equal(t, http.StatusOK, a4.status, a4.String())
	assert.NotEqual(t, a1.id, a4.id, "another key")
	assert.False(t, a4.duplicate, a4.String())
	l.ack(-1, second, a4.id)
	publishOK(t, f, l, client, "order.created", 10*time.Second)

	fence(t, f, l, client, subs)
	checkDeliveries(t, l, subs, checkOptions{allRecovered: true})
}

// resumeOnce opens a connection to in, inits with since, and returns the
// reply and the replayed events that follow it.
func resumeOnce(t *testing.T, in *instance, since string, events ...string) (initRec, []delivery) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(in.wsURL, nil)
	require.NoError(t, err)
	resp.Body.Close()
	defer c.Close()
	init, _ := json.Marshal(map[string]any{"authentication": "Basic " + token, "events": events, "since": since})
	require.NoError(t, c.WriteMessage(websocket.TextMessage, init))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	_, msg, err := c.ReadMessage()
	require.NoError(t, err)
	var reply struct {
		Type, Code, ID string
		Recovered      bool
		Replayed       int
	}
	require.NoError(t, json.Unmarshal(msg, &reply), "%s", msg)
	require.Equal(t, "init", reply.Type, "the reply comes first: %s", msg)
	require.Equal(t, "OK", reply.Code, "%s", msg)
	rec := initRec{where: in.name, since: since, position: reply.ID, recovered: reply.Recovered, replayed: reply.Replayed}
	var got []delivery
	for range reply.Replayed {
		_, msg, err := c.ReadMessage()
		require.NoError(t, err)
		var m struct {
			Type, ID, Event string
			Data            struct{ N int }
		}
		require.NoError(t, json.Unmarshal(msg, &m), "%s", msg)
		require.Equal(t, "event", m.Type, "%s", msg)
		hid, err := history.ParseID(m.ID)
		require.NoError(t, err)
		got = append(got, delivery{id: m.ID, hid: hid, name: m.Event, n: m.Data.N, where: in.name})
	}
	return rec, got
}

// Restart with NATS_EMBED: one instance with its own JetStream in a
// directory; after SIGTERM and a start on the same directory the epoch is
// the same, a resume with the last ID is recovered:true, and one from an
// earlier ID gets the events after it with their IDs.
func TestE2EEmbedRestart(t *testing.T) {
	eventsrvBinary(t)
	env := instanceEnv(t, map[string]string{"NATS_EMBED": t.TempDir()})
	in := launch(t, "embed", env)
	in.waitServing(60 * time.Second)
	f := &fleet{all: []*instance{in}}
	client := newHTTPClient(t)
	l := newLedger()
	sub := subscribe(t, f, in, "embed", "order.created", "a b")
	var recs []pubRec
	for k := range 5 {
		recs = append(recs, publishOK(t, f, l, client, []string{"order.created", "a b"}[k%2], 10*time.Second))
	}
	sub.waitFor(t, 10*time.Second, "the 5 events", func() bool { return len(sub.got) == 5 })

	require.NoError(t, in.terminate(20*time.Second), "SIGTERM: exit status")
	assert.Equal(t, 1, in.logs.count(`"msg":"shutdown complete"`), "graceful shutdown")
	in2 := launch(t, "embed-restarted", env)
	in2.waitServing(60 * time.Second)
	f.add(in2)

	// The subscriber was sent 1001 and resumes by itself on the new process.
	sub.waitFor(t, 30*time.Second, "a resume on the restarted instance", func() bool { return len(sub.inits) == 2 })
	_, inits, _, _ := sub.snapshot()
	assert.Equal(t, initRec{where: in2.name, since: recs[4].id, position: recs[4].id, recovered: true, replayed: 0},
		initRec{where: inits[1].where, since: inits[1].since, position: inits[1].position, recovered: inits[1].recovered, replayed: inits[1].replayed})

	reply, replayed := resumeOnce(t, in2, recs[2].id, "order.created", "a b")
	assert.True(t, reply.recovered, "resume from %s after the restart: %+v", recs[2].id, reply)
	assert.Equal(t, recs[4].id, reply.position)
	var ids []string
	for _, d := range replayed {
		ids = append(ids, d.id)
	}
	assert.Equal(t, []string{recs[3].id, recs[4].id}, ids, "the events after the ID, with their IDs")

	next := publishOK(t, f, l, client, "order.created", 10*time.Second)
	old, _ := history.ParseID(recs[4].id)
	nid, _ := history.ParseID(next.id)
	assert.Equal(t, old.Epoch, nid.Epoch, "the same stream, the same epoch")
	assert.Equal(t, old.Seq+1, nid.Seq, "the sequence goes on")
	fence(t, f, l, client, []*subscriber{sub})
	checkDeliveries(t, l, []*subscriber{sub}, checkOptions{allRecovered: true})
}

// Epoch change: the stream is deleted while instances run and publishers
// post; it is created anew, with a new epoch. Every OK after the deletion
// carries the new epoch and the ID its event is delivered with; connected
// subscribers go on with the new stream's events; a resume with an old ID
// is recovered:false and gets the kept events, as after a restart today.
//
// The stream is either deleted, for the instances to create it anew, or
// deleted and at once created again by someone else (an operator, another
// instance), before the instances have noticed.
func TestE2EEpochChange(t *testing.T) {
	if testing.Short() {
		t.Skip("about 15 s: two clusters, and the stream's creation anew; not with -short")
	}
	t.Run("deleted", func(t *testing.T) { epochChange(t, false) })
	t.Run("recreated at once", func(t *testing.T) { epochChange(t, true) })
}

func epochChange(t *testing.T, recreate bool) {
	c, f := clusterSetup(t, 3, nil)
	client := newHTTPClient(t)
	l := newLedger()
	var subs []*subscriber
	for i := range 3 {
		subs = append(subs, subscribe(t, f, f.get(i), fmt.Sprintf("i%d/all", i), names...))
	}
	for k := range 20 {
		publishOK(t, f, l, client, names[k%len(names)], 10*time.Second)
	}
	fence(t, f, l, client, subs)
	oldLast := subs[0].snapshotLast()
	oldID, err := history.ParseID(oldLast)
	require.NoError(t, err)

	nc, err := nats.Connect(c.URLs())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	st, err := js.Stream(withTimeout(t, 10*time.Second), stream)
	require.NoError(t, err)
	firstAfter := l.lastN() + 1
	require.NoError(t, js.DeleteStream(withTimeout(t, 10*time.Second), stream))
	deletedAt := time.Now()
	if recreate {
		_, err := js.CreateStream(withTimeout(t, 10*time.Second), st.CachedInfo().Config)
		require.NoError(t, err)
		t.Logf("stream deleted and created again in %v", time.Since(deletedAt).Round(time.Millisecond))
	}

	newEpochOn := map[string]time.Duration{}
	var mu = &l.mu // the ledger's lock guards newEpochOn too
	p := startPublishers(t, f, l, client, publishOpts{n: 3, names: names, onAnswer: func(in *instance, _ *pubRec, a answer) {
		if a.err != nil || a.status != http.StatusOK {
			return
		}
		id, err := history.ParseID(a.id)
		if err == nil && id.Epoch != oldID.Epoch {
			mu.Lock()
			if _, ok := newEpochOn[in.name]; !ok {
				newEpochOn[in.name] = time.Since(deletedAt)
			}
			mu.Unlock()
		}
	}})
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(newEpochOn) == 3 },
		30*time.Second, 10*time.Millisecond, "every instance answers IDs of a new epoch")
	waitAcked(t, l, l.acked()+60, 30*time.Second)
	p.halt(t)
	end := fence(t, f, l, client, subs)
	t.Logf("stream deleted; first OK with a new epoch, by instance: %v; new IDs like %s", newEpochOn, end.id)

	newID, _ := history.ParseID(end.id)
	assert.Greater(t, newID.Epoch, oldID.Epoch, "the new stream's epoch")
	stale := 0
	for _, r := range l.all() {
		if r.n < firstAfter || !r.acked {
			continue
		}
		if id, _ := history.ParseID(r.id); id.Epoch != newID.Epoch {
			if stale++; stale <= 5 {
				t.Errorf("event n=%d published after the stream was deleted was acknowledged as %s, of epoch %d, not the new stream's %d",
					r.n, r.id, id.Epoch, newID.Epoch)
			}
		}
	}
	if stale > 5 {
		t.Errorf("%d events published after the deletion were acknowledged with another epoch than the new stream's", stale)
	}
	checkDeliveries(t, l, subs, checkOptions{unackedOnce: true, allRecovered: true})

	// A subscriber that resumes with an ID of the old stream: not recovered,
	// and every kept event of the new stream, as a connected subscriber got
	// them.
	reply, replayed := resumeOnce(t, f.get(1), oldLast, append(slices.Clone(names), "end")...)
	assert.False(t, reply.recovered, "a resume from the old epoch's %s: %+v", oldLast, reply)
	pos, _ := history.ParseID(reply.position)
	assert.Equal(t, newID.Epoch, pos.Epoch, "the position is in the new epoch")
	got, _, _, _ := subs[0].snapshot()
	var want, have []string
	for _, d := range got {
		if d.hid.Epoch == newID.Epoch {
			want = append(want, d.id)
		}
	}
	for _, d := range replayed {
		have = append(have, d.id)
	}
	// The newest RESUME_MAX_EVENTS (1000) of them.
	want = want[max(0, len(want)-1000):]
	if !slices.Equal(want, have) {
		t.Errorf("the replay of an old ID is not the new stream's kept events: %d events %s..%s, want %d events %s..%s",
			len(have), first(have), lastOf(have), len(want), first(want), lastOf(want))
	}
	t.Logf("resume with %s: %+v", oldLast, reply)
}

func (s *subscriber) snapshotLast() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func first(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

func lastOf(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return ids[len(ids)-1]
}

// A feed that may fall behind further than the stream keeps: the node that
// the instances' live messages come through goes while publishers post
// flat out, and each feed fills its gap (see TestE2ENATSNodeDies) from a
// stream that keeps only HISTORY_SIZE (5) events of each name.
// Live subscribers must not miss events silently: each gets every
// acknowledged event of its names, or is closed and, resuming, told
// recovered:false, as a single node tells a slow consumer.
func TestE2EFeedBehindLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("about 10 s, a NATS node's loss again; not with -short")
	}
	c, f := clusterSetup(t, 3, map[string]string{"HISTORY_SIZE": "5", "NATS_PUBLISH_TIMEOUT": "1s"})
	client := newHTTPClient(t)
	l := newLedger()
	var subs []*subscriber
	for i := range 3 {
		subs = append(subs, subscribe(t, f, f.get(i), fmt.Sprintf("i%d/order.created", i), "order.created"),
			subscribe(t, f, f.get(i), fmt.Sprintf("i%d/*", i), "*"))
	}
	p := startPublishers(t, f, l, client, publishOpts{n: 2, names: names, retry: true})
	waitAcked(t, l, 50, 30*time.Second)
	var lnodes map[int][]string
	require.Eventually(t, func() bool { lnodes = liveNodes(t, c); return len(lnodes) > 0 },
		10*time.Second, 10*time.Millisecond, "no node holds a subscription to the live messages")
	victim := -1
	for i := range c.Len() {
		if victim < 0 || len(lnodes[i]) > len(lnodes[victim]) {
			victim = i
		}
	}
	killedAt := time.Now()
	c.Node(victim).Shutdown()
	n := l.lastN()
	waitPast(t, subs, n, 30*time.Second)
	waitAcked(t, l, l.acked()+100, 30*time.Second)
	p.halt(t)
	fence(t, f, l, client, subs)
	t.Logf("node %s, serving the feeds of %v of %v, shut down; %s; %d events acknowledged",
		c.Node(victim).Name(), lnodes[victim], lnodes, measureStall(subs, l, killedAt, time.Now()), l.acked())

	for _, s := range subs {
		got, inits, drops, _ := s.snapshot()
		seen := map[int]bool{}
		for _, d := range got {
			seen[d.n] = true
		}
		var missed []history.ID
		for _, r := range l.all() {
			if r.acked && subscribed(s.names, r.name) && !seen[r.n] {
				id, _ := history.ParseID(r.id)
				missed = append(missed, id)
			}
		}
		told := false
		for _, in := range inits[1:] {
			told = told || !in.recovered
		}
		switch {
		case len(missed) == 0:
			t.Logf("subscriber %s: got every event (%d connections)", s.label, len(inits))
		case told:
			t.Logf("subscriber %s: missed %s, and was told: resumed with recovered:false (drops %v)", s.label, seqRanges(missed), drops)
		default:
			t.Errorf("subscriber %s (on %s) missed %d acknowledged events, %s, without being told: %d connection(s), no recovered:false (inits %+v)",
				s.label, s.home, len(missed), seqRanges(missed), len(inits), inits)
		}
	}
}

// streamInfoOf is the tests' stream's info, as the NATS server at url
// answers, for a failure's log.
func streamInfoOf(url string) string {
	nc, err := nats.Connect(url)
	if err != nil {
		return err.Error()
	}
	defer nc.Close()
	msg, err := nc.Request("$JS.API.STREAM.INFO."+stream, nil, 2*time.Second)
	if err != nil {
		return err.Error()
	}
	return string(msg.Data)
}
