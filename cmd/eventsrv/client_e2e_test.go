package main

// The client package (eventsrv/client) against the real server, started
// in-process with run(): these tests live here, in package main, because a
// package main cannot be imported by the client's own tests, and running
// the server in the test process (rather than as a built binary) gives
// them its log, free ports without races, restarts on the same ports, and
// one goleak check over the client's and the server's goroutines alike.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"eventsrv/client"
)

// clNoLeaks fails t if goroutines started during it outlive it and its
// cleanups (it is registered first, so it runs after the server's).
func clNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// clClient is a client of s with the test token, closed at cleanup.
func clClient(t *testing.T, s *server, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(s.listenURL, append([]client.Option{client.WithToken(testToken), client.WithBroadcastURL(s.wsURL)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// clItem is one thing a Subscription yielded.
type clItem struct {
	ev  client.Event
	err error
}

// clSubscribe subscribes and forwards what the subscription yields to a
// channel, which is closed when the iteration ends; the subscription is
// closed at cleanup.
func clSubscribe(t *testing.T, c *client.Client, events []string, opts ...client.SubscribeOption) (*client.Subscription, <-chan clItem) {
	t.Helper()
	sub, err := c.Subscribe(t.Context(), events, opts...)
	require.NoError(t, err)
	items := make(chan clItem, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(items)
		for ev, err := range sub.Events() {
			items <- clItem{ev, err}
		}
	}()
	t.Cleanup(func() {
		sub.Close()
		for range items { // let the forwarder end
		}
		<-done
	})
	return sub, items
}

// clNext returns the next item, failing after 20 s.
func clNext(t *testing.T, items <-chan clItem) clItem {
	t.Helper()
	select {
	case it, ok := <-items:
		require.True(t, ok, "the subscription ended")
		return it
	case <-time.After(20 * time.Second):
		t.Fatal("nothing arrived")
		return clItem{}
	}
}

// clEvent returns the next item, which must be an event.
func clEvent(t *testing.T, items <-chan clItem) client.Event {
	t.Helper()
	it := clNext(t, items)
	require.NoError(t, it.err)
	return it.ev
}

// clSeq is an ID's sequence number: the tests know the form of IDs,
// which clients must not rely on.
func clSeq(t *testing.T, id string) (epoch, seq uint64) {
	t.Helper()
	e, s, ok := strings.Cut(id, "-")
	require.True(t, ok, id)
	var err error
	epoch, err = strconv.ParseUint(e, 10, 64)
	require.NoError(t, err, id)
	seq, err = strconv.ParseUint(s, 10, 64)
	require.NoError(t, err, id)
	return epoch, seq
}

// clStates records a subscription's state changes and signals each.
type clStates struct {
	mu      sync.Mutex
	changes []client.StateChange
	signal  chan client.StateChange
}

func newClStates() *clStates { return &clStates{signal: make(chan client.StateChange, 1000)} }

func (s *clStates) option() client.SubscribeOption {
	return client.OnStateChange(func(sc client.StateChange) {
		s.mu.Lock()
		s.changes = append(s.changes, sc)
		s.mu.Unlock()
		s.signal <- sc
	})
}

// wait waits for a change to state.
func (s *clStates) wait(t *testing.T, state client.State) client.StateChange {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case sc := <-s.signal:
			if sc.State == state {
				return sc
			}
		case <-timeout:
			t.Fatalf("never %s", state)
		}
	}
}

func (s *clStates) count(state client.State) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sc := range s.changes {
		if sc.State == state {
			n++
		}
	}
	return n
}

// A proxy cuts the subscriber's connection again and again at random
// points (in the HTTP upgrade, before the init's reply, mid-frame, and on
// purpose inside replays) while 4 publishers post 5,000 events: the
// subscriber ends with every event once, in order, and no reset.
func TestClientSurvivesDropsMidStream(t *testing.T) {
	clNoLeaks(t)
	const publishers, perPublisher = 4, 1250
	// History enough for the whole run: the test is of the client's
	// resume, not of the history's bounds.
	s := startServer(t, map[string]string{"HISTORY_SIZE": "10000", "RESUME_MAX_EVENTS": "0", "RESUME_MAX_BYTES": "0", "LOG_LEVEL": "info"})
	target := strings.TrimSuffix(strings.TrimPrefix(s.wsURL, "ws://"), "/")
	proxy := newCutProxy(t, target, func(n int) cutPlan {
		switch n {
		case 1: // Subscribe returns the first connection's failure
			return cutPlan{frames: 1 + rand.IntN(300)}
		case 2: // one certainly before the init's reply: inside the HTTP answer
			// (at random, that was missed in about 1 run of 250)
			return cutPlan{bytes: 1 + rand.IntN(100)}
		}
		switch rand.IntN(4) {
		case 0: // in the HTTP upgrade, the init's reply or the first events
			return cutPlan{bytes: 1 + rand.IntN(400)}
		case 1:
			return cutPlan{bytes: 1 + rand.IntN(12<<10)}
		case 2:
			return cutPlan{inReplay: true, frames: 1 + rand.IntN(300)}
		default:
			return cutPlan{frames: 1 + rand.IntN(300)}
		}
	})
	c := clClient(t, s, client.WithBroadcastURL("ws://"+proxy.addr()+"/"))
	names := make([]string, publishers)
	for p := range names {
		names[p] = fmt.Sprintf("drop.%d", p)
	}
	states := newClStates()
	_, items := clSubscribe(t, c, names, client.ReconnectBackoff(5*time.Millisecond, 50*time.Millisecond), states.option())

	start := time.Now()
	published := make(chan error, publishers)
	for p := range publishers {
		go func() {
			for n := range perPublisher {
				if _, err := c.Publish(t.Context(), names[p], map[string]int{"p": p, "n": n}); err != nil {
					published <- err
					return
				}
			}
			published <- nil
		}()
	}
	next := make([]int, publishers) // each publisher's next n
	var lastSeq uint64
	seen := map[string]bool{}
	finished := 0
	for got := 0; got < publishers*perPublisher; {
		select {
		case err := <-published:
			require.NoError(t, err)
			if finished++; finished == publishers {
				proxy.cutting.Store(false) // let the last connection deliver the rest
			}
			continue
		default:
		}
		it := clNext(t, items)
		require.NoError(t, it.err, "after %d events", got)
		require.False(t, seen[it.ev.ID], "event %s delivered twice", it.ev.ID)
		seen[it.ev.ID] = true
		_, seq := clSeq(t, it.ev.ID)
		require.Greater(t, seq, lastSeq, "out of order")
		lastSeq = seq
		var d struct{ P, N int }
		require.NoError(t, json.Unmarshal(it.ev.Data, &d))
		require.Equal(t, names[d.P], it.ev.Name)
		require.Equal(t, next[d.P], d.N, "publisher %d's events out of order or missing", d.P)
		next[d.P]++
		got++
	}
	for finished < publishers {
		require.NoError(t, <-published)
		finished++
	}
	cuts, midReplay, midFrame, beforeInit := proxy.stats()
	t.Logf("%d events in %v; %d connections, %d cut (%d inside a replay, %d mid-frame, %d before the init's reply), %d reconnects",
		publishers*perPublisher, time.Since(start).Round(time.Millisecond), proxy.conns.Load(), cuts, midReplay, midFrame, beforeInit,
		states.count(client.Reconnecting))
	assert.GreaterOrEqual(t, cuts, 20, "too few cuts to show anything")
	assert.GreaterOrEqual(t, midReplay, 3, "no cut landed inside a replay")
	assert.GreaterOrEqual(t, midFrame, 3)
	assert.GreaterOrEqual(t, beforeInit, 1)
	select {
	case it := <-items:
		t.Fatalf("more than was published: %+v", it)
	default:
	}
}

// A server restarted without its history cannot say what was missed: the
// subscriber gets exactly one reset, then the new server's events.
func TestClientRestartWithoutHistoryResetsOnce(t *testing.T) {
	clNoLeaks(t)
	env := map[string]string{"HISTORY_SIZE": "0"}
	s := startServer(t, env)
	c := clClient(t, s)
	states := newClStates()
	sub, items := clSubscribe(t, c, []string{"a"}, client.ReconnectBackoff(10*time.Millisecond, 100*time.Millisecond), states.option())
	assert.Equal(t, client.Connected, sub.State())
	for i := range 3 {
		id, err := c.Publish(t.Context(), "a", i)
		require.NoError(t, err)
		ev := clEvent(t, items)
		assert.Equal(t, id, ev.ID)
		assert.Equal(t, strconv.Itoa(i), string(ev.Data))
	}
	before := sub.LastID()

	require.NoError(t, s.stop())
	sc := states.wait(t, client.Reconnecting)
	assert.ErrorIs(t, sc.Err, client.ErrGoingAway, "the server said why: 1001 going away")
	env["LISTEN_PORT"] = portOf(t, s.listenURL)
	env["BROADCAST_PORT"] = portOf(t, s.wsURL)
	s2 := startServer(t, env)

	it := clNext(t, items)
	require.ErrorIs(t, it.err, client.ErrReset)
	for i := 3; i < 6; i++ {
		id, err := c.Publish(t.Context(), "a", i)
		require.NoError(t, err)
		ev := clEvent(t, items)
		assert.Equal(t, id, ev.ID)
		oldEpoch, _ := clSeq(t, before)
		newEpoch, _ := clSeq(t, ev.ID)
		assert.NotEqual(t, oldEpoch, newEpoch)
	}
	assert.Equal(t, client.Connected, sub.State())
	assert.Equal(t, 2, states.count(client.Connected))
	assert.GreaterOrEqual(t, states.count(client.Reconnecting), 1)
	s2.requireServes()
}

// portOf is the port of a URL.
func portOf(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	require.NoError(t, err)
	return p.Port()
}

// reservePort returns a loopback address nothing listens on (it was free
// a moment ago).
func reservePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// Publish goes on retrying while the server refuses connections for 2 s,
// then publishes, once.
func TestClientPublishRetriesWhileRefused(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, nil)
	_, items := clSubscribe(t, clClient(t, s), []string{"r"})
	addr := reservePort(t)
	pub, err := client.New("http://"+addr, client.WithToken(testToken), client.WithPublishRetry(0, 50*time.Millisecond, 400*time.Millisecond))
	require.NoError(t, err)
	defer pub.Close()

	// Nothing listens at addr for 2 s; then a proxy to the server does.
	var proxy *cutProxy
	var proxyMu sync.Mutex
	opened := make(chan struct{})
	timer := time.AfterFunc(2*time.Second, func() {
		defer close(opened)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return // taken meanwhile: the publish then times out below
		}
		p := &cutProxy{t: t, ln: ln, target: strings.TrimPrefix(s.listenURL, "http://"),
			plan: func(int) cutPlan { return cutPlan{} }, open: map[net.Conn]struct{}{}}
		p.wg.Go(p.accept)
		proxyMu.Lock()
		proxy = p
		proxyMu.Unlock()
	})
	defer timer.Stop()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	id, err := pub.Publish(ctx, "r", "once")
	elapsed := time.Since(start)
	<-opened
	proxyMu.Lock()
	require.NotNil(t, proxy, "the port was taken by another process")
	defer proxy.close()
	proxyMu.Unlock()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, elapsed, 2*time.Second)
	t.Logf("published after %v", elapsed.Round(time.Millisecond))

	ev := clEvent(t, items)
	assert.Equal(t, id, ev.ID)
	assert.Equal(t, `"once"`, string(ev.Data))
	_, err = pub.Publish(t.Context(), "r", "next")
	require.NoError(t, err)
	assert.Equal(t, `"next"`, string(clEvent(t, items).Data), "published once")
}

