package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testToken is the token every test server accepts.
const testToken = "test-token-0123456789abcdef"

// server is a real eventsrv started with run() on free loopback ports.
type server struct {
	t          *testing.T
	listenURL  string // http(s)://127.0.0.1:port
	wsURL      string // ws(s)://127.0.0.1:port/
	dir        string // holds the tokens file
	tokensFile string
	logs       *logSink
	cancel     context.CancelFunc
	done       chan error
	http       *http.Client
}

// startServer runs eventsrv with test defaults overridden by env, and
// waits until both servers have logged their addresses.
func startServer(t *testing.T, env map[string]string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, dir: dir, tokensFile: filepath.Join(dir, "tokens"), logs: newLogSink(), done: make(chan error, 1)}
	require.NoError(t, os.WriteFile(s.tokensFile, []byte(testToken+"\n"), 0o600))
	vars := map[string]string{
		"BIND_ADDRESS":    "127.0.0.1",
		"LISTEN_PORT":     "0",
		"BROADCAST_PORT":  "0",
		"METRICS_ADDRESS": "127.0.0.1:0",
		"TOKENS_FILE":     s.tokensFile,
		"LOG_LEVEL":       "debug",
	}
	for k, v := range env {
		vars[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.done <- run(ctx, []string{"eventsrv"}, func(k string) string { return vars[k] }, io.Discard, s.logs)
	}()

	tr := &http.Transport{}
	scheme, wsScheme := "http", "ws"
	if vars["HTTPS_ENABLE"] == "true" {
		scheme, wsScheme = "https", "wss"
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	s.http = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	select {
	case addrs := <-s.logs.ready:
		s.listenURL = scheme + "://" + addrs[0]
		s.wsURL = wsScheme + "://" + addrs[1] + "/"
	case err := <-s.done:
		t.Fatalf("server exited before serving: %v\n%s", err, s.logs)
	case <-time.After(10 * time.Second):
		t.Fatalf("server did not start\n%s", s.logs)
	}
	t.Cleanup(func() {
		s.stop()
		tr.CloseIdleConnections()
		require.NotContains(t, s.logs.String(), testToken, "a token reached the log")
	})
	return s
}

// stop cancels the server and waits for run to return; it is idempotent.
func (s *server) stop() error {
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok {
			close(s.done)
		}
		return err
	case <-time.After(30 * time.Second):
		s.t.Fatalf("server did not stop\n%s", s.logs)
		return nil
	}
}

// post sends POST /event with an Authorization header (none when auth is
// empty) and returns the status and body.
func (s *server) post(auth, body string) (int, string) {
	s.t.Helper()
	return s.do(http.MethodPost, "/event", auth, body)
}

func (s *server) do(method, path, auth, body string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.listenURL+path, strings.NewReader(body))
	require.NoError(s.t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return s.roundTrip(req)
}

// roundTrip sends req and returns the status and body.
// Answers are checked here by their codes: the JSON answer's closing
// newline and an error's message for people are taken off (messages have
// tests of their own: see messages_test.go).
func (s *server) roundTrip(req *http.Request) (int, string) {
	s.t.Helper()
	status, body := s.roundTripRaw(req)
	require.True(s.t, strings.HasSuffix(body, "\n"), "a JSON answer ends in a newline: %q", body)
	return status, withoutMessage(strings.TrimSuffix(body, "\n"))
}

// roundTripRaw sends req and returns the status and the body as sent.
func (s *server) roundTripRaw(req *http.Request) (int, string) {
	s.t.Helper()
	resp, err := s.http.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return resp.StatusCode, string(b)
}

// messageField is the message of an error answer or a refused init,
// subscribe or unsubscribe, which comes last; event frames, whose data may
// hold anything, do not match (they have no code).
var messageField = regexp.MustCompile(`^(\{(?:"type":"[a-z]+",)?"code":"[A-Z_]+"),"message":"(?:[^"\\]|\\.)*"\}$`)

// plainBody is an HTTP answer's body as roundTrip returns it: without its
// closing newline, which it requires, and without its message.
func plainBody(t *testing.T, body []byte) string {
	t.Helper()
	require.True(t, bytes.HasSuffix(body, []byte("\n")), "a JSON answer ends in a newline: %q", body)
	return withoutMessage(string(bytes.TrimSuffix(body, []byte("\n"))))
}

// withoutMessage is an answer or a reply without its message: the form
// the old service sent, which most tests compare with.
func withoutMessage(s string) string { return messageField.ReplaceAllString(s, "$1}") }

// requireServes checks that the server still delivers to a new subscriber,
// after a test has thrown something bad at it.
func (s *server) requireServes() {
	s.t.Helper()
	c := s.subscribe("a")
	s.publish("a", `1`)
	require.Equal(s.t, eventJSON("a", `1`), readEvent(s.t, c))
}

// publish posts an event, requires OK and returns the event's ID.
func (s *server) publish(event, data string) string {
	s.t.Helper()
	body := `{"event":` + jsonString(event) + `,"data":` + data + `}`
	status, resp := s.post("Basic "+testToken, body)
	require.Equal(s.t, http.StatusOK, status, resp)
	m := okAnswer.FindStringSubmatch(resp)
	require.NotNil(s.t, m, "answer %s", resp)
	return m[1]
}

