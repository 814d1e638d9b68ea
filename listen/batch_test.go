package listen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBatch(t *testing.T) {
	ok := []struct {
		name string
		body string
		want []Event
	}{
		{"one", `[{"event":"a","data":{"x" : 1}}]`, []Event{{"a", json.RawMessage(`{"x" : 1}`)}}},
		{"data kept byte for byte", " [ {\"event\":\"a\",\"data\":1e3} ,\n{\"data\":\"\\u00e9\",\"event\":\"é\"}, {\"event\":\"c\"} ] \n",
			[]Event{{"a", json.RawMessage(`1e3`)}, {"é", json.RawMessage(`"\u00e9"`)}, {"c", json.RawMessage(`null`)}}},
		{"empty", `[]`, []Event{}},
		{"at the event limit", `[` + strings.Repeat(`{"event":"a"},`, 2) + `{"event":"a"}]`,
			[]Event{{"a", nullData}, {"a", nullData}, {"a", nullData}}},
		{"at the size limit", `[{"event":"a","data":"` + strings.Repeat("x", 10) + `"}]`,
			[]Event{{"a", json.RawMessage(`"xxxxxxxxxx"`)}}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			events, err := ParseBatch([]byte(tt.body), 3, 33)
			require.NoError(t, err)
			assert.Equal(t, tt.want, events)
		})
	}

	bad := []struct {
		name, body string
		want       error
		message    string
	}{
		{"empty body", ``, ErrInvalidBody, "the body is not a JSON array: EOF"},
		{"an object", `{"event":"a"}`, ErrInvalidBody, "not a JSON array (POST /event takes a single event)"},
		{"null", `null`, ErrInvalidBody, "not a JSON array"},
		{"unclosed", `[{"event":"a"}`, ErrInvalidBody, "the body is not a JSON array"},
		{"missing comma", `[{"event":"a"} {"event":"b"}]`, ErrInvalidBody, "events[1] is not valid JSON"},
		{"trailing data", `[{"event":"a"}] []`, ErrInvalidBody, "the body has more after its array"},
		{"trailing garbage", `[{"event":"a"}]x`, ErrInvalidBody, "the body"},
		{"invalid UTF-8", "[{\"event\":\"\xff\"}]", ErrInvalidBody, "the body is not valid UTF-8"},
		{"event missing", `[{"event":"a"},{"data":1}]`, ErrInvalidBody, `events[1]: "event" is missing`},
		{"event not a string", `[{"event":1}]`, ErrInvalidBody, `events[0]: "event" is not a string`},
		{"event empty", `[{"event":"a"},{"event":"a"},{"event":""}]`, ErrInvalidBody, `events[2]: "event" is empty`},
		{"element not an object", `[{"event":"a"},[1]]`, ErrInvalidBody, `events[1]: it is not a JSON object`},
		{"element null", `[null]`, ErrInvalidBody, `events[0]: it is not a JSON object`},
		{"key case", `[{"EVENT":"a"}]`, ErrInvalidBody, `events[0]: "event" is missing`},
		{"too many", `[` + strings.Repeat(`{"event":"a"},`, 3) + `{"event":"a"}]`, ErrTooManyEvents, "at most 3 events"},
		{"too many, even if invalid later", `[{},{},{},{}]`, ErrInvalidBody, `events[0]: "event" is missing`},
		{"an event too large", `[{"event":"a"},{"event":"a","data":"` + strings.Repeat("x", 11) + `"}]`, ErrEventTooLarge,
			"events[1] is 34 bytes; an event may be at most 33 (MAX_BODY_BYTES)"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			events, err := ParseBatch([]byte(tt.body), 3, 33)
			require.ErrorIs(t, err, tt.want)
			assert.Contains(t, err.Error(), tt.message)
			assert.Nil(t, events)
		})
	}
}