// An answer lost on the way back makes Publish retry with the same
// Idempotency-Key: the server answers the first event's ID, and the event
// is delivered once; on one instance (keys in memory) and with JetStream
// (NATS_EMBED: the keys are JetStream's message IDs, as in cluster mode).
func TestClientPublishLostAnswerIsNotRepeated(t *testing.T) {
	for _, mode := range []struct {
		name string
		env  func(t *testing.T) map[string]string
	}{
		{"one instance", func(*testing.T) map[string]string { return nil }},
		{"JetStream", func(t *testing.T) map[string]string { return map[string]string{"NATS_EMBED": t.TempDir()} }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			clNoLeaks(t)
			s := startServer(t, mode.env(t))
			_, items := clSubscribe(t, clClient(t, s), []string{"k"})
			proxy := newCutProxy(t, strings.TrimPrefix(s.listenURL, "http://"), func(n int) cutPlan {
				return cutPlan{anyAnswer: n == 1}
			})
			pub, err := client.New("http://"+proxy.addr(), client.WithToken(testToken), client.WithPublishRetry(5, 10*time.Millisecond, 50*time.Millisecond))
			require.NoError(t, err)
			defer pub.Close()
			id, err := pub.Publish(t.Context(), "k", 1)
			require.NoError(t, err)
			cuts, _, _, _ := proxy.stats()
			assert.Equal(t, 1, cuts, "the first answer was lost")
			ev := clEvent(t, items)
			assert.Equal(t, id, ev.ID, "the retry was answered with the first event's ID")
			s.publish("k", "2")
			assert.Equal(t, "2", string(clEvent(t, items).Data), "the retry was not delivered again")
		})
	}
}

