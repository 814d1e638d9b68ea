package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/history"
)

// batchAnswer is POST /events's answer.
type batchAnswer struct {
	Code       string   `json:"code"`
	Message    string   `json:"message"`
	IDs        []string `json:"ids"`
	Duplicates int      `json:"duplicates"`
}

// postEvents posts a batch to base+"/events" with auth and an
// Idempotency-Key unless key is "", and returns the status, the answer
// as sent and the Retry-After header.
func postEvents(t *testing.T, client *http.Client, base, auth, key, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/events", strings.NewReader(body))
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	return resp.StatusCode, string(b), resp.Header.Get("Retry-After")
}

// decodeBatch decodes an answer, which must end in a newline.
func decodeBatch(t *testing.T, body string) batchAnswer {
	t.Helper()
	require.True(t, strings.HasSuffix(body, "\n"), "a JSON answer ends in a newline: %q", body)
	var a batchAnswer
	require.NoError(t, json.Unmarshal([]byte(body), &a), body)
	return a
}

// numbered is a batch of n events named name, whose data are from, from+1, ...
func numbered(name string, from, n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"event":%s,"data":%d}`, jsonString(name), from+i)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// requireDeliveries reads n events from c and requires their IDs and data:
// ids[i] with data from+i.
func requireDeliveries(t *testing.T, c *websocket.Conn, ids []string, from int) {
	t.Helper()
	for i, id := range ids {
		d := readDelivery(t, c)
		require.Equal(t, id, d.ID, "event %d", i)
		require.Equal(t, fmt.Sprint(from+i), string(d.Data), "event %d", i)
	}
}

// requireIncreasing requires ids to be of one epoch and in increasing order.
func requireIncreasing(t *testing.T, ids []string) {
	t.Helper()
	var prev history.ID
	for i, s := range ids {
		id, err := history.ParseID(s)
		require.NoError(t, err, s)
		if i > 0 {
			require.Equal(t, prev.Epoch, id.Epoch, "ids %v", ids)
			require.Greater(t, id.Seq, prev.Seq, "ids %v", ids)
		}
		prev = id
	}
}

// TestBatchPublishes: a batch is stored and delivered in its order, with
// the IDs of its answer, over TCP and over LISTEN_SOCKET.
func TestBatchPublishes(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "eventsrv.sock")
	s := startServer(t, map[string]string{"LISTEN_SOCKET": sock})
	s.waitLog(`server=socket`)
	c := s.subscribe("a", "b")

	// Two names, so that the order is the batch's across names.
	body := `[{"event":"a","data":0},{"event":"b","data":1},{"event":"a","data":2},{"event":"b"}]`
	status, raw, _ := postEvents(t, s.http, s.listenURL, "Basic "+testToken, "", body)
	require.Equal(t, http.StatusOK, status, raw)
	a := decodeBatch(t, raw)
	require.Len(t, a.IDs, 4)
	requireIncreasing(t, a.IDs)
	assert.Equal(t, `{"code":"OK","ids":["ID","ID","ID","ID"]}`, anyIDs(t, raw))
	for i, want := range []string{`{"type":"event","id":"` + a.IDs[0] + `","event":"a","data":0}`,
		`{"type":"event","id":"` + a.IDs[1] + `","event":"b","data":1}`,
		`{"type":"event","id":"` + a.IDs[2] + `","event":"a","data":2}`,
		`{"type":"event","id":"` + a.IDs[3] + `","event":"b","data":null}`} {
		assert.Equal(t, want, readText(t, c), "event %d", i)
	}

	// A full batch of the largest size, over the local socket without a
	// token.
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	status, raw, _ = postEvents(t, &http.Client{Transport: tr}, "http://eventsrv", "", "", numbered("a", 0, 1000))
	require.Equal(t, http.StatusOK, status, raw)
	a2 := decodeBatch(t, raw)
	require.Len(t, a2.IDs, 1000)
	requireIncreasing(t, append([]string{a.IDs[3]}, a2.IDs...))
	requireDeliveries(t, c, a2.IDs, 0)

	// An empty batch stores nothing.
	status, raw, _ = postEvents(t, s.http, s.listenURL, "Basic "+testToken, "", ` [ ] `)
	require.Equal(t, http.StatusOK, status, raw)
	assert.Equal(t, `{"code":"OK","ids":[]}`+"\n", raw)
	last := s.publish("a", `"after"`)
	d := readDelivery(t, c)
	assert.Equal(t, last, d.ID)
}

// idInList is an ID in an answer's ids.
var idInList = regexp.MustCompile(`"[1-9][0-9]*-[1-9][0-9]*"`)

// anyIDs is an answer with every ID in its ids written as "ID".
func anyIDs(t *testing.T, raw string) string {
	t.Helper()
	return idInList.ReplaceAllString(strings.TrimSuffix(raw, "\n"), `"ID"`)
}

// TestBatchCodes: every answer of POST /events against a real server,
// and that a refused batch publishes none of its events.
func TestBatchCodes(t *testing.T) {
	s := startServer(t, map[string]string{"MAX_BODY_BYTES": "1024", "QUEUE_MAX_BYTES": "65536", "MAX_EVENT_NAME_BYTES": "16",
		"TOKENS_RELOAD_INTERVAL": "20ms"})
	const scoped = "scoped-token-0123456789"
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+scoped+" publish=a.*\n"))
	s.waitLog(`msg="tokens file reloaded"`)
	c := s.subscribe("a", "a.x", "b")
	good := "Basic " + testToken
	tooMany := numbered("b", 0, 1001)
	atBodyLimit := `{"event":"b","data":"` + strings.Repeat("x", 1024-len(`{"event":"b","data":""}`)) + `"}`
	require.Len(t, atBodyLimit, 1024)
	// Over the batch's default bound, 8 MiB (MAX_BODY_BYTES is smaller),
	// and made of events each under MAX_BODY_BYTES.
	overBatch := "[" + strings.Repeat(atBodyLimit+",", (8<<20)/1025) + atBodyLimit + "]"
	require.Greater(t, len(overBatch), 8<<20)

	cases := []struct {
		name, method, auth, key, body string
		status                        int
		code                          string
		message                       string // what the message contains
		delivered                     int    // events delivered
	}{
		{"ok", "POST", good, "", `[{"event":"a","data":{"x":1}},{"event":"b"}]`, 200, "OK", "", 2},
		{"ok at MAX_BODY_BYTES per event", "POST", good, "", "[" + atBodyLimit + "," + atBodyLimit + "]", 200, "OK", "", 2},
		{"ok scoped", "POST", "Basic " + scoped, "", `[{"event":"a.x"}]`, 200, "OK", "", 1},
		{"GET is the broadcast server's", "GET", good, "", ``, 404, "NOT_FOUND", "Server-Sent Events are served by the broadcast server", 0},
		{"PUT", "PUT", good, "", `[{"event":"a"}]`, 405, "METHOD_NOT_ALLOWED", "publish a batch with POST /events", 0},
		{"no credentials", "POST", "", "", `[{"event":"a"}]`, 403, "UNAUTHENTICATED", "no credentials", 0},
		{"unknown token", "POST", "Basic nottherighttoken-0123456789", "", `[{"event":"a"}]`, 403, "UNAUTHENTICATED", "not accepted", 0},
		{"bearer", "POST", "Bearer " + testToken, "", `[{"event":"a"}]`, 403, "AUTH_UNRECOGNIZED_SCHEME", "", 0},
		{"not an array", "POST", good, "", `{"event":"a"}`, 400, "INVALID_BODY", "not a JSON array (POST /event takes a single event)", 0},
		{"empty body", "POST", good, "", ``, 400, "INVALID_BODY", "not a JSON array", 0},
		{"trailing garbage", "POST", good, "", `[{"event":"a"}] x`, 400, "INVALID_BODY", "more after its array", 0},
		{"invalid UTF-8", "POST", good, "", "[{\"event\":\"a\xff\"}]", 400, "INVALID_BODY", "not valid UTF-8", 0},
		{"one event invalid", "POST", good, "", `[{"event":"a"},{"event":"a"},{"event":""}]`, 400, "INVALID_BODY",
			`events[2]: "event" is empty; send [{"event":"<name>","data":<any JSON>}, ...]`, 0},
		{"one event not an object", "POST", good, "", `[{"event":"a"},7]`, 400, "INVALID_BODY", `events[1]: it is not a JSON object`, 0},
		{"spaces around an event do not count", "POST", good, "", "[ " + atBodyLimit + " ,\n" + atBodyLimit + " ]", 200, "OK", "", 2},
		{"one event over MAX_BODY_BYTES", "POST", good, "", `[{"event":"b"},{"event":"b","data":"` + strings.Repeat("x", 1024) + `"}]`, 413, "PAYLOAD_TOO_LARGE",
			"events[1] is 1047 bytes; an event may be at most 1024 (MAX_BODY_BYTES)", 0},
		{"1001 events", "POST", good, "", tooMany, 413, "PAYLOAD_TOO_LARGE", "a batch holds at most 1000 events; send the rest in another", 0},
		{"body over MAX_BATCH_BYTES", "POST", good, "", overBatch, 413, "PAYLOAD_TOO_LARGE", "the body is over 8388608 bytes (MAX_BATCH_BYTES)", 0},
		{"name too long", "POST", good, "", `[{"event":"a"},{"event":"` + strings.Repeat("n", 17) + `"}]`, 400, "EVENT_NAME_TOO_LONG",
			"events[1]: the event name is 17 bytes; at most 16 are allowed (MAX_EVENT_NAME_BYTES)", 0},
		{"bad idempotency key", "POST", good, "a b", `[{"event":"a"}]`, 400, "INVALID_IDEMPOTENCY_KEY", "printable ASCII", 0},
		{"one event forbidden", "POST", "Basic " + scoped, "", `[{"event":"a.x"},{"event":"b"}]`, 403, "FORBIDDEN",
			`events[1]: this token may not publish "b"`, 0},
	}
	delivered := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, s.listenURL+"/events", strings.NewReader(tc.body))
			require.NoError(t, err)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			if tc.key != "" {
				req.Header.Set("Idempotency-Key", tc.key)
			}
			resp, err := s.http.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			a := decodeBatch(t, string(raw))
			assert.Equal(t, tc.code, a.Code)
			if tc.code == "OK" {
				assert.Len(t, a.IDs, tc.delivered)
				assert.Empty(t, a.Message)
			} else {
				assert.Contains(t, a.Message, tc.message)
				assert.Nil(t, a.IDs, "a refused batch has no ids")
				assert.Equal(t, `{"code":"`+tc.code+`"}`, plainBody(t, raw))
			}
			if tc.status == 405 {
				assert.Equal(t, "POST", resp.Header.Get("Allow"))
			}
		})
		delivered += tc.delivered
	}
	// What was delivered is the OK batches' events, and nothing of the
	// refused ones.
	marker := s.publish("a", `"end"`)
	for i := range delivered {
		d := readDelivery(t, c)
		require.NotEqual(t, `"end"`, string(d.Data), "only %d of %d events delivered", i, delivered)
	}
	assert.Equal(t, marker, readDelivery(t, c).ID, "a refused batch published nothing")
	assert.NotContains(t, s.logs.String(), testToken)
}

// TestBatchIdempotencyOneInstance: a batch retried with its Idempotency-Key
// answers the same IDs and is delivered once.
func TestBatchIdempotencyOneInstance(t *testing.T) {
	s := startServer(t, nil)
	c := s.subscribe("a")
	good := "Basic " + testToken
	status, raw, _ := postEvents(t, s.http, s.listenURL, good, "batch-1", numbered("a", 0, 20))
	require.Equal(t, http.StatusOK, status, raw)
	first := decodeBatch(t, raw)
	require.Len(t, first.IDs, 20)
	assert.Zero(t, first.Duplicates)

	status, raw, _ = postEvents(t, s.http, s.listenURL, good, "batch-1", numbered("a", 100, 20))
	require.Equal(t, http.StatusOK, status, raw)
	again := decodeBatch(t, raw)
	assert.Equal(t, first.IDs, again.IDs)
	assert.Equal(t, 20, again.Duplicates)

	// The same key for a single event is another key.
	status, raw = s.postKeyed(`{"event":"a","data":"single"}`, "batch-1")
	require.Equal(t, http.StatusOK, status, raw)
	single := okAnswer.FindStringSubmatch(raw)
	require.NotNil(t, single, raw)

	requireDeliveries(t, c, first.IDs, 0)
	d := readDelivery(t, c)
	assert.Equal(t, single[1], d.ID, "the retried batch was not delivered again")
	assert.Equal(t, `"single"`, string(d.Data))
}

// MAX_BATCH_BYTES bounds a POST /events body: a batch over it is 413,
// with the setting's name, however small each event is.
func TestBatchMaxBatchBytesSetting(t *testing.T) {
	s := startServer(t, map[string]string{"MAX_BODY_BYTES": "1024", "MAX_BATCH_BYTES": "2048"})
	var events []string
	for range 40 {
		events = append(events, `{"event":"a","data":"0123456789012345678901234567890123456789"}`)
	}
	over := "[" + strings.Join(events, ",") + "]" // about 2,700 bytes
	under := "[" + strings.Join(events[:20], ",") + "]"
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"under the bound", under, 200, "OK"},
		{"over the bound", over, 413, "PAYLOAD_TOO_LARGE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, s.listenURL+"/events", strings.NewReader(tc.body))
			require.NoError(t, err)
			req.Header.Set("Authorization", "Basic "+testToken)
			resp, err := s.http.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.status, resp.StatusCode)
			a := decodeBatch(t, string(raw))
			assert.Equal(t, tc.code, a.Code)
			if tc.status == 413 {
				assert.Contains(t, a.Message, "over 2048 bytes (MAX_BATCH_BYTES)")
			}
		})
	}
}