func FuzzParseBatch(f *testing.F) {
	for _, s := range []string{
		`[{"event":"a"}]`,
		`[{"event":"a","data":{"x" : 1}}, {"event":"b","data":[1e3,null,true]}]`,
		`[]`,
		` [ ] `,
		`[{"event":"a"},]`,
		`[{"event":"a"}]x`,
		`[{"event":"a"} {"event":"b"}]`,
		`{"event":"a"}`,
		`[{"event":"a","event":"b","data":-0.50}]`,
		"[{\"event\":\"\xff\"}]",
		`[{"event":"\ud800","data":"\u00e9\n"}]`,
		`[null]`,
		`[[],{}]`,
	} {
		f.Add([]byte(s))
	}
	const maxEvents, maxEventBytes = 4, 64
	f.Fuzz(func(t *testing.T, body []byte) {
		events, err := ParseBatch(body, maxEvents, maxEventBytes)
		if err != nil {
			if events != nil {
				t.Fatalf("error %v with events %+v", err, events)
			}
			var be *BatchError
			if !errors.As(err, &be) || be.Reason == "" {
				t.Fatalf("error %v is not a *BatchError with a reason", err)
			}
			if !errors.Is(err, ErrInvalidBody) && !errors.Is(err, ErrTooManyEvents) && !errors.Is(err, ErrEventTooLarge) {
				t.Fatalf("error %v wraps none of the sentinels", err)
			}
			return
		}
		if !utf8.Valid(body) || !json.Valid(body) {
			t.Fatalf("accepted %q, which is not valid UTF-8 JSON", body)
		}
		// Data are copies: a kept event does not keep the body.
		scratch := bytes.Clone(body)
		again, err := ParseBatch(scratch, maxEvents, maxEventBytes)
		if err != nil {
			t.Fatalf("%q: accepted once, then %v", body, err)
		}
		for i := range scratch {
			scratch[i] = 'x'
		}
		for i := range again {
			if !bytes.Equal(again[i].Data, events[i].Data) {
				t.Fatalf("%q: events[%d]'s data changed with the body: %q", body, i, again[i].Data)
			}
		}
		// The batch is exactly the array's elements, each parsed as POST
		// /event parses its body.
		var raws []json.RawMessage
		if err := json.Unmarshal(body, &raws); err != nil || raws == nil {
			t.Fatalf("accepted %q, which is not a JSON array: %v", body, err)
		}
		if len(events) != len(raws) || len(events) > maxEvents {
			t.Fatalf("%q: %d events from %d elements (at most %d)", body, len(events), len(raws), maxEvents)
		}
		for i, raw := range raws {
			if len(raw) > maxEventBytes {
				t.Fatalf("%q: events[%d] is %d bytes, over the limit", body, i, len(raw))
			}
			want, err := ParseEvent(raw)
			if err != nil {
				t.Fatalf("%q: events[%d] accepted, but POST /event refuses it: %v", body, i, err)
			}
			if events[i].Name != want.Name || !bytes.Equal(events[i].Data, want.Data) {
				t.Fatalf("%q: events[%d] is %+v, POST /event would publish %+v", body, i, events[i], want)
			}
		}
	})
}

// fakeAsync is an AsyncPublisher. Event i's publish fails when fail(i),
// at its start when startErr; IDs are "1-<i+1>". It records the keys.
type fakeAsync struct {
	fakePublisher
	fail      func(i int) bool
	startErr  bool
	notStored bool // failures are certainly not stored

	mu      sync.Mutex
	keys    []string
	waiting int // publishes started and not waited for
	maxWait int // the most publishes in flight at once
}

func (p *fakeAsync) StartPublish(key, event string, data json.RawMessage) (func() (string, bool, error), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := len(p.keys)
	p.keys = append(p.keys, key)
	if p.fail != nil && p.fail(i) && p.startErr {
		return nil, errors.New("not connected")
	}
	p.waiting++
	p.maxWait = max(p.maxWait, p.waiting)
	return func() (string, bool, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.waiting--
		if p.fail != nil && p.fail(i) {
			return "", false, &testUnavailable{notStored: p.notStored}
		}
		return "1-" + strconv.Itoa(i+1), false, nil
	}, nil
}