// A JWT is refreshed before it expires, on the live connection: the
// subscription goes on over three tokens' lifetimes without a reconnect,
// and receives every event.
func TestClientJWTRefresh(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret})
	var minted atomic.Int32
	refresh := func(context.Context) (string, error) {
		minted.Add(1)
		return mint(t, "-sub", "refresher", "-subscribe", "j", "-ttl", "3s"), nil
	}
	c := clClient(t, s, client.WithJWT("", refresh))
	states := newClStates()
	sub, items := clSubscribe(t, c, []string{"j"}, states.option())
	publisher := clClient(t, s)
	end := time.Now().Add(8 * time.Second)
	n := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(end) {
		<-tick.C
		_, err := publisher.Publish(t.Context(), "j", n)
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(n), string(clEvent(t, items).Data))
		n++
	}
	t.Logf("%d events over %d tokens", n, minted.Load())
	assert.GreaterOrEqual(t, minted.Load(), int32(3), "refreshed before each expiry")
	assert.Equal(t, 0, states.count(client.Reconnecting), "the connection was never lost")
	assert.Equal(t, client.Connected, sub.State())
	assert.NotContains(t, s.logs.String(), "token expired")

	// Publishing with a JWT uses and refreshes it too.
	pubJWT := clClient(t, s, client.WithJWT("", func(context.Context) (string, error) {
		return mint(t, "-publish", "j", "-ttl", "1m"), nil
	}))
	_, err := pubJWT.Publish(t.Context(), "j", "by jwt")
	require.NoError(t, err)
	assert.Equal(t, `"by jwt"`, string(clEvent(t, items).Data))
}

