package main

// The reference server of -versus minimal: the smallest WebSocket relay that
// speaks eventsrv's wire contract as far as this tool uses it, written the
// way gorilla/websocket's chat example is. Issue #16 measures eventsrv's
// latency against it. It runs in a process of its own (this binary, started
// again with serveEnv set), so that it does not share the load tool's
// runtime, as eventsrv does not.
//
// What it does, and nothing more:
//   - POST /event with Authorization: Basic <token> and
//     {"event":<name>,"data":<json>} fans out
//     {"type":"event","id":"<id>","event":<name>,"data":<json>} (data
//     relayed byte for byte) and answers {"code":"OK","id":"<id>"};
//   - POST /events takes a JSON array of such objects and answers
//     {"code":"OK","ids":[...]}, the events fanned out in array order;
//   - a WebSocket at any path takes {"authentication":"Basic <token>",
//     "events":[...]} (more than once adds names) and answers
//     {"type":"init","code":"OK"} before any event;
//   - GET /healthz and /readyz answer 200 on both ports.
//
// Each connection has a reader goroutine and a writer goroutine. The writer
// alone writes messages: it waits for a frame on its channel, then writes
// every frame already queued, each with gorilla's WriteMessage, into a
// buffered connection, and flushes once: one write system call for all the
// frames that were waiting. Every subscriber sees one order because
// publishing queues under one lock; a subscriber whose channel is full is
// closed as a slow consumer (1008), never waited for. No pings, patterns,
// permissions, history or resume: the load tool uses none of them.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// serveEnv, set in this binary's environment, makes it serve instead of
// load-testing: "minimal" serves the reference server on BIND_ADDRESS,
// LISTEN_PORT and BROADCAST_PORT with the first token of TOKENS_FILE (the
// names eventsrv reads). The -versus driver sets it; it is not for people.
const serveEnv = "EVENTSRV_BENCH_SERVE"

// Reference server settings.
const (
	// minimalQueue is the frames one subscriber may have waiting. A
	// fuller channel closes the subscriber as a slow consumer; 1024
	// frames is 1000 subscribers' worth of a 2,000-event burst with room
	// to spare, at 24 KiB of channel per connection.
	minimalQueue = 1024
	// minimalWriteBuffer is the buffered connection's size: what one
	// write system call can carry (about 100 frames of 100 B).
	minimalWriteBuffer = 16 << 10
	// minimalWriteWait bounds one flush, as eventsrv's WRITE_TIMEOUT.
	minimalWriteWait = 10 * time.Second
	// minimalMaxBody bounds a POST body, as eventsrv's MAX_BODY_BYTES.
	minimalMaxBody = 1 << 20
	// minimalMaxMessage bounds a subscriber's message, as eventsrv's
	// MAX_MESSAGE_BYTES.
	minimalMaxMessage = 64 << 10
	// minimalHeaderTimeout is eventsrv's READ_HEADER_TIMEOUT.
	minimalHeaderTimeout = 5 * time.Second
	// minimalShutdown bounds the stop after SIGTERM.
	minimalShutdown = 5 * time.Second
)

// The frames and answers the reference server writes, byte for byte as
// eventsrv writes them.
var (
	minimalInitOK = []byte(`{"type":"init","code":"OK"}`)
	minimalHealth = []byte("{\"status\":\"ok\"}\n")
)

// serveMinimal runs the reference server until SIGTERM or SIGINT, from the
// environment (see serveEnv), and returns the exit status.
func serveMinimal(getenv func(string) string, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	token, err := readTokenFile(getenv("TOKENS_FILE"))
	if err != nil {
		fmt.Fprintln(stderr, "minimal: TOKENS_FILE:", err)
		return 1
	}
	bind := getenv("BIND_ADDRESS")
	listenLn, err := net.Listen("tcp", net.JoinHostPort(bind, getenv("LISTEN_PORT")))
	if err != nil {
		fmt.Fprintln(stderr, "minimal: listen server:", err)
		return 1
	}
	broadcastLn, err := net.Listen("tcp", net.JoinHostPort(bind, getenv("BROADCAST_PORT")))
	if err != nil {
		listenLn.Close()
		fmt.Fprintln(stderr, "minimal: broadcast server:", err)
		return 1
	}
	m := newMinimal(token)
	servers := []*http.Server{
		{Handler: m.listenHandler(), ReadHeaderTimeout: minimalHeaderTimeout},
		{Handler: m.broadcastHandler(), ReadHeaderTimeout: minimalHeaderTimeout},
	}
	servers[1].RegisterOnShutdown(m.closeAll)
	errs := make(chan error, 2)
	for i, ln := range []net.Listener{listenLn, broadcastLn} {
		go func() { errs <- servers[i].Serve(ln) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errs:
		fmt.Fprintln(stderr, "minimal:", err)
		return 1
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), minimalShutdown)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdownCtx) // the connections are cut either way
	}
	m.wait(shutdownCtx)
	return 0
}

