package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openFDs counts this process's open file descriptors (the server runs in
// the test process).
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd here")
	}
	return len(entries)
}

// A request that announces a body and never sends it cannot hold a socket:
// on either server it is answered, and its connection closed, at once,
// well before READ_TIMEOUT. Before the fix the broadcast server kept such a
// connection open indefinitely, and the listen server kept it, without an
// answer, for READ_TIMEOUT.
func TestBodiesThatNeverArriveDoNotHoldSockets(t *testing.T) {
	s := startServer(t, nil) // READ_TIMEOUT 30 s: the reads below give up long before

	broadcastAddr := strings.TrimSuffix(strings.TrimPrefix(s.wsURL, "ws://"), "/")
	listenAddr := strings.TrimPrefix(s.listenURL, "http://")
	cases := []struct {
		name, addr, head string
		status           int
	}{
		{"broadcast GET /healthz with a body", broadcastAddr,
			"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", 200},
		{"broadcast POST / with a short body", broadcastAddr,
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc", 426},
		{"broadcast chunked GET /events that never ends", broadcastAddr,
			"GET /events?event=a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 403},
		{"listen POST /event without a token, short body", listenAddr,
			"POST /event HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ev", 403},
		{"listen GET /healthz with a body", listenAddr,
			"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := openFDs(t)
			const conns = 20
			var wg sync.WaitGroup
			for range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.Dial("tcp", tc.addr)
					if !assert.NoError(t, err) {
						return
					}
					defer c.Close()
					_, err = io.WriteString(c, tc.head)
					assert.NoError(t, err)
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					br := bufio.NewReader(c)
					resp, err := http.ReadResponse(br, nil)
					if !assert.NoError(t, err) {
						return
					}
					assert.Equal(t, tc.status, resp.StatusCode)
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					// The server ends the connection: end of stream, not our deadline.
					_, err = br.ReadByte()
					assert.ErrorIs(t, err, io.EOF, "the server kept the connection")
				}()
			}
			wg.Wait()
			require.Eventually(t, func() bool { return openFDs(t) <= before }, 5*time.Second, 10*time.Millisecond,
				"file descriptors did not return to their baseline")
		})
	}
	s.requireServes()
}

// READ_TIMEOUT bounds requests, not the subscribers that the broadcast
// server takes over: WebSocket and SSE subscribers keep receiving long past
// it.
func TestReadTimeoutSparesSubscribers(t *testing.T) {
	const readTimeout = 100 * time.Millisecond
	s := startServer(t, map[string]string{"READ_TIMEOUT": readTimeout.String()})
	ws := s.subscribe("a")
	sse := s.openSSE("event=a", http.Header{"Authorization": {"Basic " + testToken}})
	start := time.Now()
	for i := 0; time.Since(start) < 5*readTimeout; i++ {
		s.publish("a", fmt.Sprint(i))
		require.Equal(t, eventJSON("a", fmt.Sprint(i)), readEvent(t, ws))
		_, data, _ := sse.next()
		require.Equal(t, fmt.Sprint(i), data)
	}
}