// Run-time subscribe and unsubscribe, wildcards, and Since, against the
// real server.
func TestClientRuntimeSubscribeAndSince(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, nil)
	c := clClient(t, s)
	sub, items := clSubscribe(t, c, []string{"a"})
	first := s.publish("a", "1")
	require.Equal(t, first, clEvent(t, items).ID)

	require.NoError(t, sub.Subscribe(t.Context(), "job.*"))
	s.publish("job.7", "2")
	s.publish("a", "3")
	assert.Equal(t, "2", string(clEvent(t, items).Data))
	assert.Equal(t, "3", string(clEvent(t, items).Data))
	assert.Equal(t, []string{"a", "job.*"}, sub.Names())

	require.NoError(t, sub.Unsubscribe(t.Context(), "a"))
	s.publish("a", "4")
	last := s.publish("job.8", "5")
	ev := clEvent(t, items)
	assert.Equal(t, "job.8", ev.Name, "a was unsubscribed")
	assert.Equal(t, last, sub.LastID())

	// Since: a new subscription replays what came after an ID.
	_, replay := clSubscribe(t, c, []string{"a", "job.*"}, client.Since(first))
	for _, want := range []string{"2", "3", "4", "5"} {
		assert.Equal(t, want, string(clEvent(t, replay).Data))
	}
	// An unknown ID: a reset, then what the server kept.
	_, unknown := clSubscribe(t, c, []string{"a"}, client.Since("1-1"))
	require.ErrorIs(t, clNext(t, unknown).err, client.ErrReset)
	assert.Equal(t, "1", string(clEvent(t, unknown).Data))
}