// minimal is the reference server's state: the subscribers by event name,
// under one lock that publishing holds while it queues, so every
// subscriber sees one order.
type minimal struct {
	auth     string // "Basic <token>"
	idPrefix []byte // "<start ms>-", so that IDs look like eventsrv's
	conns    sync.WaitGroup

	mu      sync.Mutex
	seq     uint64
	clients map[*minimalClient]struct{}
	byName  map[string]map[*minimalClient]struct{}
}

// minimalClient is one subscriber. send is closed exactly once, by drop,
// under the server's lock; every send to it happens under that lock too.
type minimalClient struct {
	ws     *websocket.Conn
	out    *flushConn
	send   chan []byte
	names  []string
	closed bool   // dropped: no more sends
	reason string // why the server dropped it; "" when the peer left
}

func newMinimal(token string) *minimal {
	return &minimal{
		auth:     "Basic " + token,
		idPrefix: strconv.AppendInt(nil, time.Now().UnixMilli(), 10),
		clients:  make(map[*minimalClient]struct{}),
		byName:   make(map[string]map[*minimalClient]struct{}),
	}
}

// minimalEvent is one event of a POST body.
type minimalEvent struct {
	Event *string         `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// listenHandler serves POST /event, POST /events and the health checks.
func (m *minimal) listenHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", serveHealth)
	mux.HandleFunc("GET /readyz", serveHealth)
	mux.HandleFunc("POST /event", func(w http.ResponseWriter, r *http.Request) {
		var ev minimalEvent
		if !m.readBody(w, r, &ev) {
			return
		}
		if !validEvent(ev) {
			minimalAnswer(w, http.StatusBadRequest, []byte(`{"code":"INVALID_BODY"}`))
			return
		}
		ids := m.publish([]minimalEvent{ev})
		minimalAnswer(w, http.StatusOK, fmt.Appendf(nil, `{"code":"OK","id":"%s"}`, ids[0]))
	})
	mux.HandleFunc("POST /events", func(w http.ResponseWriter, r *http.Request) {
		var evs []minimalEvent
		if !m.readBody(w, r, &evs) {
			return
		}
		if len(evs) == 0 {
			minimalAnswer(w, http.StatusBadRequest, []byte(`{"code":"INVALID_BODY"}`))
			return
		}
		for _, ev := range evs {
			if !validEvent(ev) {
				minimalAnswer(w, http.StatusBadRequest, []byte(`{"code":"INVALID_BODY"}`))
				return
			}
		}
		ids := m.publish(evs)
		answer, _ := json.Marshal(struct {
			Code string   `json:"code"`
			IDs  []string `json:"ids"`
		}{"OK", ids})
		minimalAnswer(w, http.StatusOK, answer)
	})
	return mux
}

// readBody checks the token and decodes the body into v, answering the
// request itself when either fails.
func (m *minimal) readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.Header.Get("Authorization") != m.auth {
		minimalAnswer(w, http.StatusForbidden, []byte(`{"code":"UNAUTHENTICATED"}`))
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, minimalMaxBody))
	if err != nil {
		minimalAnswer(w, http.StatusRequestEntityTooLarge, []byte(`{"code":"PAYLOAD_TOO_LARGE"}`))
		return false
	}
	if json.Unmarshal(body, v) != nil {
		minimalAnswer(w, http.StatusBadRequest, []byte(`{"code":"INVALID_BODY"}`))
		return false
	}
	return true
}

// validEvent requires a non-empty event name; absent data is relayed as
// null, as eventsrv relays it.
func validEvent(ev minimalEvent) bool { return ev.Event != nil && *ev.Event != "" }

func serveHealth(w http.ResponseWriter, _ *http.Request) {
	minimalAnswer(w, http.StatusOK, minimalHealth[:len(minimalHealth)-1])
}

// minimalAnswer writes a JSON answer with a final newline, as eventsrv does.
func minimalAnswer(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// publish gives each event an ID, queues its frame to every subscriber of
// its name, and returns the IDs. It never blocks on a subscriber.
func (m *minimal) publish(evs []minimalEvent) []string {
	ids := make([]string, len(evs))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, ev := range evs {
		m.seq++
		id := strconv.AppendUint(append(append([]byte(nil), m.idPrefix...), '-'), m.seq, 10)
		ids[i] = string(id)
		frame := eventFrameJSON(id, *ev.Event, ev.Data)
		for c := range m.byName[*ev.Event] {
			select {
			case c.send <- frame:
			default:
				m.dropLocked(c, "slow consumer")
			}
		}
	}
	return ids
}

// eventFrameJSON is eventsrv's event frame,
// {"type":"event","id":"<id>","event":<name>,"data":<data>}, with data
// copied as it came and absent data as null.
func eventFrameJSON(id []byte, name string, data json.RawMessage) []byte {
	if data == nil {
		data = json.RawMessage("null")
	}
	b := make([]byte, 0, 48+len(id)+len(name)+len(data))
	b = append(b, `{"type":"event","id":"`...)
	b = append(b, id...)
	b = append(b, `","event":`...)
	b = appendName(b, name)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return append(b, '}')
}

// appendName appends name as a JSON string, without encoding/json's
// escaping of <, > and &, which eventsrv does not do either.
func appendName(b []byte, name string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(name) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// broadcastHandler serves the WebSocket subscribers at any path, and the
// health checks.
func (m *minimal) broadcastHandler() http.Handler {
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			serveHealth(w, r)
			return
		}
		hw := &hijackBuffered{ResponseWriter: w}
		ws, err := upgrader.Upgrade(hw, r, nil)
		if err != nil {
			return // Upgrade has answered
		}
		// The 101 answer sits in the buffer until this flush.
		if hw.conn.Flush() != nil {
			ws.Close()
			return
		}
		m.serveConn(ws, hw.conn)
	})
}

