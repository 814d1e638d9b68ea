package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// delivery is an event frame, decoded.
type delivery struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// resumeReply is the OK of an init or subscribe that carried "since".
type resumeReply struct {
	Type      string `json:"type"`
	Code      string `json:"code"`
	ID        string `json:"id"`
	Recovered *bool  `json:"recovered"`
	Replayed  *int   `json:"replayed"`
}

// resume sends msg (an init or subscribe with since) and reads the reply,
// which comes first, and then the replayed events it announces.
func resume(t *testing.T, c *websocket.Conn, msg string) ([]delivery, resumeReply) {
	t.Helper()
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(msg)))
	r := readResumeReply(t, c)
	events := make([]delivery, 0, *r.Replayed)
	for range *r.Replayed {
		events = append(events, readDelivery(t, c))
	}
	return events, r
}

// readResumeReply reads a resuming reply, which must come before any
// replayed event.
func readResumeReply(t *testing.T, c *websocket.Conn) resumeReply {
	t.Helper()
	raw := readText(t, c)
	var r resumeReply
	require.NoError(t, json.Unmarshal([]byte(raw), &r), raw)
	require.Contains(t, []string{"init", "subscribe"}, r.Type, "the reply comes before the replayed events: %s", raw)
	require.Equal(t, "OK", r.Code, raw)
	require.NotNil(t, r.Recovered, "a resuming reply says whether it recovered: %s", raw)
	require.NotNil(t, r.Replayed, "a resuming reply says how many events it replays: %s", raw)
	require.GreaterOrEqual(t, *r.Replayed, 0, raw)
	require.Regexp(t, `^[1-9][0-9]*-(0|[1-9][0-9]*)$`, r.ID, raw)
	return r
}

func resumeMsg(since string, events ...string) string {
	init := initMsg("Basic "+testToken, events...)
	return strings.TrimSuffix(init, "}") + `,"since":` + jsonString(since) + `}`
}

func readDelivery(t *testing.T, c *websocket.Conn) delivery {
	t.Helper()
	raw := readText(t, c)
	var d delivery
	require.NoError(t, json.Unmarshal([]byte(raw), &d), raw)
	require.Equal(t, "event", d.Type, raw)
	return d
}

// datas lists the events' data.
func datas(events []delivery) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = string(e.Data)
	}
	return out
}

// TestResumeSeam is the reconnect test: a subscriber drops, misses
// 1,000 events while publishing goes on, and reconnects with the last ID
// it saw; it must get every event exactly once and in order, across the
// seam between replay and live delivery.
func TestResumeSeam(t *testing.T) {
	const (
		seen   = 100  // received before the drop
		missed = 1000 // published while away, at least
		total  = 2500
	)
	s := startServer(t, map[string]string{"HISTORY_SIZE": "10000", "RESUME_MAX_EVENTS": "10000"})
	c := s.dial()
	_, first := resume(t, c, resumeMsg("", "seam"))
	assert.True(t, *first.Recovered, "a first connection has nothing to recover")

	var published atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= total; i++ {
			status, body := s.post("Basic "+testToken, fmt.Sprintf(`{"event":"seam","data":%d}`, i))
			if !assert.Equal(t, http.StatusOK, status, body) {
				return
			}
			published.Store(int64(i))
		}
	}()
	defer wg.Wait()

	last := first.ID
	for i := 1; i <= seen; i++ {
		d := readDelivery(t, c)
		require.Equal(t, strconv.Itoa(i), string(d.Data))
		last = d.ID
	}
	require.NoError(t, c.Close())

	// Reconnect once at least 1,000 more events have been published, and
	// while publishing is still going on.
	require.Eventually(t, func() bool { return published.Load() >= seen+missed }, 30*time.Second, 5*time.Millisecond)
	c = s.dial()
	replayed, reply := resume(t, c, resumeMsg(last, "seam"))
	assert.True(t, *reply.Recovered)
	require.GreaterOrEqual(t, len(replayed), missed)
	next := seen + 1
	for _, d := range replayed {
		require.Equal(t, strconv.Itoa(next), string(d.Data), "replay out of order, duplicated or with a gap")
		next++
	}
	for next <= total {
		d := readDelivery(t, c)
		require.Equal(t, strconv.Itoa(next), string(d.Data), "gap or duplicate at the seam (replay ended at %d)", seen+len(replayed))
		next++
	}
	require.Positive(t, published.Load(), "publishing went on")
}

