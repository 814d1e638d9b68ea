package broadcast

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"eventsrv/auth"
	"eventsrv/queue"
)

// Close codes and reasons this server sends. Every close says why, with the
// same words in the log.
const (
	closeNormal        = websocket.CloseNormalClosure    // 1000: the peer closed
	closeGoingAway     = websocket.CloseGoingAway        // 1001: server shutting down
	closePolicy        = websocket.ClosePolicyViolation  // 1008: slow consumer, timeouts
	closeProtocolError = websocket.CloseProtocolError    // 1002: malformed frames
	closeNoStatus      = websocket.CloseNoStatusReceived // 1005: never sent on the wire
	closeTokenExpired  = 4001                            // the credential of the last init expired
	closeTokenRevoked  = 4003                            // the credential was withdrawn, or narrowed below what is subscribed
	closeByAdmin       = 4002                            // an operator closed it (POST /admin/clients/{id}/close)
	closeEventsLost    = 4005                            // cluster mode: the stream dropped events before this instance was fed them

	reasonSlow        = "slow consumer"
	reasonPingTimeout = "ping timeout"
	reasonInitTimeout = "init timeout"
	reasonExpired     = "token expired"
	reasonRevoked     = "token revoked"
	reasonNarrowed    = "permissions changed"
	reasonByAdmin     = "closed by admin"
	reasonEventsLost  = "events lost"
)

// client is one WebSocket subscriber. Its reader (reader.go) owns the
// connection's life and ends it in teardown. Writing is done by the hub's
// flushers or, for a subscriber that cannot take a write at once, by a
// goroutine of its own (writer.go). An idle subscriber on plain TCP has no
// goroutine at all.
type client struct {
	hub    *Hub
	conn   *websocket.Conn
	nc     net.Conn      // the same connection; writes here are serialised by lockedConn
	br     *bufio.Reader // what gorilla reads through, so readers see what it buffered
	remote string

	// subs is the subscription set and perms the permissions of the last
	// successful init; the reader changes them (there is one reader at a
	// time: see reader.go) while it holds authMu, which Hub.Recheck holds
	// to read them and narrow perms.
	authMu sync.Mutex
	subs   map[string]struct{}
	perms  auth.Permissions

	id          uint64
	sse         bool // a Server-Sent Events stream, not a WebSocket
	userAgent   string
	connectedAt time.Time
	subList     atomic.Pointer[[]string]  // copy of subs, for Clients
	sent        atomic.Uint64             // frames written
	initialized atomic.Bool               // an init has succeeded
	expires     atomic.Pointer[time.Time] // when the last init's credential expires; nil: never
	lastRead    atomic.Int64              // UnixNano of the last frame read after init
	fd          int                       // the socket, for the poller; -1 when not polled
	reading     atomic.Bool               // a reader is running (see readReady)
	tornDown    atomic.Bool

	// raw is nc when it can be written without blocking (plain TCP), so
	// that flushers may write it; nil otherwise (TLS).
	raw *lockedConn

	// worker is the connection as a taker of tasks from work queues, once
	// it has sent a work message (or opened GET /queue/{name}/wait); the
	// reader sets it under authMu.
	worker *queue.Worker
	// workQueues are the queues it works on, for Hub.Recheck; under
	// authMu.
	workQueues []string

	// stamp is the hub's stamp of the last event queued to c through a
	// topic that shared the event with another (see Hub.fanout); under
	// the hub's pubMu.
	stamp uint64

	mu     sync.Mutex
	queue  [][]byte // frames waiting for the writer, oldest first
	queued int      // bytes in queue
	// grace is what addReplay queued beyond the bound: a replay is as
	// large as the history the subscriber missed, and live events that
	// follow it get the whole bound. It ends when a writer takes the queue.
	grace int
	// queuedSince is when the oldest queued frame was queued, for the
	// write-wait metric.
	queuedSince time.Time
	// scheduled is set while a writer owns the client: it is on the hub's
	// ready list, being flushed, or being written by its own goroutine.
	// Exactly one writer at a time.
	scheduled bool
	closing   bool      // the close frame is queued or sent; nothing more is queued
	draining  bool      // the close frame follows what was queued (see drain)
	reason    string    // why closing began
	closedAt  time.Time // when closing began
	closeSent time.Time // when the close frame was written (see sweep)
	aborted   bool      // abort has been called

	batch      [][]byte      // the writer's current frames; writer only
	writerDone chan struct{} // closed when the writer has finished for good
}