// serveConn runs one subscriber: this goroutine reads, a second one writes.
func (m *minimal) serveConn(ws *websocket.Conn, out *flushConn) {
	m.conns.Add(1)
	defer m.conns.Done()
	c := &minimalClient{ws: ws, out: out, send: make(chan []byte, minimalQueue)}
	m.mu.Lock()
	m.clients[c] = struct{}{}
	m.mu.Unlock()
	// The handlers write control frames from this goroutine; they must
	// reach the peer now, not with the writer's next flush.
	ws.SetCloseHandler(func(code int, _ string) error {
		msg := websocket.FormatCloseMessage(code, "")
		if code == websocket.CloseNoStatusReceived {
			msg = websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		}
		_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(minimalWriteWait))
		_ = out.Flush()
		return nil
	})
	ws.SetPingHandler(func(data string) error {
		_ = ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(minimalWriteWait))
		_ = out.Flush()
		return nil
	})
	ws.SetReadLimit(minimalMaxMessage)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	m.readLoop(c)
	m.mu.Lock()
	m.dropLocked(c, "")
	m.mu.Unlock()
	<-writerDone
	ws.Close()
}

// readLoop reads the subscriber's messages until its connection ends.
func (m *minimal) readLoop(c *minimalClient) {
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var init struct {
			Type           *string  `json:"type"`
			Authentication string   `json:"authentication"`
			Events         []string `json:"events"`
		}
		switch {
		case json.Unmarshal(msg, &init) != nil:
			m.reply(c, []byte(`{"type":"init","code":"INVALID_SYNTAX"}`), nil)
		case init.Type != nil && *init.Type != "init":
			m.reply(c, []byte(`{"type":"error","code":"INVALID_TYPE"}`), nil)
		case init.Events == nil:
			m.reply(c, []byte(`{"type":"init","code":"INVALID_EVENTS_MISSING"}`), nil)
		case init.Authentication != m.auth:
			m.reply(c, []byte(`{"type":"init","code":"UNAUTHENTICATED"}`), nil)
		default:
			m.reply(c, minimalInitOK, init.Events)
		}
	}
}

