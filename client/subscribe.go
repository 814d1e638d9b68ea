package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Event is one delivered event.
type Event struct {
	ID   string          // the server's ID: opaque, increasing; give it to Since to resume from here
	Name string          // the event's name
	Data json.RawMessage // the data as the publisher sent it, byte for byte ("null" when it sent none)
}

// State is where a Subscription's connection is.
type State int32

const (
	// Connecting: the first connection is being made.
	Connecting State = iota
	// Connected: subscribed; events flow.
	Connected
	// Reconnecting: the connection was lost; the next attempt waits its
	// backoff.
	Reconnecting
	// Closed: the subscription ended (Close, its context, or an error
	// after which reconnecting cannot help).
	Closed
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Reconnecting:
		return "reconnecting"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// StateChange is what the OnStateChange callback is told.
type StateChange struct {
	State State
	// Err is why: for Reconnecting, what ended the connection or made the
	// attempt fail (a *CloseError with the server's code and reason, a
	// network error); for Closed, the error that ended the subscription,
	// nil when Close or the context ended it.
	Err error
	// Delay is, for Reconnecting, the wait before the next attempt.
	Delay time.Duration
	// Attempt is, for Reconnecting, the number of attempts since the last
	// connection (1 for the first retry).
	Attempt int
	// URL is the broadcast server's URL.
	URL string
}

// SubscribeOption configures a Subscription.
type SubscribeOption func(*subConfig)

type subConfig struct {
	since   string
	onState func(StateChange)
	backoff backoff
	buffer  int
	idle    time.Duration
	wait    bool
}

// Since starts the subscription after the event with this ID (from
// Event.ID or Subscription.LastID, perhaps saved by an earlier run):
// the server first replays the kept events after it. When it cannot
// replay all of them, the first thing yielded is ErrReset.
func Since(id string) SubscribeOption { return func(c *subConfig) { c.since = id } }

// OnStateChange calls f at every change of State (Connected, Reconnecting
// at each attempt, Closed), from the subscription's goroutine: f must
// return quickly. A first connection that fails is not reported: Subscribe
// returns its error.
func OnStateChange(f func(StateChange)) SubscribeOption {
	return func(c *subConfig) { c.onState = f }
}

// ReconnectBackoff sets the reconnect policy: before attempt n (0 for the
// first after a loss), a random wait in [0, min(max, base·2ⁿ)). The
// defaults, 1 s and 30 s, spread a thousand clients that lose one server
// over the first second, about a hundred in any 100 ms.
func ReconnectBackoff(base, max time.Duration) SubscribeOption {
	return func(c *subConfig) { c.backoff = backoff{base, max} }
}

// BufferSize sets how many received events may wait for the loop over
// Events (default 1024). When it is full the subscription stops reading,
// and the server, whose queue for it then fills, eventually closes the
// connection as a slow consumer: the subscription reconnects and resumes
// from the last event it read, losing nothing the server still keeps.
func BufferSize(n int) SubscribeOption { return func(c *subConfig) { c.buffer = max(n, 1) } }

// IdleTimeout is how long a connection may receive nothing, not even the
// server's pings (every PING_INTERVAL, 25 s by default), before it is
// taken for dead and replaced (default 75 s).
func IdleTimeout(d time.Duration) SubscribeOption { return func(c *subConfig) { c.idle = d } }

// WaitForServer makes Subscribe retry a first connection that fails for a
// network reason or with a 5xx (with the reconnect backoff, until ctx
// ends) instead of returning the error: for a program that may start
// before the server.
func WaitForServer() SubscribeOption { return func(c *subConfig) { c.wait = true } }

// Subscription is a live subscription: it reconnects by itself when its
// connection is lost, resumes from the last event it received, and yields
// every event once, in the server's order. Its methods are safe for
// concurrent use; Events is meant for one loop.
//
// After a lost connection it waits a random backoff (ReconnectBackoff),
// then sends an init with "since" set to the last ID, by the README's
// rule: the ID of each event as it arrives, and the position of the
// server's reply once the replayed events it announced have all arrived.
// It does not reconnect after an error that reconnecting cannot fix, or
// that asks it to go: a refused init (UNAUTHENTICATED, FORBIDDEN, …), a
// close with 4003 token revoked, 4002 closed by admin, 4001 token expired
// without a way to refresh the JWT, a protocol error (1002, 1003, 1007,
// 1009, 1010), or an upgrade answered 4xx. It reconnects after everything
// else: 1001 going away, 1008, 4003 permissions changed (the new init says
// whether the names are still allowed), 4005 events lost, network errors
// and 5xx.
type Subscription struct {
	c      *Client
	cfg    subConfig
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned
	wg     sync.WaitGroup

	state atomic.Int32

	mu        sync.Mutex
	names     []string // what the subscription is subscribed to
	last      string   // the since of the next resume (see the type's doc)
	conn      *conn    // the live connection; nil while there is none
	connReady chan struct{}
	items     []item
	ended     bool  // run has returned; items holds what is left
	err       error // why it ended
	byCaller  bool  // ended by Close or the context

	itemReady chan struct{} // cap 1: items has something
	room      chan struct{} // cap 1: the reader may go on
}

// item is one thing Events yields.
type item struct {
	ev  Event
	err error
}

// Subscribe subscribes to events (exact names, or patterns ending in "*"
// where the server has them) and returns once the server has answered the
// first init: with the subscription, or with the error (an *Error for a
// refusal, ErrUnreachable for a server that could not be reached). ctx
// bounds the whole subscription, as Close does.
func (c *Client) Subscribe(ctx context.Context, events []string, opts ...SubscribeOption) (*Subscription, error) {
	cfg := subConfig{
		backoff: backoff{defaultReconnectBase, defaultReconnectMax},
		buffer:  defaultBuffer,
		idle:    defaultIdleTimeout,
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Subscription{
		c: c, cfg: cfg, ctx: ctx, cancel: cancel,
		done:      make(chan struct{}),
		names:     dedupe(events),
		last:      cfg.since,
		connReady: make(chan struct{}),
		itemReady: make(chan struct{}, 1),
		room:      make(chan struct{}, 1),
	}
	s.state.Store(int32(Connecting))
	var first *conn
	for attempt := 0; ; attempt++ {
		cn, err := s.connect()
		if err == nil {
			first = cn
			break
		}
		if !cfg.wait || !waitable(err) || !sleep(ctx, cfg.backoff.delay(attempt)) {
			if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
			}
			cancel()
			return nil, fmt.Errorf("eventsrv: subscribe %q: %w", events, err)
		}
	}
	s.state.Store(int32(Connected)) // run tells the callback
	s.wg.Go(func() { s.run(first) })
	go func() {
		s.wg.Wait()
		close(s.done)
	}()
	return s, nil
}

// waitable reports whether WaitForServer waits through a first
// connection's failure: a network error, or a proxy's 5xx while the
// server is down.
func waitable(err error) bool {
	var e *Error
	return errors.Is(err, ErrUnreachable) || (errors.As(err, &e) && e.Status >= 500)
}

// Events yields the subscription's events in order. An error is yielded
// in two cases: ErrReset, which is not an end (reload your state from its
// source; the events after it go on), and, last, the error that ended the
// subscription. The loop also ends, with nothing more, when Close or the
// subscription's context ends it; Err then says which. Breaking out of the
// loop does not end the subscription: call Close.
//
// Why an iterator and not a channel: a reset must reach you in order with
// the events (before the replay that follows it, so that you can drop
// stale state first), and so must the final error; one sequence of
// (Event, error) keeps that order with no second channel to select on,
// and a range loop reads as what it is. Wrap it in a goroutine that sends
// to a channel if you need select.
func (s *Subscription) Events() iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for {
			it, ok := s.next()
			if !ok || !yield(it.ev, it.err) {
				return
			}
		}
	}
}

