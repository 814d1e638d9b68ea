package broadcast

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Close codes and reasons this server sends. Every close says why, with the
// same words in the log.
const (
	closeNormal        = websocket.CloseNormalClosure    // 1000: the peer closed
	closeGoingAway     = websocket.CloseGoingAway        // 1001: server shutting down
	closePolicy        = websocket.ClosePolicyViolation  // 1008: slow consumer, timeouts
	closeProtocolError = websocket.CloseProtocolError    // 1002: malformed frames
	closeNoStatus      = websocket.CloseNoStatusReceived // 1005: never sent on the wire

	reasonSlow        = "slow consumer"
	reasonPingTimeout = "ping timeout"
	reasonInitTimeout = "init timeout"
)

// closeGrace bounds the wait for the peer's side of the closing handshake
// after our close frame, so that a silent peer cannot hold a connection.
const closeGrace = time.Second

// client is one WebSocket subscriber. Its reader goroutine (run) owns the
// connection's life. Writing is done by the hub's flushers or, for a
// subscriber that cannot take a write at once, by a goroutine of its own
// (see writer.go): an idle subscriber costs one goroutine.
type client struct {
	hub    *Hub
	conn   *websocket.Conn
	nc     net.Conn      // the same connection; writes here are serialised by lockedConn
	br     *bufio.Reader // what gorilla reads through; nil if unknown
	remote string

	// subs is the subscription set; only the reader goroutine touches it.
	subs map[string]struct{}

	// raw is nc when it can be written without blocking (plain TCP), so
	// that flushers may write it; nil otherwise (TLS).
	raw *lockedConn

	mu     sync.Mutex
	queue  [][]byte // frames waiting for the writer, oldest first
	queued int      // bytes in queue
	// scheduled is set while a writer owns the client: it is on the hub's
	// ready list, being flushed, or being written by its own goroutine.
	// Exactly one writer at a time.
	scheduled bool
	closing   bool   // the close frame is queued or sent; nothing more is queued
	reason    string // why closing began

	batch      [][]byte      // the writer's current frames; writer only
	writerDone chan struct{} // closed when the writer has finished for good
}

func newClient(h *Hub, conn *websocket.Conn, nc net.Conn, br *bufio.Reader, remote string) *client {
	return &client{
		hub:        h,
		conn:       conn,
		nc:         nc,
		br:         br,
		remote:     remote,
		subs:       make(map[string]struct{}),
		writerDone: make(chan struct{}),
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
	if c.queued+len(f) > c.hub.opts.QueueMaxBytes {
		queued := c.queued
		schedule := c.startCloseLocked(closePolicy, reasonSlow)
		c.mu.Unlock()
		c.hub.opts.Log.Warn("subscriber cut off", "remote", c.remote, "reason", reasonSlow, "queued_bytes", queued)
		return schedule
	}
	c.queue = append(c.queue, f)
	c.queued += len(f)
	schedule := !c.scheduled
	c.scheduled = true
	c.mu.Unlock()
	return schedule
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

// startCloseLocked replaces the queue with a close frame and reports
// whether the caller must schedule a writer.
func (c *client) startCloseLocked(code int, reason string) bool {
	if c.closing {
		return false
	}
	c.closing = true
	c.reason = reason
	clear(c.queue) // let the dropped frames be collected
	c.queue = c.queue[:0]
	c.queued = 0
	if code != closeNoStatus {
		c.queue = append(c.queue, closeFrame(code, reason))
	}
	schedule := !c.scheduled
	c.scheduled = true
	return schedule
}

// keepAlive extends the read deadline by pongWait unless closing has begun:
// then closeGrace (set by finish) holds. Holding mu orders this against
// closing, which is set before finish runs.
func (c *client) keepAlive() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closing {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.pongWait()))
	}
}

// abort cuts the connection at once, for shutdown past its deadline.
func (c *client) abort() { c.nc.Close() }

