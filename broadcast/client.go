package broadcast

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Close codes and reasons this server sends. Every close says why, with the
// same words in the log.
const (
	closeNormal        = websocket.CloseNormalClosure    // 1000: the peer closed
	closeGoingAway     = websocket.CloseGoingAway        // 1001: server shutting down
	closePolicy        = websocket.ClosePolicyViolation  // 1008: slow consumer, timeouts
	closeTooBig        = websocket.CloseMessageTooBig    // 1009: message over the limit
	closeProtocolError = websocket.CloseProtocolError    // 1002: malformed frames
	closeNoStatus      = websocket.CloseNoStatusReceived // 1005: never sent on the wire

	reasonSlow        = "slow consumer"
	reasonPingTimeout = "ping timeout"
	reasonInitTimeout = "init timeout"
)

// closeGrace bounds the wait for the peer's side of the closing handshake
// after our close frame, so that a silent peer cannot hold a connection.
const closeGrace = time.Second

// writeChunk is the most bytes coalesced into one write: large enough that
// a burst of small events goes out in one system call, small enough to keep
// pooled buffers cheap. A frame larger than this is written on its own.
const writeChunk = 64 << 10

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, writeChunk); return &b }}

// client is one WebSocket subscriber. Its reader goroutine (run) owns the
// connection's life; a writer goroutine exists only while there is
// something to write, so an idle subscriber costs one goroutine.
type client struct {
	hub    *Hub
	conn   *websocket.Conn
	nc     net.Conn // the same connection; writes here are serialised by lockedConn
	remote string

	// subs is the subscription set; only the reader goroutine touches it.
	subs map[string]struct{}

	mu      sync.Mutex
	queue   [][]byte // frames waiting for the writer, oldest first
	queued  int      // bytes in queue
	writing bool     // a writer goroutine is running
	closing bool     // the close frame is queued or sent; nothing more is queued
	reason  string   // why closing began
	dead    bool     // the writer has finished for good

	batch      [][]byte      // the writer's current frames; writer only
	writerDone chan struct{} // closed when the writer has finished for good
}

func newClient(h *Hub, conn *websocket.Conn, nc net.Conn, remote string) *client {
	return &client{
		hub:        h,
		conn:       conn,
		nc:         nc,
		remote:     remote,
		subs:       make(map[string]struct{}),
		writerDone: make(chan struct{}),
	}
}

// enqueue adds a frame for the writer. It never blocks on the network: when
// the queue bound would be passed, the subscriber is cut off instead.
func (c *client) enqueue(f []byte) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if c.queued+len(f) > c.hub.opts.QueueMaxBytes {
		queued := c.queued
		c.startCloseLocked(closePolicy, reasonSlow)
		c.mu.Unlock()
		c.hub.opts.Log.Warn("subscriber cut off", "remote", c.remote, "reason", reasonSlow, "queued_bytes", queued)
		return
	}
	c.queue = append(c.queue, f)
	c.queued += len(f)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
}

// close begins the closing handshake with code and reason, unless it has
// begun already. Whatever is still queued is dropped.
func (c *client) close(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.startCloseLocked(code, reason)
}

func (c *client) startCloseLocked(code int, reason string) {
	if c.closing {
		return
	}
	c.closing = true
	c.reason = reason
	clear(c.queue) // let the dropped frames be collected
	c.queue = c.queue[:0]
	c.queued = 0
	if code != closeNoStatus {
		c.queue = append(c.queue, closeFrame(code, reason))
	}
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
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

// writeLoop writes queued frames, coalescing whatever is waiting into as few
// writes as possible, and returns when the queue is empty. After the close
// frame it half-closes the connection and ends the writer for good.
func (c *client) writeLoop() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.writing = false
			closing := c.closing
			c.dead = closing
			if cap(c.queue) > 256 { // do not keep a burst's worth of slice while idle
				c.queue, c.batch = nil, nil
			}
			c.mu.Unlock()
			if closing {
				c.finish()
			}
			return
		}
		c.batch, c.queue = c.queue, c.batch[:0]
		c.queued = 0
		c.mu.Unlock()

		err := c.writeFrames(c.batch)
		clear(c.batch)
		if err != nil {
			c.fail()
			return
		}
	}
}

// writeFrames writes frames through a pooled buffer, writeChunk at a time.
func (c *client) writeFrames(frames [][]byte) error {
	bp := writeBufs.Get().(*[]byte)
	defer writeBufs.Put(bp)
	buf := (*bp)[:0]
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.hub.opts.WriteTimeout)); err != nil {
		return err
	}
	for _, f := range frames {
		if len(buf)+len(f) > writeChunk && len(buf) > 0 {
			if _, err := c.nc.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		if len(f) > writeChunk {
			if _, err := c.nc.Write(f); err != nil {
				return err
			}
			continue
		}
		buf = append(buf, f...)
	}
	if len(buf) > 0 {
		if _, err := c.nc.Write(buf); err != nil {
			return err
		}
	}
	*bp = buf
	return nil
}

// fail ends the writer after a write error or timeout: the connection is
// unusable, so it is closed, which also ends the reader.
func (c *client) fail() {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.reason = "write failed"
	}
	clear(c.queue)
	c.queue, c.queued = nil, 0
	c.writing = false
	c.dead = true
	c.mu.Unlock()
	c.nc.Close()
	close(c.writerDone)
}

// finish runs after the close frame is written: it half-closes the
// connection so the peer sees end of stream after the close frame (a full
// close with unread input could reset the connection and lose the frame),
// and gives the reader closeGrace to see the peer's close.
func (c *client) finish() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(closeGrace))
	close(c.writerDone)
}

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
	c.hub.opts.Log.Debug("subscriber closed", "remote", c.remote, "reason", reason)
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
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			return closeCodeFor(err, initialized)
		}
		if c.handleInit(msg) {
			initialized = true
		}
		if initialized {
			c.keepAlive()
		}
	}
}

// closeCodeFor picks the close frame to answer a read error with.
func closeCodeFor(err error, initialized bool) (int, string) {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		return closeNormal, "closed by peer"
	case errors.Is(err, websocket.ErrReadLimit):
		return closeTooBig, "message too big"
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