// next waits for the next item; false when there is none and will be
// none.
func (s *Subscription) next() (item, bool) {
	for {
		s.mu.Lock()
		if s.byCaller && s.ended {
			s.mu.Unlock()
			return item{}, false
		}
		if len(s.items) > 0 {
			it := s.items[0]
			s.items[0] = item{}
			s.items = s.items[1:]
			s.mu.Unlock()
			signal(s.room)
			return it, true
		}
		ended := s.ended
		s.mu.Unlock()
		if ended {
			return item{}, false
		}
		select {
		case <-s.itemReady:
		case <-s.done:
		}
	}
}

// State is the connection's state now.
func (s *Subscription) State() State { return State(s.state.Load()) }

// LastID is the position the subscription would resume from now (see
// the type's doc): save it, and give it to Since to continue after a
// restart of your program.
func (s *Subscription) LastID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Names is what the subscription is subscribed to.
func (s *Subscription) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.names)
}

// Err is why the subscription ended: nil while it runs and after Close,
// the context's error when the context ended it, otherwise the error
// Events yielded last.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription, closing its connection with 1000, and
// waits for its goroutines. Events then yields nothing more.
func (s *Subscription) Close() error {
	s.mu.Lock()
	s.byCaller = true
	s.mu.Unlock()
	s.cancel()
	<-s.done
	return nil
}