// run is the connection's reader and owner: it reads init messages until
// the connection ends, then removes the subscriber from the hub, finishes
// the closing handshake, and closes the connection. It is the one place
// that removes a subscriber.
func (c *client) run() {
	defer c.hub.readers.Done()
	code, reason := c.readLoop()
	c.hub.unsubscribe(c, c.subs)
	c.hub.deregister(c)
	c.close(code, reason)
	<-c.writerDone
	c.nc.Close()
	c.mu.Lock()
	reason = c.reason
	c.mu.Unlock()
	c.hub.opts.Log.Info("subscriber closed", "remote", c.remote, "reason", reason)
}

// pongWait is how long a subscriber may stay silent (no pong, no message)
// before it is dropped: one and a half ping intervals, so that a pong to a
// ping sent just before the deadline still arrives in time.
func (c *client) pongWait() time.Duration { return c.hub.opts.PingInterval * 3 / 2 }

// readLoop reads messages until the connection fails, and returns the close
// code and reason to send.
func (c *client) readLoop() (int, string) {
	c.conn.SetReadLimit(c.hub.opts.MaxMessageBytes)
	initialized := false
	// Until an init succeeds the deadline is fixed: messages do not extend
	// it, so a client cannot hold a connection with failed inits.
	_ = c.nc.SetReadDeadline(time.Now().Add(c.hub.opts.InitTimeout))
	c.conn.SetPingHandler(func(data string) error {
		c.enqueue(controlFrame(opPong, []byte(data)))
		if initialized {
			c.keepAlive()
		}
		return nil
	})
	c.conn.SetPongHandler(func(string) error {
		if initialized {
			c.keepAlive()
		}
		return nil
	})
	// The peer's close is answered by our close frame from the writer, not
	// by gorilla's default handler, which would write from this goroutine.
	c.conn.SetCloseHandler(func(int, string) error { return nil })

	for {
		if err := c.waitReadable(); err != nil {
			return closeCodeFor(err, initialized)
		}
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			return closeCodeFor(err, initialized)
		}
		if c.handleOnFreshStack(msg) {
			initialized = true
		}
		if initialized {
			c.keepAlive()
		}
	}
}

// waitReadable returns when there is something to read (or the read
// deadline passes). It waits in a few shallow frames, where gorilla's read
// would park the goroutine deep in its frame parser: the runtime shrinks an
// idle goroutine's stack to what it uses, so an idle subscriber's reader
// costs 2 KiB of stack instead of 4.
func (c *client) waitReadable() error {
	if c.raw == nil || c.br == nil || c.br.Buffered() > 0 {
		return nil
	}
	var peekErr error
	err := c.raw.rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, peekErr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Data, end of stream and errors are all for gorilla to read.
		return !errors.Is(peekErr, syscall.EAGAIN)
	})
	return err
}

// handleOnFreshStack handles a message on a short-lived goroutine. Parsing
// and authenticating need a deep stack, and a goroutine's stack never
// shrinks below what it once used; keeping that work off the reader, which
// lives as long as the connection, keeps an idle subscriber's stack at the
// few frames of a blocked read. Messages are rare, so the goroutine is cheap.
func (c *client) handleOnFreshStack(msg []byte) bool {
	done := make(chan bool, 1)
	go func() { done <- c.handleInit(msg) }()
	return <-done
}

// closeCodeFor picks the close frame to answer a read error with.
func closeCodeFor(err error, initialized bool) (int, string) {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		return closeNormal, "closed by peer"
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has already sent close 1009; a second close frame would
		// be a protocol error, so the reason is for the log only.
		return closeNoStatus, "message too big"
	case errors.As(err, &ne) && ne.Timeout():
		if initialized {
			return closePolicy, reasonPingTimeout
		}
		return closePolicy, reasonInitTimeout
	case errors.Is(err, net.ErrClosed):
		return closeNoStatus, "connection closed"
	default:
		// Malformed frames (gorilla has already sent 1002) or a reset:
		// the stream is unusable, so no close frame of ours follows.
		return closeNoStatus, "read failed: " + err.Error()
	}
}
