package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/internal/browsertest"
)

// examplesEnv is the environment the examples run with against s: the
// listen URL and the token (the Go examples derive the broadcast URL from
// the listen URL, as deployments have it: the next port).
func examplesEnv(s *server) []string {
	return append(os.Environ(), "EVENTSRV_URL="+s.listenURL, "EVENTSRV_TOKEN="+testToken)
}

// adjacentPorts sets env's LISTEN_PORT and BROADCAST_PORT to two free
// ports, the second the first plus one, as 8080 and 8081 are.
func adjacentPorts(t *testing.T, env map[string]string) map[string]string {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := ln.Addr().(*net.TCPAddr).Port
		next, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1))
		ln.Close()
		if err == nil {
			next.Close()
			env["LISTEN_PORT"], env["BROADCAST_PORT"] = strconv.Itoa(port), strconv.Itoa(port+1)
			return env
		}
	}
	t.Fatal("no two adjacent free ports")
	return nil
}

// waitSubscribers polls the server's metrics until n WebSocket
// subscribers are connected (the example subscriber says nothing when it
// is).
func waitSubscribers(t *testing.T, s *server, n int) {
	t.Helper()
	metrics := s.metricsURL()
	want := `eventsrv_subscribers{transport="websocket"} ` + string(rune('0'+n))
	require.Eventually(t, func() bool {
		resp, err := http.Get(metrics)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), want+"\n")
	}, 30*time.Second, 10*time.Millisecond, "never %d subscribers", n)
}

// examples/publisher feeds examples/subscriber through a real server.
func TestExamplesPublishAndSubscribe(t *testing.T) {
	clNoLeaks(t)
	bin := buildEventsrv(t, "./examples/...")
	s := startServer(t, adjacentPorts(t, map[string]string{}))
	env := examplesEnv(s)
	sub := startProc(t, env, filepath.Join(bin, "subscriber"), "order.created", "order.paid")
	waitSubscribers(t, s, 1)

	pub := exec.Command(filepath.Join(bin, "publisher"), "-n", "3", "order.created")
	pub.Env = env
	out, err := pub.CombinedOutput()
	require.NoError(t, err, "%s", out)
	ids := strings.Fields(string(out))
	require.Len(t, ids, 3, "%s", out)
	for i, id := range ids {
		assert.Equal(t, id+` order.created {"n":`+string(rune('1'+i))+`}`, sub.line(t))
	}
	pub = exec.Command(filepath.Join(bin, "publisher"), "order.paid", `{"id": 42}`)
	pub.Env = env
	out, err = pub.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, strings.TrimSpace(string(out))+` order.paid {"id": 42}`, sub.line(t))

	// A refused token: the publisher says so and fails.
	pub = exec.Command(filepath.Join(bin, "publisher"), "order.paid")
	pub.Env = append(env, "EVENTSRV_TOKEN=unknown-token-0123456789")
	out, err = pub.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "UNAUTHENTICATED")
}

