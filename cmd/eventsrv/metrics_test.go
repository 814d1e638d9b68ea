package main

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scrape returns every sample of the metrics page, by its full name with
// labels as written (e.g. `eventsrv_events_published_total{code="OK"}`).
func (s *server) scrape() map[string]float64 {
	s.t.Helper()
	status, body := s.get(s.metricsURL())
	require.Equal(s.t, 200, status)
	samples := make(map[string]float64)
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(s.t, err, line)
		samples[line[:i]] = v
	}
	return samples
}

func TestMetricsFollowTheTraffic(t *testing.T) {
	// WRITE_TIMEOUT bounds how long the cut-off subscriber, which never
	// reads, keeps its connection.
	s := startServer(t, map[string]string{"MAX_BODY_BYTES": "2048", "QUEUE_MAX_BYTES": "65536", "WRITE_TIMEOUT": "500ms"})
	before := s.scrape()
	assert.Contains(t, before, "go_goroutines", "Go runtime metrics are served")
	assert.Zero(t, before[`eventsrv_subscribers{transport="websocket"}`])

	c1, c2 := s.subscribe("m"), s.subscribe("m")
	s.publish("m", `1`)
	require.Equal(t, eventJSON("m", "1"), readEvent(t, c1))
	require.Equal(t, eventJSON("m", "1"), readEvent(t, c2))
	status, _ := s.post("Basic "+testToken, `{"nope":1}`)
	require.Equal(t, 400, status)
	status, _ = s.post("Basic wrong-token-0123456789", `{"event":"m"}`)
	require.Equal(t, 403, status)
	bad := s.dial()
	require.Equal(t, `{"type":"init","code":"AUTH_UNRECOGNIZED_SCHEME"}`, sendInit(t, bad, initMsg("Bearer x", "m")))

	m := s.scrape()
	assert.Equal(t, 3.0, m["eventsrv_connections_total"])
	assert.Equal(t, 3.0, m[`eventsrv_subscribers{transport="websocket"}`])
	assert.Equal(t, 1.0, m[`eventsrv_events_published_total{code="OK"}`])
	assert.Equal(t, 1.0, m["eventsrv_history_events"], "the event is kept for resume")
	assert.Greater(t, m["eventsrv_history_bytes"], 0.0)
	assert.Equal(t, 1.0, m[`eventsrv_events_published_total{code="INVALID_BODY"}`])
	assert.Equal(t, 1.0, m[`eventsrv_events_published_total{code="UNAUTHENTICATED"}`])
	assert.Equal(t, 2.0, m["eventsrv_deliveries_total"])
	assert.Equal(t, 1.0, m[`eventsrv_auth_failures_total{reason="unauthenticated",via="http"}`])
	assert.Equal(t, 1.0, m[`eventsrv_auth_failures_total{reason="unrecognized scheme",via="websocket"}`])
	assert.GreaterOrEqual(t, m["eventsrv_write_wait_seconds_count"], 2.0)

	// A peer that closes and a slow consumer that is cut off are counted
	// by reason.
	require.NoError(t, c2.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second)))
	data := `"` + strings.Repeat("x", 1500) + `"`
	for i := 0; !strings.Contains(s.logs.String(), `reason="slow consumer"`); i++ {
		require.Less(t, i, 50000, "c1 was never cut off")
		s.publish("m", data)
	}
	require.Eventually(t, func() bool {
		m := s.scrape()
		return m[`eventsrv_subscribers_closed_total{reason="slow consumer"}`] == 1 &&
			m[`eventsrv_subscribers_closed_total{reason="closed by peer"}`] == 1 &&
			m[`eventsrv_subscribers{transport="websocket"}`] == 1
	}, 10*time.Second, 20*time.Millisecond)
}

func TestMetricsCountTokenReloads(t *testing.T) {
	s := startServer(t, map[string]string{"TOKENS_RELOAD_INTERVAL": "20ms"})
	require.NoError(t, writeFile(s.tokensFile, otherToken+"\n"))
	s.waitLog(`msg="tokens file reloaded"`)
	require.Eventually(t, func() bool {
		return s.scrape()[`eventsrv_tokens_reloads_total{result="ok"}`] == 1
	}, 10*time.Second, 20*time.Millisecond)
}