func newClient(h *Hub, conn *websocket.Conn, nc net.Conn, br *bufio.Reader, remote string) *client {
	return &client{
		hub:         h,
		conn:        conn,
		nc:          nc,
		br:          br,
		remote:      remote,
		subs:        make(map[string]struct{}),
		connectedAt: time.Now(),
		fd:          -1,
		writerDone:  make(chan struct{}),
	}
}

// enqueue adds a frame for the writer and schedules one if none owns the
// client. It never blocks on the network: when the queue bound would be
// passed, the subscriber is cut off instead.
func (c *client) enqueue(f []byte) {
	if c.add(f) {
		c.hub.schedule(c)
	}
}

// add queues f and reports whether the caller must schedule a writer.
func (c *client) add(f []byte) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	if c.queued+len(f) > c.hub.opts.QueueMaxBytes+c.grace {
		queued := c.queued
		schedule := c.startCloseLocked(closePolicy, reasonSlow)
		c.mu.Unlock()
		c.hub.opts.Log.Warn("subscriber cut off", "remote", c.remote, "reason", reasonSlow, "queued_bytes", queued)
		return schedule
	}
	if len(c.queue) == 0 {
		c.queuedSince = time.Now()
	}
	c.queue = append(c.queue, f)
	c.queued += len(f)
	schedule := !c.scheduled
	c.scheduled = true
	c.mu.Unlock()
	return schedule
}

// addReplay queues the frames of a subscription, a resume's replay
// included, outside the queue bound (see grace).
func (c *client) addReplay(frames [][]byte) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if len(c.queue) == 0 {
		c.queuedSince = time.Now()
	}
	for _, f := range frames {
		c.queue = append(c.queue, f)
		c.queued += len(f)
		c.grace += len(f)
	}
	schedule := !c.scheduled
	c.scheduled = true
	c.mu.Unlock()
	if schedule {
		c.hub.schedule(c)
	}
}

// close begins the closing handshake with code and reason, unless it has
// begun already. Whatever is still queued is dropped.
func (c *client) close(code int, reason string) {
	c.mu.Lock()
	schedule := c.startCloseLocked(code, reason)
	c.mu.Unlock()
	if schedule {
		c.hub.schedule(c)
	}
}

// drain begins the closing handshake after everything already queued:
// the subscriber receives every event queued before the close frame. The
// hub closes this way when it shuts down, so that no event that was
// answered OK is lost to a subscriber that stays connected.
func (c *client) drain(code int, reason string) {
	c.mu.Lock()
	schedule := false
	if !c.closing {
		c.draining = true
		schedule = c.startCloseLocked(code, reason)
	}
	c.mu.Unlock()
	if schedule {
		c.hub.schedule(c)
	}
}

// startCloseLocked queues a close frame and reports whether the caller
// must schedule a writer. Unless the client is draining, the close frame
// replaces whatever was queued.
func (c *client) startCloseLocked(code int, reason string) bool {
	if c.closing {
		return false
	}
	c.closing = true
	c.reason = reason
	c.closedAt = time.Now()
	if !c.draining {
		clear(c.queue) // let the dropped frames be collected
		c.queue = c.queue[:0]
		c.queued, c.grace = 0, 0
	}
	if code != closeNoStatus {
		if c.sse {
			c.queue = append(c.queue, sseComment("close "+reason))
		} else {
			c.queue = append(c.queue, closeFrame(code, reason))
		}
		if len(c.queue) == 1 {
			c.queuedSince = c.closedAt
		}
	}
	schedule := !c.scheduled
	c.scheduled = true
	return schedule
}

// abort cuts the connection: the reader sees end of stream and tears the
// subscriber down. It shuts the socket down rather than closing it, so that
// the file descriptor stays valid (and registered with the poller, which
// reports the end of stream) until teardown closes it.
func (c *client) abort() {
	if c.raw != nil {
		_ = c.raw.rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
		return
	}
	_ = c.nc.Close()
}

// leaveWork gives back the tasks a worker held, at its teardown: its open
// offers count as refused, its assigned tasks that needed completion go
// back to their queues.
func (c *client) leaveWork() {
	c.authMu.Lock()
	w := c.worker
	c.authMu.Unlock()
	if w != nil {
		c.hub.opts.Queues.Leave(w)
	}
}