// The server's refusals reach the caller as the client's typed errors.
func TestClientErrorsFromTheServer(t *testing.T) {
	clNoLeaks(t)
	const (
		reader = "reader-token-0123456789abcdef"
		gone   = "gone-token-0123456789abcdef"
	)
	s := startServer(t, map[string]string{"TOKENS_RELOAD_INTERVAL": "20ms", "MAX_EVENT_NAME_BYTES": "10"})
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+reader+" subscribe=a\n"+gone+"\n"))
	s.waitLog(`msg="tokens file reloaded"`)

	c := clClient(t, s, client.WithToken(reader))
	_, err := c.Publish(t.Context(), "a", 1)
	assert.ErrorIs(t, err, client.ErrForbidden)
	_, err = c.Publish(t.Context(), "a-very-long-name", 1)
	assert.ErrorIs(t, err, client.ErrNameTooLong)
	_, err = c.Subscribe(t.Context(), []string{"b"})
	assert.ErrorIs(t, err, client.ErrForbidden)
	var e *client.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 0, e.Status)
	assert.Contains(t, e.Message, `"b"`)
	sub, items := clSubscribe(t, c, []string{"a"})
	assert.ErrorIs(t, sub.Subscribe(t.Context(), "b"), client.ErrForbidden)

	_, err = clClient(t, s, client.WithToken("unknown-token-0123456789")).Publish(t.Context(), "a", 1)
	assert.ErrorIs(t, err, client.ErrUnauthenticated)
	_, err = clClient(t, s, client.WithJWT("x.y.z", nil)).Publish(t.Context(), "a", 1)
	assert.ErrorIs(t, err, client.ErrUnrecognizedScheme, "no JWT settings: Bearer is an unknown scheme")
	_, err = clClient(t, s, client.WithBroadcastURL(s.listenURL)).Subscribe(t.Context(), []string{"a"})
	assert.ErrorIs(t, err, client.ErrNotFound, "the listen server is not the broadcast server")

	// A revoked token ends its subscriptions: no reconnect.
	_, goneItems := clSubscribe(t, clClient(t, s, client.WithToken(gone)), []string{"a"}, client.ReconnectBackoff(time.Millisecond, time.Millisecond))
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+reader+" subscribe=a\n"))
	it := clNext(t, goneItems)
	assert.ErrorIs(t, it.err, client.ErrTokenRevoked)
	var ce *client.CloseError
	require.ErrorAs(t, it.err, &ce)
	assert.Equal(t, client.CloseError{Code: 4003, Text: "token revoked"}, *ce)
	_, open := <-goneItems
	assert.False(t, open, "the iteration ends after the final error")

	s.publish("a", "1")
	assert.Equal(t, "1", string(clEvent(t, items).Data))
}

// TLS: a server with a private certificate, trusted through WithTLSConfig.
func TestClientTLS(t *testing.T) {
	clNoLeaks(t)
	certFile, keyFile := writeSelfSigned(t)
	s := startServer(t, map[string]string{"HTTPS_ENABLE": "true", "TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile})
	pem, err := os.ReadFile(certFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))

	untrusted := clClient(t, s)
	_, err = untrusted.Publish(t.Context(), "t", 1)
	var verify *tls.CertificateVerificationError
	assert.True(t, errors.As(err, &verify), "%v", err)

	c := clClient(t, s, client.WithTLSConfig(&tls.Config{RootCAs: pool}))
	_, items := clSubscribe(t, c, []string{"t"})
	id, err := c.Publish(t.Context(), "t", "secure")
	require.NoError(t, err)
	ev := clEvent(t, items)
	assert.Equal(t, id, ev.ID)
	assert.Equal(t, `"secure"`, string(ev.Data))
}
