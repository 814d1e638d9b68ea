package main

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Event names are bounded by MAX_EVENT_NAME_BYTES, the same for publish
// and subscribe, with their own code; a refused name never reaches the
// log whole.
func TestEventNameBound(t *testing.T) {
	s := startServer(t, map[string]string{"MAX_EVENT_NAME_BYTES": "16"})
	atLimit, over := strings.Repeat("n", 16), strings.Repeat("n", 17)
	huge := strings.Repeat("h", 200_000)

	status, body := s.post("Basic "+testToken, `{"event":"`+atLimit+`"}`)
	assert.Equal(t, 200, status, body)
	for _, name := range []string{over, huge, strings.Repeat("é", 9)} { // é is 2 bytes
		status, body = s.post("Basic "+testToken, `{"event":"`+name+`"}`)
		assert.Equal(t, 400, status)
		assert.Equal(t, `{"code":"EVENT_NAME_TOO_LONG"}`, body)
	}

	c := s.dial()
	assert.Equal(t, `{"type":"init","code":"EVENT_NAME_TOO_LONG"}`, sendInit(t, c, initMsg("Basic "+testToken, "a", over)))
	assert.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Basic "+testToken, atLimit)))
	assert.Equal(t, `{"type":"subscribe","code":"EVENT_NAME_TOO_LONG"}`,
		sendInit(t, c, `{"type":"subscribe","events":["`+over+`"]}`))

	resp := s.getSSE("event="+over, http.Header{"Authorization": {"Basic " + testToken}})
	defer resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)

	assert.NotContains(t, s.logs.String(), huge[:1000])
	s.requireServes()
}

// A refusal that names the event shows at most 64 bytes of it.
func TestRefusedNamesAreCutInLogs(t *testing.T) {
	s := startServer(t, nil)
	scoped := "scoped-token-0123456789abcdef"
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+scoped+" publish=a\n"))
	s.waitLog(`msg="tokens file reloaded"`)
	name := strings.Repeat("z", 200)
	status, _ := s.post("Basic "+scoped, `{"event":"`+name+`"}`)
	require.Equal(t, 403, status)
	s.waitLog(`code=FORBIDDEN`)
	assert.Contains(t, s.logs.String(), strings.Repeat("z", 64)+"…")
	assert.NotContains(t, s.logs.String(), strings.Repeat("z", 65))
}

// A resume replays at most RESUME_MAX_EVENTS and RESUME_MAX_BYTES: the
// newest that fit, with recovered false, and the stream goes on live.
func TestResumeBounds(t *testing.T) {
	s := startServer(t, map[string]string{"RESUME_MAX_EVENTS": "5", "RESUME_MAX_BYTES": "1000"})
	first := s.publish("a", `"first"`)
	for i := 2; i <= 10; i++ {
		s.publish("a", fmt.Sprint(i))
	}
	c := s.dial()
	replayed, reply := resume(t, c, resumeMsg(first, "a"))
	assert.Equal(t, []string{"6", "7", "8", "9", "10"}, datas(replayed), "the newest five")
	assert.False(t, *reply.Recovered)

	// Within both bounds: everything, recovered.
	d := s.dial()
	replayed, reply = resume(t, d, resumeMsg(replayedID(t, s, 7), "a"))
	assert.Equal(t, []string{"8", "9", "10"}, datas(replayed))
	assert.True(t, *reply.Recovered)

	// The byte bound: of six frames of about 360 bytes, two fit in 1000.
	big := `"` + strings.Repeat("b", 300) + `"`
	from := s.publish("b", big)
	for range 5 {
		s.publish("b", big)
	}
	e := s.dial()
	replayed, reply = resume(t, e, resumeMsg(from, "b"))
	assert.Len(t, replayed, 2)
	assert.False(t, *reply.Recovered)
	s.publish("b", `"live"`)
	assert.Equal(t, `"live"`, string(readDelivery(t, e).Data))

	// SSE: the same bound, after a reset.
	st := s.openSSE("event=a&lastEventId="+first, http.Header{"Authorization": {"Basic " + testToken}})
	event, _, _ := st.next()
	assert.Equal(t, "reset", event)
	for _, want := range []string{"6", "7", "8", "9", "10"} {
		_, data, _ := st.next()
		require.Equal(t, want, data)
	}
}

// replayedID is the ID of the n-th event published on s (1-based), which
// the tests above publish first thing.
func replayedID(t *testing.T, s *server, n int) string {
	t.Helper()
	c := s.dial()
	defer c.Close()
	_, reply := resume(t, c, resumeMsg("", "a"))
	epoch, _, _ := strings.Cut(reply.ID, "-")
	return fmt.Sprintf("%s-%d", epoch, n)
}

// A storm of SSE resumes from stalled readers costs bounded memory, and
// publishing goes on: each stream is sent at most RESUME_MAX_BYTES of
// replay, encoded outside the publish lock. Before the bound, each stream
// was sent (and encoded) every kept event: here 20 × 8 MiB.
func TestResumeStormIsBounded(t *testing.T) {
	s := startServer(t, map[string]string{"RESUME_MAX_BYTES": "262144", "QUEUE_MAX_BYTES": "4194304"})
	data := `"` + strings.Repeat("d", 8000) + `"`
	for range 1000 { // 8 MB kept
		s.publish("a", data)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	const streams = 20
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Opened and never read: the replay waits in the server.
			resp := s.getSSE("event=a&lastEventId=1-1", http.Header{"Authorization": {"Basic " + testToken}})
			assert.Equal(t, 200, resp.StatusCode)
			s.t.Cleanup(func() { resp.Body.Close() })
		}()
	}
	for i := range 200 {
		s.publish("a", fmt.Sprint(i))
	}
	wg.Wait()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d KiB for %d stalled resumes", grown>>10, streams)
	assert.Less(t, grown, int64(streams*(262144+64<<10)+8<<20), "each resume holds about RESUME_MAX_BYTES")
	s.requireServes()
}