// TestResumeHistoryBounds: what is kept, and what recovered says, with
// HISTORY_SIZE and HISTORY_TTL.
func TestResumeHistoryBounds(t *testing.T) {
	cases := []struct {
		name      string
		since     func(ids []string) string // ids[i] is the ID of event i, 1 to 5
		want      []string
		recovered bool
	}{
		{"within history", func(ids []string) string { return ids[2] }, []string{"3", "4", "5"}, true},
		{"last event", func(ids []string) string { return ids[5] }, nil, true},
		{"older than history", func(ids []string) string { return ids[1] }, []string{"3", "4", "5"}, false},
		{"another epoch", func([]string) string { return "1-1" }, []string{"3", "4", "5"}, false},
		{"malformed", func([]string) string { return "yesterday" }, []string{"3", "4", "5"}, false},
		{"future", func(ids []string) string { return strings.Split(ids[5], "-")[0] + "-99" }, []string{"3", "4", "5"}, false},
		{"first connection", func([]string) string { return "" }, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, map[string]string{"HISTORY_SIZE": "3"})
			ids := make([]string, 6)
			for i := 1; i <= 5; i++ {
				ids[i] = s.publish("a", strconv.Itoa(i))
			}
			s.publish("b", `"other"`)

			c := s.dial()
			replayed, reply := resume(t, c, resumeMsg(tc.since(ids), "a"))
			assert.Equal(t, tc.want, nilIfEmpty(datas(replayed)))
			assert.Equal(t, tc.recovered, *reply.Recovered)
			for _, d := range replayed {
				assert.Equal(t, "a", d.Event)
			}
			s.publish("a", `"live"`)
			d := readDelivery(t, c)
			assert.Equal(t, `"live"`, string(d.Data), "live delivery follows the replay")
			assert.Equal(t, seqOf(t, reply.ID)+1, seqOf(t, d.ID), "the reply's ID is the position before live events")
		})
	}
}

func TestResumeHistoryTTL(t *testing.T) {
	s := startServer(t, map[string]string{"HISTORY_TTL": "50ms"})
	id := s.publish("a", `1`)
	s.publish("a", `2`)
	// The second event expires 50 ms after it was published; no signal
	// says when, so poll.
	require.Eventually(t, func() bool {
		c := s.dial()
		replayed, reply := resume(t, c, resumeMsg(id, "a"))
		c.Close()
		return len(replayed) == 0 && !*reply.Recovered
	}, 30*time.Second, 5*time.Millisecond, "an expired event is neither replayed nor claimed as recovered")
}

func TestResumeWithoutHistory(t *testing.T) {
	s := startServer(t, map[string]string{"HISTORY_SIZE": "0"})
	first := s.publish("a", `1`)
	last := s.publish("a", `2`)
	c := s.dial()
	replayed, reply := resume(t, c, resumeMsg(last, "a"))
	assert.Empty(t, replayed)
	assert.True(t, *reply.Recovered, "nothing was published since: nothing to lose")
	assert.Equal(t, last, reply.ID)
	d := s.dial()
	replayed, reply = resume(t, d, resumeMsg(first, "a"))
	assert.Empty(t, replayed)
	assert.False(t, *reply.Recovered)
}