// testUnavailable advises as the cluster bus does.
type testUnavailable struct{ notStored bool }

func (*testUnavailable) Error() string     { return "no ack" }
func (*testUnavailable) Advice() string    { return "JetStream did not acknowledge it" }
func (e *testUnavailable) NotStored() bool { return e.notStored }

// postBatch posts body to /events with an Idempotency-Key unless key is "".
func postBatch(t *testing.T, url, key, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/events", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", goodCreds)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

// batchOf is a batch of n events named e0, e1, ...
func batchOf(n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"event":"e%d","data":%d}`, i, i)
	}
	b.WriteByte(']')
	return b.String()
}

// TestBatchAsync: an AsyncPublisher gets every event in flight at once,
// with keys derived from the Idempotency-Key, and a failure answers 503
// with the IDs of the prefix that was stored.
func TestBatchAsync(t *testing.T) {
	tests := []struct {
		name         string
		key          string
		fail         func(i int) bool
		startErr     bool
		notStored    bool
		wantStatus   int
		wantBody     string
		wantKeys     []string // the keys of the publishes started
		wantInFlight int      // 0: len(wantKeys)
		wantMsg      string
	}{
		{
			name: "ok", wantStatus: 200, wantBody: `{"code":"OK","ids":["1-1","1-2","1-3","1-4"]}`,
			wantKeys: []string{"", "", "", ""},
		},
		{
			name: "ok with a key", key: "k-1", wantStatus: 200, wantBody: `{"code":"OK","ids":["1-1","1-2","1-3","1-4"]}`,
			wantKeys: []string{"k-1 0", "k-1 1", "k-1 2", "k-1 3"},
		},
		{
			name: "the third not acknowledged", key: "k", fail: func(i int) bool { return i == 2 },
			wantStatus: 503, wantBody: `"ids":["1-1","1-2"]}`, wantKeys: []string{"k 0", "k 1", "k 2", "k 3"},
			wantMsg: "2 of 4 events stored (their IDs are in ids): JetStream did not acknowledge it; a retry with the same Idempotency-Key publishes only what is missing",
		},
		{
			name: "the first not acknowledged, no key", fail: func(i int) bool { return i == 0 },
			wantStatus: 503, wantBody: `"ids":[]}`, wantKeys: []string{"", "", "", ""},
			wantMsg: "0 of 4 events stored (their IDs are in ids): JetStream did not acknowledge it",
		},
		{
			name: "a tail certainly not stored is sent again", key: "k", notStored: true,
			fail:       func(i int) bool { return i == 2 || i == 3 },
			wantStatus: 200, wantBody: `{"code":"OK","ids":["1-1","1-2","1-5","1-6"]}`,
			wantKeys: []string{"k 0", "k 1", "k 2", "k 3", "k 2", "k 3"}, wantInFlight: 4,
		},
		{
			name: "twice at most", notStored: true, fail: func(i int) bool { return i >= 2 },
			wantStatus: 503, wantBody: `"ids":["1-1","1-2"]}`, wantKeys: []string{"", "", "", "", "", "", "", ""}, wantInFlight: 4,
			wantMsg: "2 of 4 events stored",
		},
		{
			name: "not sent again when a later one was stored", notStored: true, fail: func(i int) bool { return i == 2 },
			wantStatus: 503, wantBody: `"ids":["1-1","1-2"]}`, wantKeys: []string{"", "", "", ""},
			wantMsg: "2 of 4 events stored",
		},
		{
			name: "the third not sent: nothing after it is", fail: func(i int) bool { return i == 2 }, startErr: true,
			wantStatus: 503, wantBody: `"ids":["1-1","1-2"]}`, wantKeys: []string{"", "", ""}, wantInFlight: 2,
			wantMsg: "2 of 4 events stored",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &fakeAsync{fail: tt.fail, startErr: tt.startErr, notStored: tt.notStored}
			srv := newTestServer(t, &fakeAuth{}, pub, 1<<10)
			status, header, body := postBatch(t, srv.URL, tt.key, batchOf(4))
			assert.Equal(t, tt.wantStatus, status)
			assert.True(t, strings.HasSuffix(body, tt.wantBody+"\n"), "%s", body)
			assert.Equal(t, tt.wantKeys, pub.keys)
			inFlight := tt.wantInFlight
			if inFlight == 0 {
				inFlight = len(tt.wantKeys)
			}
			assert.Equal(t, inFlight, pub.maxWait, "every publish in flight at once")
			assert.Zero(t, pub.waiting, "every publish waited for")
			assert.Empty(t, pub.Events(), "Publish is not used")
			if tt.wantStatus != 200 {
				var answer struct {
					Code, Message string
					IDs           []string
				}
				require.NoError(t, json.Unmarshal([]byte(body), &answer))
				assert.Equal(t, "UNAVAILABLE", answer.Code)
				assert.Contains(t, answer.Message, tt.wantMsg)
				assert.Equal(t, "1", header.Get("Retry-After"))
			}
		})
	}
}

// TestBatchDedup: one instance's Dedup gets the batch one event after
// another, in order; a retried batch publishes nothing twice and answers
// the same IDs, and completes one that failed part way.
func TestBatchDedup(t *testing.T) {
	pub := &fakePublisher{}
	srv := newTestServer(t, &fakeAuth{}, NewDedup(pub, time.Minute, 100), 1<<10)

	status, _, body := postBatch(t, srv.URL, "k", batchOf(3))
	require.Equal(t, 200, status, body)
	assert.Equal(t, `{"code":"OK","ids":["1-1","1-2","1-3"]}`+"\n", body)
	assert.Equal(t, []published{{"e0", "0"}, {"e1", "1"}, {"e2", "2"}}, pub.Events())

	status, _, body = postBatch(t, srv.URL, "k", batchOf(3))
	require.Equal(t, 200, status, body)
	assert.Equal(t, `{"code":"OK","ids":["1-1","1-2","1-3"],"duplicates":3}`+"\n", body)
	assert.Len(t, pub.Events(), 3, "published once")

	// A longer batch with the same key: the first three are the first
	// batch's, the fourth is new.
	status, _, body = postBatch(t, srv.URL, "k", batchOf(4))
	require.Equal(t, 200, status, body)
	assert.Equal(t, `{"code":"OK","ids":["1-1","1-2","1-3","1-4"],"duplicates":3}`+"\n", body)

	// A single POST /event with the same key is not one of the batch's.
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/event", strings.NewReader(`{"event":"x"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", goodCreds)
	req.Header.Set("Idempotency-Key", "k")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, `{"code":"OK","id":"1-5"}`+"\n", string(b))

	// Without a key, a batch is published each time.
	status, _, body = postBatch(t, srv.URL, "", batchOf(2))
	require.Equal(t, 200, status, body)
	assert.Equal(t, `{"code":"OK","ids":["1-6","1-7"]}`+"\n", body)
}