// reply queues frame to c and subscribes it to names, under the lock that
// publishing holds: an init's OK precedes every event published after it.
func (m *minimal) reply(c *minimalClient, frame []byte, names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.closed {
		return
	}
	for _, name := range names {
		subs := m.byName[name]
		if subs == nil {
			subs = make(map[*minimalClient]struct{})
			m.byName[name] = subs
		}
		if _, ok := subs[c]; !ok {
			subs[c] = struct{}{}
			c.names = append(c.names, name)
		}
	}
	select {
	case c.send <- frame:
	default:
		m.dropLocked(c, "slow consumer")
	}
}

// dropLocked removes c and closes its queue, once; the writer then sends
// what was queued and, when the server dropped it, a close frame saying why.
func (m *minimal) dropLocked(c *minimalClient, reason string) {
	if c.closed {
		return
	}
	c.closed, c.reason = true, reason
	for _, name := range c.names {
		delete(m.byName[name], c)
		if len(m.byName[name]) == 0 {
			delete(m.byName, name)
		}
	}
	delete(m.clients, c)
	close(c.send)
}

// closeAll drops every subscriber, for shutdown.
func (m *minimal) closeAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for c := range m.clients {
		m.dropLocked(c, "going away")
	}
}

// wait waits for every connection to end, or for ctx to.
func (m *minimal) wait(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		m.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// writeLoop does every message write: it takes one frame, then every frame
// already queued, and flushes them in one write. After a failed write it
// closes the connection (which ends the reader) and drains the queue.
func (c *minimalClient) writeLoop() {
	for frame := range c.send {
		err := c.ws.WriteMessage(websocket.TextMessage, frame)
		for more := true; more && err == nil; {
			select {
			case next, ok := <-c.send:
				if !ok {
					more = false
					break
				}
				err = c.ws.WriteMessage(websocket.TextMessage, next)
			default:
				more = false
			}
		}
		if err == nil {
			err = c.out.Flush()
		}
		if err != nil {
			c.ws.Close()
			for range c.send {
			}
			return
		}
	}
	// The queue was closed: by the reader's end, or by the server, which
	// says why.
	if c.reason != "" {
		code := websocket.ClosePolicyViolation
		if c.reason == "going away" {
			code = websocket.CloseGoingAway
		}
		msg := websocket.FormatCloseMessage(code, c.reason)
		if c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(minimalWriteWait)) == nil {
			_ = c.out.Flush()
		}
		c.ws.Close()
	}
}

// flushConn is a connection whose writes are buffered until Flush, so that
// several WebSocket frames leave in one write system call. gorilla writes
// through it from the writer goroutine and, for control frames, from the
// reader's handlers (gorilla serializes those writes itself); the lock
// keeps Flush from racing either.
type flushConn struct {
	net.Conn
	mu     sync.Mutex
	w      *bufio.Writer
	writes atomic.Int64 // writes to the connection: the tests count them
}

func newFlushConn(conn net.Conn) *flushConn {
	c := &flushConn{Conn: conn}
	c.w = bufio.NewWriterSize(countingWriter{conn, &c.writes}, minimalWriteBuffer)
	return c
}

// countingWriter counts the writes that reach w.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.w.Write(p)
}

func (c *flushConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(p)
}

// Flush writes what is buffered, within minimalWriteWait.
func (c *flushConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w.Buffered() == 0 {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(time.Now().Add(minimalWriteWait)); err != nil {
		return err
	}
	return c.w.Flush()
}

// hijackBuffered hands gorilla's Upgrader a flushConn instead of the bare
// connection when it hijacks, which is how a gorilla server gets a
// bufio-backed connection under its frames.
type hijackBuffered struct {
	http.ResponseWriter
	conn *flushConn
}

func (h *hijackBuffered) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = newFlushConn(conn)
	return h.conn, brw, nil
}