// The README's promise: the example subscriber, about 15 lines, survives
// server restarts with no event lost while the history holds them (here
// NATS_EMBED, whose history and IDs survive a restart), and says nothing
// about missed events.
func TestExampleSubscriberSurvivesRestart(t *testing.T) {
	clNoLeaks(t)
	bin := buildEventsrv(t, "./examples/subscriber")
	env := adjacentPorts(t, map[string]string{"NATS_EMBED": t.TempDir()})
	s := startServer(t, env)
	sub := startProc(t, examplesEnv(s), filepath.Join(bin, "subscriber"), "order.created")
	waitSubscribers(t, s, 1)

	c := clClient(t, s)
	// The subscriber is counted from its upgrade, before its init has
	// subscribed it (under load CI saw the first events missed): warm up
	// until it prints an event published after it was subscribed.
	for warm, subscribed := 0, false; !subscribed; warm++ {
		id, err := c.Publish(t.Context(), "order.created", map[string]int{"warm": warm})
		require.NoError(t, err)
		timeout := time.After(time.Second)
		for waiting := true; waiting && !subscribed; {
			select {
			case l, ok := <-sub.lines:
				require.True(t, ok, "the subscriber ended; stderr:\n%s", sub.stderr)
				subscribed = strings.HasPrefix(l, id+" ")
			case <-timeout:
				waiting = false
			}
		}
	}
	var ids []string
	publish := func(n int) {
		for range n {
			id, err := c.Publish(t.Context(), "order.created", map[string]int{"n": len(ids)})
			require.NoError(t, err)
			ids = append(ids, id)
		}
	}
	publish(3)
	for range 2 {
		require.NoError(t, s.stop())
		s = startServer(t, env) // the same ports, the same NATS_EMBED
		// Published as soon as the server is back: most likely before the
		// subscriber's reconnection (a random wait of up to a second), so
		// that it gets them replayed.
		publish(3)
	}
	for i, id := range ids {
		assert.Equal(t, id+` order.created {"n":`+string(rune('0'+i))+`}`, sub.line(t))
	}
	assert.NotContains(t, sub.stderr.String(), "missed")
	require.NoError(t, sub.cmd.Process.Signal(syscall.SIGTERM))
	sub.wait(t)
	assert.NotContains(t, sub.stderr.String(), "missed", "no reset")
}

// examples/browser in Chromium: the page follows events with EventSource
// and, when its short-lived token expires, gets a new one from its
// backend and resumes where it was.
func TestExampleBrowserPage(t *testing.T) {
	if testing.Short() {
		t.Skip("Chromium takes seconds to start; not with -short")
	}
	chromium := browsertest.Chromium(t)
	clNoLeaks(t)
	bin := buildEventsrv(t, "./examples/browser")
	pageAddr := reservePort(t)
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret, "CORS_ALLOWED_ORIGINS": "http://" + pageAddr})
	page := startProc(t, append(examplesEnv(s), "EVENTSRV_BROADCAST_URL="+s.wsURL, "JWT_SECRET="+jwtSecret, "ADDR="+pageAddr, "EVENTS=order.created", "TOKEN_TTL=2s"),
		filepath.Join(bin, "browser"))
	assert.Contains(t, page.line(t), "serving http://"+pageAddr+"/")

	// Chromium headless, its console on stderr.
	browser := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--enable-logging=stderr", "--v=0", "http://"+pageAddr+"/")
	browser.Env = append(os.Environ(), "DBUS_SESSION_BUS_ADDRESS=disabled:")
	stderr, err := browser.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, browser.Start())
	console := make(chan string, 100)
	go func() {
		defer close(console)
		message := regexp.MustCompile(`:CONSOLE[:(\d)]*\] "(.*)", source:`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := message.FindStringSubmatch(sc.Text()); m != nil {
				console <- m[1]
			}
		}
	}()
	t.Cleanup(func() {
		_ = browser.Process.Kill()
		for range console {
		}
		_ = browser.Wait()
	})
	expect := func(want string) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case line, ok := <-console:
				require.True(t, ok, "Chromium ended")
				t.Logf("console: %s", line)
				if line == want {
					return
				}
			case <-timeout:
				t.Fatalf("the page never logged %q", want)
			}
		}
	}
	start := time.Now()
	expect("connected")
	t.Logf("the page connected %v after Chromium started", time.Since(start).Round(time.Millisecond))
	c := clClient(t, s)
	id, err := c.Publish(t.Context(), "order.created", map[string]int{"id": 1})
	require.NoError(t, err)
	expect("event " + id + ` order.created {"id":1}`)

	// The token lasts 2 s: the stream ends, the page gets a new token and
	// resumes after the last event, so an event published meanwhile is
	// not lost.
	expect("token expired: getting a new one")
	id, err = c.Publish(t.Context(), "order.created", map[string]int{"id": 2})
	require.NoError(t, err)
	expect("event " + id + ` order.created {"id":2}`)
}