// failingAt is a Publisher whose publish number n (from 1) fails, once.
type failingAt struct {
	fakePublisher
	n     int
	calls int
}

func (p *failingAt) Publish(event string, data json.RawMessage) (string, error) {
	p.calls++
	if p.calls == p.n {
		return "", errors.New("hub closed")
	}
	return p.fakePublisher.Publish(event, data)
}

// TestBatchSequentialFailure: a Publisher failing part way answers 503
// with the prefix stored; the retry with the key publishes the rest once.
func TestBatchSequentialFailure(t *testing.T) {
	pub := &failingAt{n: 3}
	srv := newTestServer(t, &fakeAuth{}, NewDedup(pub, time.Minute, 100), 1<<10)
	status, header, body := postBatch(t, srv.URL, "k", batchOf(4))
	require.Equal(t, 503, status, body)
	assert.Equal(t, "1", header.Get("Retry-After"))
	assert.Contains(t, body, `"message":"2 of 4 events stored (their IDs are in ids): the server is shutting down`)
	assert.True(t, strings.HasSuffix(body, `,"ids":["1-1","1-2"]}`+"\n"), "%s", body)
	assert.Equal(t, []published{{"e0", "0"}, {"e1", "1"}}, pub.Events(), "nothing after the failed one")

	status, _, body = postBatch(t, srv.URL, "k", batchOf(4))
	require.Equal(t, 200, status, body)
	assert.Equal(t, `{"code":"OK","ids":["1-1","1-2","1-3","1-4"],"duplicates":2}`+"\n", body)
	assert.Equal(t, []published{{"e0", "0"}, {"e1", "1"}, {"e2", "2"}, {"e3", "3"}}, pub.Events())
}