// Shutdown under a flat-out burst: every event answered OK reaches every
// subscriber that stays connected until its 1001, before the 1001. Half of
// the subscribers stop reading during the burst, so that a backlog is
// queued for them when the shutdown begins; they read again once it has.
// (Before the fix, the backlog was dropped when the 1001 was queued.)
func TestShutdownDeliversEveryAnsweredEvent(t *testing.T) {
	s := startServer(t, map[string]string{
		"SHUTDOWN_TIMEOUT": "60s", "WRITE_TIMEOUT": "60s", "QUEUE_MAX_BYTES": "67108864",
		// The paused subscribers answer no pings while paused: on a loaded
		// machine the burst may outlast 1.5 default intervals.
		"PING_INTERVAL": "10m",
	})
	const subscribers, publishers, burst = 10, 4, 6000
	// The paused subscribers' sockets take little, so that their backlog
	// is queued in the server, where the bug dropped it.
	subs := make([]*websocket.Conn, subscribers)
	for i := range subs {
		if i%2 == 0 {
			subs[i] = s.subscribeSmall("burst")
		} else {
			subs[i] = s.subscribe("burst")
		}
	}
	// Each subscriber reads until its close, recording the data it got;
	// the even ones wait for shuttingDown first.
	type stream struct {
		got   map[string]bool
		close *websocket.CloseError
		err   error // how reading ended
	}
	streams := make([]stream, subscribers)
	shuttingDown := make(chan struct{})
	var readers sync.WaitGroup
	for i, c := range subs {
		readers.Add(1)
		go func() {
			defer readers.Done()
			if i%2 == 0 {
				<-shuttingDown
			}
			got := make(map[string]bool)
			for {
				_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
				_, msg, err := c.ReadMessage()
				if err != nil {
					ce, _ := err.(*websocket.CloseError)
					streams[i] = stream{got: got, close: ce, err: err}
					return
				}
				// The data is the last string in the frame: cheaper to cut
				// out than to decode, for thousands of frames under -race.
				_, data, ok := strings.Cut(string(msg), `"data":"`)
				if assert.True(t, ok, "%s", msg) {
					got[strings.TrimSuffix(data, `"}`)] = true
				}
			}
		}()
	}
	// Publishers post 1 KB events as fast as they can until the server
	// stops answering; every OK is recorded.
	var (
		mu       sync.Mutex
		answered []string
		stop     = make(chan struct{})
		pubs     sync.WaitGroup
	)
	pad := strings.Repeat("x", 1000)
	client := &http.Client{Timeout: 60 * time.Second}
	for p := range publishers {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				data := fmt.Sprintf("%d-%d-%s", p, i, pad)
				req, err := http.NewRequest(http.MethodPost, s.listenURL+"/event",
					strings.NewReader(`{"event":"burst","data":"`+data+`"}`))
				if !assert.NoError(t, err) {
					return
				}
				req.Header.Set("Authorization", "Basic "+testToken)
				resp, err := client.Do(req)
				if err != nil {
					return // the server has stopped listening
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					answered = append(answered, data)
					mu.Unlock()
				}
			}
		}()
	}
	// Let the backlog build up, then stop the server while the burst goes
	// on; the paused subscribers read again once the shutdown has begun.
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(answered) >= burst },
		60*time.Second, time.Millisecond)
	s.cancel() // as SIGTERM does
	s.waitLog(`msg="shutting down"`)
	close(shuttingDown)
	require.NoError(t, s.stop())
	close(stop)
	pubs.Wait()
	readers.Wait()
	client.CloseIdleConnections()

	mu.Lock()
	defer mu.Unlock()
	for i, st := range streams {
		require.NotNil(t, st.close, "subscriber %d: no close frame but %v; the server's log:\n%s", i, st.err, s.logs)
		require.Equal(t, websocket.CloseGoingAway, st.close.Code, "subscriber %d", i)
		missing := 0
		for _, d := range answered {
			if !st.got[d] {
				missing++
			}
		}
		require.Zero(t, missing, "subscriber %d is missing %d of %d answered events", i, missing, len(answered))
	}
	require.Contains(t, s.logs.String(), "shutdown complete")
}

// Lines that anyone can cause without a credential are throttled: 40
// connections that never log in, and 40 refused origins, give at most ten
// lines a second (the next line after a window says how many were left
// out: see internal/logthrottle).
func TestUnauthenticatedLogLinesAreThrottled(t *testing.T) {
	s := startServer(t, map[string]string{"CORS_ALLOWED_ORIGINS": "https://app.example"})
	for range 40 {
		c := s.dial()
		require.NoError(t, c.Close())
		d := websocket.Dialer{}
		_, resp, err := d.Dial(s.wsURL, http.Header{"Origin": {"https://evil.example"}})
		require.Error(t, err)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		resp.Body.Close()
	}
	s.requireServes()
	logs := s.logs.String()
	// Ten a second for all of them together; the test takes well under
	// three seconds, and 80 would be logged without the throttle.
	lines := strings.Count(logs, `msg="subscriber connected"`) + strings.Count(logs, `msg="websocket refused"`)
	assert.LessOrEqual(t, lines, 30)
	assert.Contains(t, logs, `origin=https://evil.example`)
}

// A world-writable LISTEN_SOCKET_MODE is warned about: the socket takes no
// token.
func TestWorldWritableSocketIsWarned(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, map[string]string{"LISTEN_SOCKET": dir + "/pub.sock", "LISTEN_SOCKET_MODE": "0666"})
	s.waitLog(`lets every local user publish`)
}