// Subscribe adds events to the subscription at run time: their events
// published after the server's reply are delivered (and kept across
// reconnects). It waits for a connection if there is none, and returns
// the server's refusal as an *Error (FORBIDDEN, …), which changes nothing.
func (s *Subscription) Subscribe(ctx context.Context, events ...string) error {
	for {
		cn, err := s.live(ctx)
		if err != nil {
			return err
		}
		// since "" makes the reply say where the new names start, which
		// becomes the last ID (no older event of them is replayed).
		msg, _ := json.Marshal(struct {
			Type   string   `json:"type"`
			Events []string `json:"events"`
			Since  string   `json:"since"`
		}{"subscribe", nonNil(events), ""})
		err = cn.request(ctx, &request{kind: "subscribe", names: events}, msg)
		if errors.Is(err, errConnLost) {
			continue // answered or not, the next connection lacks them
		}
		if err != nil {
			return fmt.Errorf("eventsrv: subscribe %q: %w", events, err)
		}
		return nil
	}
}

// Unsubscribe removes events from the subscription. No event of those
// names published after it returns is yielded (events of them already
// on their way may still be). Without a connection it only removes them
// from what the next connection subscribes to.
func (s *Subscription) Unsubscribe(ctx context.Context, events ...string) error {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return ErrClosed
	}
	s.names = slices.DeleteFunc(s.names, func(n string) bool { return slices.Contains(events, n) })
	cn := s.conn
	s.mu.Unlock()
	if cn == nil {
		return nil
	}
	msg, _ := json.Marshal(struct {
		Type   string   `json:"type"`
		Events []string `json:"events"`
	}{"unsubscribe", nonNil(events)})
	err := cn.request(ctx, &request{kind: "unsubscribe", names: events}, msg)
	if errors.Is(err, errConnLost) {
		return nil // the next connection subscribes without them
	}
	if err != nil {
		return fmt.Errorf("eventsrv: unsubscribe %q: %w", events, err)
	}
	return nil
}