// okAnswer is POST /event's OK, with the event's ID.
var okAnswer = regexp.MustCompile(`^\{"code":"OK","id":"([1-9][0-9]*-[1-9][0-9]*)"\}$`)

// idField is an event ID inside a frame or an answer.
var idField = regexp.MustCompile(`"id":"[1-9][0-9]*-(0|[1-9][0-9]*)"`)

// anyID writes every event ID in s as "ID", so that tests compare frames
// byte for byte apart from IDs, which the resume tests check themselves.
func anyID(s string) string { return idField.ReplaceAllString(s, `"id":"ID"`) }

// dial opens a WebSocket to the broadcast server.
func (s *server) dial() *websocket.Conn {
	s.t.Helper()
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(s.wsURL, nil)
	require.NoError(s.t, err)
	resp.Body.Close()
	s.t.Cleanup(func() { c.Close() })
	return c
}

// subscribeSmall is subscribe over a socket with a 64 KiB receive buffer,
// for a subscriber that stops reading: what it does not read then waits
// in the server's queue soon, rather than in the kernel's buffers (but
// not so little that reading it back is slow: a 4 KiB window took over a
// minute for a few MiB).
func (s *server) subscribeSmall(events ...string) *websocket.Conn {
	s.t.Helper()
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(64 << 10)
		}
		return c, err
	}}
	c, _, err := d.Dial(s.wsURL, nil)
	require.NoError(s.t, err)
	s.t.Cleanup(func() { c.Close() })
	require.Equal(s.t, `{"type":"init","code":"OK"}`, sendInit(s.t, c, initMsg("Basic "+testToken, events...)))
	return c
}

// subscribe dials and inits with events, requiring OK.
func (s *server) subscribe(events ...string) *websocket.Conn {
	s.t.Helper()
	c := s.dial()
	require.Equal(s.t, `{"type":"init","code":"OK"}`, sendInit(s.t, c, initMsg("Basic "+testToken, events...)))
	return c
}

func initMsg(auth string, events ...string) string {
	quoted := make([]string, len(events))
	for i, e := range events {
		quoted[i] = jsonString(e)
	}
	return `{"authentication":` + jsonString(auth) + `,"events":[` + strings.Join(quoted, ",") + `]}`
}

// sendInit writes msg and returns the reply.
func sendInit(t *testing.T, c *websocket.Conn, msg string) string {
	t.Helper()
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(msg)))
	return readText(t, c)
}

// readText reads one text message, failing after 10 s.
// A refusal's message is taken off (see withoutMessage).
func readText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	return withoutMessage(readRawText(t, c))
}

// readRawText reads one text message as sent, failing after 10 s.
func readRawText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	typ, msg, err := c.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, websocket.TextMessage, typ)
	return string(msg)
}

// readClose reads until the server's close frame and returns it.
func readClose(t *testing.T, c *websocket.Conn) *websocket.CloseError {
	t.Helper()
	for {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		ce, ok := err.(*websocket.CloseError)
		require.True(t, ok, "expected a close frame, got %v", err)
		return ce
	}
}

// eventJSON is the exact frame a subscriber receives, its ID written as
// anyID writes it.
func eventJSON(event, data string) string {
	return `{"type":"event","id":"ID","event":` + jsonString(event) + `,"data":` + data + `}`
}

// readEvent reads one text message, its ID written as "ID" (see anyID).
func readEvent(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	return anyID(readText(t, c))
}

// jsonString quotes s as JSON; for the names tests use in expected frames
// this is also what JSON.stringify writes.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// logSink collects the server's log and reports both listen addresses
// from the "serving" lines.
type logSink struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	addrs   [2]string
	metrics string // the metrics server's address, once logged
	ready   chan [2]string
}

func newLogSink() *logSink { return &logSink{ready: make(chan [2]string, 1)} }

var servingLine = regexp.MustCompile(`msg=serving server=(listen|broadcast|metrics) addr=(\S+)`)

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		m := servingLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		switch m[1] {
		case "metrics":
			l.metrics = m[2]
		case "listen":
			l.addrs[0] = m[2]
		default:
			l.addrs[1] = m[2]
			if l.addrs[0] != "" {
				l.ready <- l.addrs
			}
		}
	}
	return len(p), nil
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// metricsURL returns the metrics server's /metrics URL.
func (s *server) metricsURL() string {
	s.waitLog("server=metrics")
	s.logs.mu.Lock()
	defer s.logs.mu.Unlock()
	return "http://" + s.logs.metrics + "/metrics"
}

// waitLog waits until the log contains s.
func (s *server) waitLog(sub string) {
	s.t.Helper()
	require.Eventually(s.t, func() bool { return strings.Contains(s.logs.String(), sub) }, 10*time.Second, 5*time.Millisecond,
		"log never contained %q", sub)
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// get fetches url and returns the status and body.
func (s *server) get(url string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(s.t, err)
	return s.roundTrip(req)
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