// TestResumeReplayIsNotASlowConsumer: a replay larger than the queue
// bound is not cut off; the bound applies to what is queued after it.
func TestResumeReplayIsNotASlowConsumer(t *testing.T) {
	s := startServer(t, map[string]string{"MAX_BODY_BYTES": "1024", "QUEUE_MAX_BYTES": "2048"})
	data := `"` + strings.Repeat("x", 200) + `"`
	first := s.publish("a", data)
	for range 99 {
		s.publish("a", data)
	}
	c := s.dial()
	replayed, reply := resume(t, c, resumeMsg(first, "a"))
	assert.Len(t, replayed, 99, "about 25 KB replayed through a 2 KB queue")
	assert.True(t, *reply.Recovered)
	s.publish("a", `"live"`)
	assert.Equal(t, `"live"`, string(readDelivery(t, c).Data))
	assert.NotContains(t, s.logs.String(), "slow consumer")
}

// TestResumeAcrossNames: the replay merges the names asked for, in the
// order they were published, and leaves out the others.
func TestResumeAcrossNames(t *testing.T) {
	s := startServer(t, nil)
	since := s.publish("x", `0`)
	for i, name := range []string{"a", "b", "x", "a", "c", "b"} {
		s.publish(name, strconv.Itoa(i+1))
	}
	c := s.dial()
	replayed, reply := resume(t, c, resumeMsg(since, "a", "b", "a"))
	assert.True(t, *reply.Recovered)
	assert.Equal(t, []string{"1", "2", "4", "6"}, datas(replayed))
	prev := uint64(0)
	for _, d := range replayed {
		assert.Greater(t, seqOf(t, d.ID), prev, "IDs increase")
		prev = seqOf(t, d.ID)
	}
}

// TestSubscribeWithSince: a run-time subscribe may resume too; names
// already subscribed are not replayed again.
func TestSubscribeWithSince(t *testing.T) {
	s := startServer(t, nil)
	c := s.subscribe("a")
	since := s.publish("a", `1`)
	require.Equal(t, eventJSON("a", `1`), readEvent(t, c))
	s.publish("b", `2`)
	s.publish("a", `3`)
	require.Equal(t, eventJSON("a", `3`), readEvent(t, c))

	replayed, reply := resume(t, c, `{"type":"subscribe","events":["a","b"],"since":`+jsonString(since)+`}`)
	assert.Equal(t, "subscribe", reply.Type)
	assert.True(t, *reply.Recovered)
	assert.Equal(t, []string{"2"}, datas(replayed), "only b, which is new; a was live all along")
	s.publish("b", `4`)
	require.Equal(t, eventJSON("b", `4`), readEvent(t, c))

	require.Equal(t, `{"type":"subscribe","code":"INVALID_SYNTAX"}`,
		sendInit(t, c, `{"type":"subscribe","events":["c"],"since":5}`))
}

func TestSSEResume(t *testing.T) {
	s := startServer(t, nil)
	auth := http.Header{"Authorization": {"Basic " + testToken}}
	st := s.openSSE("event=a", auth)
	s.publish("a", `1`)
	event, data, _ := st.next()
	require.Equal(t, "a", event)
	require.Equal(t, "1", data)
	last := st.lastID
	require.Regexp(t, `^[1-9][0-9]*-[1-9][0-9]*$`, last)
	st.resp.Body.Close()

	s.publish("a", `2`)
	s.publish("b", `"not asked for"`)
	s.publish("a", `3`)

	for name, open := range map[string]func() *sseStream{
		"Last-Event-ID": func() *sseStream {
			return s.openSSE("event=a", http.Header{"Authorization": auth["Authorization"], "Last-Event-Id": {last}})
		},
		"lastEventId": func() *sseStream { return s.openSSE("event=a&lastEventId="+last, auth) },
	} {
		t.Run(name, func(t *testing.T) {
			st := open()
			for _, want := range []string{"2", "3"} {
				event, data, _ := st.next()
				require.Equal(t, "a", event, "no reset: nothing was lost")
				require.Equal(t, want, data)
			}
		})
	}

	t.Run("lost", func(t *testing.T) {
		st := s.openSSE("event=a", http.Header{"Authorization": auth["Authorization"], "Last-Event-Id": {"1-1"}})
		event, data, _ := st.next()
		assert.Equal(t, "reset", event)
		assert.Equal(t, `{"recovered":false}`, data)
		for _, want := range []string{"1", "2", "3"} {
			_, data, _ := st.next()
			require.Equal(t, want, data, "what is kept follows the reset")
		}
	})
}