// live returns the live connection, waiting for one.
func (s *Subscription) live(ctx context.Context) (*conn, error) {
	for {
		s.mu.Lock()
		cn, ready, ended := s.conn, s.connReady, s.ended
		s.mu.Unlock()
		switch {
		case ended:
			return nil, ErrClosed
		case cn != nil:
			return cn, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// errConnLost fails the requests of a connection that ended.
var errConnLost = errors.New("connection lost")

// errProtocol is a message from the server that does not fit the protocol.
var errProtocol = errors.New("unexpected message from the server")

// conn is one WebSocket connection of a subscription.
type conn struct {
	ws     *websocket.Conn
	wake   chan struct{} // the subscription's room: a blocked reader rechecks awaiting
	stop   func() bool   // stops closing the connection when the context ends
	closed chan struct{} // closed once that close, when it ran, is done

	writeMu sync.Mutex // one writer at a time
	mu      sync.Mutex
	pending []*request // sent, awaiting their replies, in order
	dead    bool
	auth    string // the token its last successful init used
	fatal   error  // set before ws is closed by a refused refresh: ends the subscription

	lost chan struct{} // closed when the connection has ended

	// position and replay are the last reply's: the ID the subscription
	// continues from and how many replayed events are still to come.
	// Only the reader touches them.
	position string
	replay   int
}

// request is a message that awaits its reply.
type request struct {
	kind  string   // init, subscribe, unsubscribe: the reply's type
	names []string // of a subscribe or unsubscribe
	done  chan error
}

// request sends msg and waits for its reply: nil for OK, the refusal as
// an *Error, errConnLost when the connection ended first.
func (cn *conn) request(ctx context.Context, r *request, msg []byte) error {
	r.done = make(chan error, 1)
	if err := cn.send(r, msg); err != nil {
		return err
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// send writes msg, registering r (when not nil) for its reply first, so
// that replies match requests in order.
func (cn *conn) send(r *request, msg []byte) error {
	cn.writeMu.Lock()
	defer cn.writeMu.Unlock()
	if r != nil {
		cn.mu.Lock()
		if cn.dead {
			cn.mu.Unlock()
			return errConnLost
		}
		cn.pending = append(cn.pending, r)
		cn.mu.Unlock()
		signal(cn.wake)
	}
	_ = cn.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := cn.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		cn.ws.Close() // the reader ends, and fails r
		return errConnLost
	}
	return nil
}

// awaiting reports whether a reply is awaited: the reader then reads on
// past a full buffer, since the reply may be behind events (the server's
// queue bounds how many).
func (cn *conn) awaiting() bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return len(cn.pending) > 0
}

// token is the token the connection's last successful init used.
func (cn *conn) token() string {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.auth
}

// stopClosing stops the close on the context's end, or waits for it to
// be done if it began: Close returns only when no goroutine is left.
func (cn *conn) stopClosing() {
	if !cn.stop() {
		<-cn.closed
	}
}

// end fails the pending requests; the connection takes no more.
func (cn *conn) end() {
	cn.stopClosing()
	cn.ws.Close()
	cn.mu.Lock()
	cn.dead = true
	pending := cn.pending
	cn.pending = nil
	cn.mu.Unlock()
	for _, r := range pending {
		r.done <- errConnLost
	}
	close(cn.lost)
}

// reply is a reply from the server; the fields of an event frame too.
type reply struct {
	Type      string          `json:"type"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	ID        string          `json:"id"`
	Recovered *bool           `json:"recovered"`
	Replayed  int             `json:"replayed"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
}

// connect dials, sends the init with the subscription's names and last
// ID, and reads the server's reply. On success the returned connection is
// not yet the subscription's (see start).
func (s *Subscription) connect() (*conn, error) {
	return s.connectWith("")
}

// connectWith is connect, with stale a token the server refused as
// expired, which must be replaced first.
func (s *Subscription) connectWith(stale string) (*conn, error) {
	ctx := s.ctx
	auth, err := s.c.creds.current(ctx, stale)
	if err != nil {
		return nil, err
	}
	d := websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: handshakeTimeout,
		TLSClientConfig:  s.c.tls,
	}
	hdr := http.Header{"User-Agent": {s.c.userAgent}}
	ws, resp, err := d.DialContext(ctx, s.c.broadcastURL, hdr)
	if err != nil {
		if resp != nil {
			return nil, upgradeError(resp)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	resp.Body.Close()
	ws.SetReadLimit(maxFrameBytes)
	cn := &conn{ws: ws, auth: auth, wake: s.room, lost: make(chan struct{})}
	// A ping is life: it extends the read deadline, and is answered as
	// gorilla's default handler does.
	ws.SetPingHandler(func(data string) error {
		_ = ws.SetReadDeadline(time.Now().Add(s.cfg.idle))
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeTimeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	cn.closed = make(chan struct{})
	cn.stop = context.AfterFunc(ctx, func() {
		closeGracefully(ws)
		close(cn.closed)
	})
	fail := func(err error) (*conn, error) {
		cn.stopClosing()
		ws.Close()
		return nil, err
	}
	s.mu.Lock()
	names, since := slices.Clone(s.names), s.last
	s.mu.Unlock()
	if auth != "" {
		auth = s.c.creds.scheme + " " + auth
	}
	msg, _ := json.Marshal(struct {
		Authentication string   `json:"authentication"`
		Events         []string `json:"events"`
		Since          string   `json:"since"`
	}{auth, nonNil(names), since})
	_ = ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		return fail(s.readError(err))
	}
	// The reply to the init is the first message the server sends.
	_ = ws.SetReadDeadline(time.Now().Add(s.cfg.idle))
	_, b, err := ws.ReadMessage()
	if err != nil {
		return fail(s.readError(err))
	}
	var r reply
	if err := json.Unmarshal(b, &r); err != nil || r.Type != "init" {
		return fail(fmt.Errorf("%w: %.200s", errProtocol, b))
	}
	if r.Code != "OK" {
		return fail(&Error{Code: r.Code, Message: r.Message})
	}
	if r.ID == "" || r.Recovered == nil {
		return fail(fmt.Errorf("%w: the server does not resume (no id in its reply %.200s): it is older than this client", errProtocol, b))
	}
	cn.position, cn.replay = r.ID, r.Replayed
	s.mu.Lock()
	if !*r.Recovered {
		s.pushLocked(item{err: ErrReset})
	}
	if cn.replay == 0 {
		s.last = cn.position
	}
	// Names unsubscribed while this init was on its way are removed now.
	extra := slices.DeleteFunc(names, func(n string) bool { return slices.Contains(s.names, n) })
	s.conn = cn
	close(s.connReady)
	s.mu.Unlock()
	if len(extra) > 0 {
		msg, _ := json.Marshal(struct {
			Type   string   `json:"type"`
			Events []string `json:"events"`
		}{"unsubscribe", extra})
		_ = cn.send(&request{kind: "unsubscribe", names: extra, done: make(chan error, 1)}, msg)
	}
	return cn, nil
}

// closeGracefully sends a normal close and closes the connection.
func closeGracefully(ws *websocket.Conn) {
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	ws.Close()
}

// upgradeError is the error of an upgrade answered with an HTTP status.
func upgradeError(resp *http.Response) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	var answer struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &answer) != nil {
		answer.Message = string(b[:min(len(b), 200)])
	}
	return &Error{Status: resp.StatusCode, Code: answer.Code, Message: answer.Message, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
}

// readError turns gorilla's read error into the client's: the server's
// close frame as a *CloseError, anything else as a network error.
func (s *Subscription) readError(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return &CloseError{Code: ce.Code, Text: ce.Text}
	}
	if s.ctx.Err() != nil {
		return context.Cause(s.ctx)
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, err)
}

// run reads the connection, then reconnects, until the subscription ends.
func (s *Subscription) run(cn *conn) {
	attempt := 0
	for {
		s.setState(StateChange{State: Connected})
		err := s.read(cn)
		s.mu.Lock()
		s.conn = nil
		s.connReady = make(chan struct{})
		s.mu.Unlock()
		cn.end()
		stale := ""
		for {
			if s.ctx.Err() != nil {
				s.finish(nil)
				return
			}
			if !s.reconnects(err) {
				s.finish(err)
				return
			}
			if errors.Is(err, ErrTokenExpired) {
				stale = cn.token()
			}
			delay := s.cfg.backoff.delay(attempt)
			attempt++
			s.setState(StateChange{State: Reconnecting, Err: err, Delay: delay, Attempt: attempt})
			if !sleep(s.ctx, delay) {
				continue
			}
			next, cerr := s.connectWith(stale)
			if cerr == nil {
				cn, attempt = next, 0
				break
			}
			err = cerr
		}
	}
}

// reconnects reports whether the subscription reconnects after err (see
// the type's doc).
func (s *Subscription) reconnects(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		// A refused init, or an upgrade answered 4xx, is final; an
		// overloaded or restarting server's 5xx, 408 or 429 is not.
		return e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests
	}
	var ce *CloseError
	if errors.As(err, &ce) {
		switch {
		case errors.Is(err, ErrTokenRevoked), errors.Is(err, ErrClosedByAdmin):
			return false
		case errors.Is(err, ErrTokenExpired):
			return s.c.creds.canRefresh()
		}
		switch ce.Code {
		case websocket.CloseProtocolError, websocket.CloseUnsupportedData, websocket.CloseInvalidFramePayloadData,
			websocket.CloseMessageTooBig, websocket.CloseMandatoryExtension:
			return false
		}
		return true
	}
	return true // network errors, refresh failures, a confused peer
}

// read reads the connection until it ends, and returns why.
func (s *Subscription) read(cn *conn) error {
	s.scheduleRefresh(cn)
	for {
		_ = cn.ws.SetReadDeadline(time.Now().Add(s.cfg.idle))
		_, b, err := cn.ws.ReadMessage()
		if err != nil {
			cn.mu.Lock()
			fatal := cn.fatal
			cn.mu.Unlock()
			if fatal != nil {
				return fatal
			}
			return s.readError(err)
		}
		var r reply
		if err := json.Unmarshal(b, &r); err != nil {
			cn.ws.Close()
			return fmt.Errorf("%w: %.200s", errProtocol, b)
		}
		if r.Type == "event" {
			if err := s.deliver(cn, Event{ID: r.ID, Name: r.Event, Data: r.Data}); err != nil {
				return err
			}
			continue
		}
		if err := s.answer(cn, &r); err != nil {
			cn.ws.Close()
			return err
		}
	}
}

// deliver queues ev for Events and moves the last ID on, by the rule:
// each event's ID, then the reply's position when the replay is complete.
func (s *Subscription) deliver(cn *conn, ev Event) error {
	if len(ev.Data) == 0 {
		ev.Data = json.RawMessage("null")
	}
	for {
		s.mu.Lock()
		if len(s.items) < s.cfg.buffer || cn.awaiting() {
			s.pushLocked(item{ev: ev})
			s.last = ev.ID
			if cn.replay > 0 {
				cn.replay--
				if cn.replay == 0 {
					s.last = cn.position
				}
			}
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		select {
		case <-s.room:
		case <-s.ctx.Done():
			return context.Cause(s.ctx)
		}
	}
}

// pushLocked queues it for Events; under mu.
func (s *Subscription) pushLocked(it item) {
	s.items = append(s.items, it)
	signal(s.itemReady)
}

// answer handles the reply to the oldest pending request.
func (s *Subscription) answer(cn *conn, r *reply) error {
	cn.mu.Lock()
	if len(cn.pending) == 0 {
		cn.mu.Unlock()
		return fmt.Errorf("%w: a %q reply to no request", errProtocol, r.Type)
	}
	req := cn.pending[0]
	cn.pending = cn.pending[1:]
	cn.mu.Unlock()
	if r.Type != req.kind {
		if r.Type == "error" && r.Code != "" {
			req.done <- &Error{Code: r.Code, Message: r.Message}
			return nil
		}
		return fmt.Errorf("%w: a %q reply to a %s", errProtocol, r.Type, req.kind)
	}
	if r.Code != "OK" {
		req.done <- &Error{Code: r.Code, Message: r.Message}
		return nil
	}
	s.mu.Lock()
	switch req.kind {
	case "subscribe":
		for _, n := range req.names {
			if !slices.Contains(s.names, n) {
				s.names = append(s.names, n)
			}
		}
		// The subscribe's since "" gives the position where the new names
		// start: every earlier event of the old names has arrived.
		if r.ID != "" && cn.replay == 0 {
			s.last = r.ID
		}
	case "unsubscribe":
		s.names = slices.DeleteFunc(s.names, func(n string) bool { return slices.Contains(req.names, n) })
	}
	s.mu.Unlock()
	req.done <- nil
	return nil
}

// scheduleRefresh arranges for the connection's JWT to be replaced
// before it expires, with a later init on the live connection.
func (s *Subscription) scheduleRefresh(cn *conn) {
	at := s.c.creds.due(cn.token())
	if at.IsZero() {
		return
	}
	s.wg.Go(func() {
		t := time.NewTimer(time.Until(at))
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-cn.lost:
				return
			}
			next, err := s.refresh(cn)
			if err != nil {
				var e *Error
				if errors.As(err, &e) {
					// The server refused the new token: the connection
					// would end with 4001 anyway; end the subscription now.
					cn.mu.Lock()
					cn.fatal = fmt.Errorf("the refreshed JWT was refused: %w", err)
					cn.mu.Unlock()
					closeGracefully(cn.ws)
					return
				}
				// No new token yet: try again soon, until it expires (and
				// the server's 4001 makes the subscription reconnect).
				next = time.Now().Add(min(time.Second, max(time.Until(s.c.creds.expires(cn.token()))/4, 50*time.Millisecond)))
			}
			t.Reset(max(time.Until(next), 50*time.Millisecond))
		}
	})
}

// refresh sends a new JWT on cn as a later init, which replaces the
// connection's credential, and returns when the next one is due.
func (s *Subscription) refresh(cn *conn) (time.Time, error) {
	tok, err := s.c.creds.current(s.ctx, "")
	if err != nil {
		return time.Time{}, err
	}
	if tok == cn.token() {
		return time.Time{}, errors.New("the JWT refresh returned the same token")
	}
	msg, _ := json.Marshal(struct {
		Authentication string   `json:"authentication"`
		Events         []string `json:"events"`
	}{s.c.creds.scheme + " " + tok, []string{}})
	if err := cn.request(s.ctx, &request{kind: "init"}, msg); err != nil {
		return time.Time{}, err
	}
	cn.mu.Lock()
	cn.auth = tok
	cn.mu.Unlock()
	return s.c.creds.due(tok), nil
}

// setState records a state and tells the callback.
func (s *Subscription) setState(sc StateChange) {
	s.state.Store(int32(sc.State))
	if s.cfg.onState != nil {
		sc.URL = s.c.broadcastURL
		s.cfg.onState(sc)
	}
}

// finish ends the subscription with err (nil: by the caller).
func (s *Subscription) finish(err error) {
	// Closed before the last item can be seen: a loop that ended finds it.
	s.state.Store(int32(Closed))
	s.mu.Lock()
	switch {
	case err != nil:
		s.err = err
		s.pushLocked(item{err: err})
	case s.ctx.Err() != nil && !s.byCaller:
		s.err = context.Cause(s.ctx)
		s.byCaller = true
	default:
		s.byCaller = true
	}
	s.ended = true
	s.mu.Unlock()
	s.cancel()
	s.setState(StateChange{State: Closed, Err: err})
}

// signal wakes ch's waiter, if it is not awake already.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// dedupe returns names without repeats, in order.
func dedupe(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// nonNil is names, or an empty list: "events" must be an array.
func nonNil(names []string) []string {
	if names == nil {
		return []string{}
	}
	return names
}