// BenchmarkParseBatch parses a batch of 100 typical events (benchBody).
func BenchmarkParseBatch(b *testing.B) {
	body := []byte("[" + strings.TrimSuffix(strings.Repeat(string(benchBody)+",", 100), ",") + "]")
	events, err := ParseBatch(body, MaxBatchEvents, 0)
	require.NoError(b, err)
	require.Len(b, events, 100)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ParseBatch(body, MaxBatchEvents, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// fakeAtomic is a fakeAsync that stores a batch as one, or declines.
type fakeAtomic struct {
	fakeAsync
	decline bool  // tried is false
	err     error // the batch's outcome when tried
	got     []string
}

func (p *fakeAtomic) PublishAtomic(n int, event func(i int) (key, name string, data json.RawMessage)) ([]string, bool, error) {
	for i := range n {
		key, name, data := event(i)
		p.got = append(p.got, key+"|"+name+"|"+string(data))
	}
	if p.decline {
		return nil, false, nil
	}
	if p.err != nil {
		return nil, true, p.err
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "7-" + strconv.Itoa(100+i)
	}
	return ids, true, nil
}

// TestBatchAtomic: an AtomicPublisher is given the whole batch with its
// keys; its IDs answer the batch, its failure is a 503 with no event
// stored, and when it declines the events go one by one as before.
func TestBatchAtomic(t *testing.T) {
	tests := []struct {
		name       string
		pub        *fakeAtomic
		wantStatus int
		wantBody   string
		wantAsync  []string // the keys published one by one
	}{
		{
			name: "stored as one", pub: &fakeAtomic{}, wantStatus: 200,
			wantBody: `{"code":"OK","ids":["7-100","7-101","7-102"]}`,
		},
		{
			name: "not acknowledged", pub: &fakeAtomic{err: &testUnavailable{}}, wantStatus: 503,
			wantBody: `{"code":"UNAVAILABLE","message":"0 of 3 events stored (their IDs are in ids): JetStream did not acknowledge it; a retry with the same Idempotency-Key publishes only what is missing","ids":[]}`,
		},
		{
			name: "declined: one by one", pub: &fakeAtomic{decline: true}, wantStatus: 200,
			wantBody: `{"code":"OK","ids":["1-1","1-2","1-3"]}`, wantAsync: []string{"k 0", "k 1", "k 2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, &fakeAuth{}, tt.pub, 1<<10)
			status, _, body := postBatch(t, srv.URL, "k", batchOf(3))
			assert.Equal(t, tt.wantStatus, status)
			assert.Equal(t, tt.wantBody+"\n", body)
			assert.Equal(t, []string{"k 0|e0|0", "k 1|e1|1", "k 2|e2|2"}, tt.pub.got, "the whole batch, with its keys")
			assert.Equal(t, tt.wantAsync, tt.pub.keys)
		})
	}
}