// TestSSEPositionBeforeEvents: a new stream's first bytes set EventSource's
// lastEventId, so that a reconnect before any event still resumes.
func TestSSEPositionBeforeEvents(t *testing.T) {
	s := startServer(t, nil)
	pos := s.publish("x", `0`)
	st := s.openSSE("event=a", http.Header{"Authorization": {"Basic " + testToken}})
	line, err := st.br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "id: "+pos+"\n", line)
	s.publish("a", `1`)
	_, data, _ := st.next()
	assert.Equal(t, "1", data)
	assert.Equal(t, seqOf(t, pos)+1, seqOf(t, st.lastID))
}

func seqOf(t *testing.T, id string) uint64 {
	t.Helper()
	_, seq, ok := strings.Cut(id, "-")
	require.True(t, ok, id)
	n, err := strconv.ParseUint(seq, 10, 64)
	require.NoError(t, err, id)
	return n
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// TestResumeUnderLoad: subscribers that drop and resume again and again
// while four publishers post as fast as they can. All events go to one
// name, so a subscriber must see every sequence number exactly once, in
// order: each ID's sequence is the last one's plus one, across every seam.
func TestResumeUnderLoad(t *testing.T) {
	const (
		publishers = 4
		perPub     = 400
		subs       = 4
		drops      = 8
	)
	// A subscriber may be far behind when it drops: every event it missed
	// is replayed, past the default RESUME_MAX_EVENTS.
	s := startServer(t, map[string]string{"HISTORY_SIZE": "10000", "RESUME_MAX_EVENTS": "10000"})
	start := make(chan struct{})
	var pubs sync.WaitGroup
	for p := range publishers {
		pubs.Go(func() {
			<-start
			for i := range perPub {
				status, body := s.post("Basic "+testToken, fmt.Sprintf(`{"event":"load","data":[%d,%d]}`, p, i))
				if !assert.Equal(t, http.StatusOK, status, body) {
					return
				}
			}
		})
	}
	total := uint64(publishers * perPub)
	var subscribed, wg sync.WaitGroup
	subscribed.Add(subs)
	go func() { subscribed.Wait(); close(start) }() // publishing begins once all are live
	for range subs {
		wg.Go(func() {
			c := s.dial()
			_, reply := resume(t, c, resumeMsg("", "load"))
			subscribed.Done()
			last := reply.ID
			next := seqOf(t, last) + 1
			seen, dropAt := uint64(0), total/drops
			for d := 0; seen < total; {
				if d < drops && seen >= dropAt {
					d++
					dropAt += total / drops
					require.NoError(t, c.Close())
					c = s.dial()
					replayed, reply := resume(t, c, resumeMsg(last, "load"))
					require.True(t, *reply.Recovered)
					for _, e := range replayed {
						require.Equal(t, next, seqOf(t, e.ID), "replay after drop %d", d)
						next++
						seen++
						last = e.ID
					}
					require.Equal(t, seqOf(t, reply.ID)+1, next, "the reply's position is the last replayed event")
					last = reply.ID // all its replayed events have arrived
					continue
				}
				e := readDelivery(t, c)
				require.Equal(t, next, seqOf(t, e.ID), "live after drop %d", d)
				next++
				seen++
				last = e.ID
			}
			assert.Equal(t, total, seen)
		})
	}
	wg.Wait()
	pubs.Wait()
}

// follower keeps a client's last ID by the README's rule: the id of each
// event as it arrives, and a resuming reply's id once the events it
// replays have all arrived (at once when it replays none).
type follower struct {
	last     string
	position string // the reply's id, while its replay is under way
	pending  int    // replayed events still to come
}

func (f *follower) reply(r resumeReply) {
	f.position, f.pending = r.ID, *r.Replayed
	if f.pending == 0 {
		f.last = r.ID
	}
}

func (f *follower) event(d delivery) {
	f.last = d.ID
	if f.pending > 0 {
		f.pending--
		if f.pending == 0 {
			f.last = f.position
		}
	}
}

// TestResumeDropMidReplay: connections that drop mid-replay (right after
// the reply, after one replayed event, halfway, one short of the end)
// resume from the last ID the README's rule keeps, while publishing goes
// on, and the subscriber gets every event once and in order. It asks for
// a only; b's events in between make the reply's position later than the
// last event replayed, so a client that took the position as its last ID
// at once would lose the rest of the replay.
func TestResumeDropMidReplay(t *testing.T) {
	const (
		before = 100 // a's events published before the first drop
		total  = 600
	)
	s := startServer(t, map[string]string{"HISTORY_SIZE": "10000", "RESUME_MAX_EVENTS": "10000"})
	var f follower
	c := s.dial()
	_, r := resume(t, c, resumeMsg("", "a"))
	f.reply(r)

	next := 1 // the data of the next event of a expected
	take := func(d delivery) {
		t.Helper()
		require.Equal(t, "a", d.Event)
		require.Equal(t, strconv.Itoa(next), string(d.Data), "an event lost, repeated or out of order")
		next++
		f.event(d)
	}
	var lastA string
	for i := 1; i <= before; i++ {
		lastA = s.publish("a", strconv.Itoa(i))
		s.publish("b", `"b"`)
	}
	for range 10 {
		take(readDelivery(t, c))
	}
	require.NoError(t, c.Close())

	reconnect := func() int {
		t.Helper()
		c = s.dial()
		require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(resumeMsg(f.last, "a"))))
		r := readResumeReply(t, c)
		require.True(t, *r.Recovered, "resumed from %s", f.last)
		f.reply(r)
		return *r.Replayed
	}
	n := reconnect()
	require.Equal(t, before-10, n)
	require.Greater(t, seqOf(t, f.position), seqOf(t, lastA), "the position is later than the last event replayed")

	var published atomic.Int64
	published.Store(before)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := before + 1; i <= total; i++ {
			for _, body := range []string{fmt.Sprintf(`{"event":"a","data":%d}`, i), `{"event":"b","data":"b"}`} {
				status, answer := s.post("Basic "+testToken, body)
				if !assert.Equal(t, http.StatusOK, status, answer) {
					return
				}
			}
			published.Store(int64(i))
		}
	})
	defer wg.Wait()

	for _, cut := range []struct {
		name string
		keep func(n int) int // how many replayed events arrive before the drop
	}{
		{"right after the reply", func(int) int { return 0 }},
		{"after one event", func(int) int { return 1 }},
		{"halfway", func(n int) int { return n / 2 }},
		{"one short of the end", func(n int) int { return n - 1 }},
	} {
		require.GreaterOrEqual(t, n, 2, "a replay to cut %s", cut.name)
		from := f.last
		for range cut.keep(n) {
			take(readDelivery(t, c))
		}
		require.Positive(t, f.pending, "dropped mid-replay, %s", cut.name)
		require.NoError(t, c.Close())
		if cut.keep(n) == 0 {
			require.Equal(t, from, f.last, "a drop right after the reply resumes from where this one did")
		}
		// Let a few events more be published, so that the next replay
		// has some to cut.
		require.Eventually(t, func() bool { return published.Load() >= int64(min(total, next+20)) },
			30*time.Second, time.Millisecond)
		n = reconnect()
	}
	for next <= total {
		take(readDelivery(t, c))
	}
	wg.Wait()
	assert.Zero(t, f.pending)
	s.publish("a", `"end"`)
	assert.Equal(t, `"end"`, string(readDelivery(t, c).Data), "nothing repeated after the last event")
}
