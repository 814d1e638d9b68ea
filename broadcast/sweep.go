package broadcast

import "time"

// The sweep enforces the connection timeouts by looking at every
// connection a few times per shortest timeout, rather than with a read
// deadline per connection: an idle subscriber has no blocked read to put a
// deadline on (see reader.go), and one clock read per sweep is cheaper than
// a timer reset per frame.

// closeGrace bounds the wait for the peer's side of the closing handshake
// after our close frame, so that a silent peer cannot hold a connection.
const closeGrace = time.Second

// sweepInterval is a quarter of the shortest timeout, between 5 ms and 1 s.
func (h *Hub) sweepInterval() time.Duration {
	d := min(time.Second, h.opts.InitTimeout/4, h.pongWait()/4, closeGrace/4, h.opts.WriteTimeout/4)
	return max(d, 5*time.Millisecond)
}

// pongWait is how long a subscriber may stay silent (no pong, no message)
// before it is dropped: one and a half ping intervals, so that a pong to a
// ping sent just before the deadline still arrives in time.
func (h *Hub) pongWait() time.Duration { return h.opts.PingInterval * 3 / 2 }

func (h *Hub) sweepLoop() {
	defer h.sweeper.Done()
	t := time.NewTicker(h.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-h.stopSweep:
			return
		case now := <-t.C:
			for _, c := range h.snapshot() {
				c.sweep(now)
			}
		}
	}
}

// sweep closes c when it has been silent too long, and aborts a closing
// connection whose peer does not finish the closing handshake: closeGrace
// after our close frame was written, or WRITE_TIMEOUT after closing began
// if the peer has not even read that far (a stalled reader sees the close
// reason if it reads within that time).
func (c *client) sweep(now time.Time) {
	c.mu.Lock()
	closing := c.closing
	deadline := c.closedAt.Add(c.hub.opts.WriteTimeout)
	if !c.closeSent.IsZero() {
		deadline = c.closeSent.Add(closeGrace)
	}
	// A draining subscriber (the server is shutting down) may take longer
	// to read what it was sent before the close, which may still wait in
	// the kernel's buffers well after it was written: cutting it then
	// would lose those events. Each of its writes is bounded by
	// WRITE_TIMEOUT, and the hub's Close (SHUTDOWN_TIMEOUT) bounds the
	// whole.
	abort := closing && !c.aborted && !c.draining && now.After(deadline)
	if abort {
		c.aborted = true
	}
	c.mu.Unlock()
	switch {
	case abort:
		c.abort()
	case closing:
		c.leaveClosing() // a worker's tasks go back now, not at the teardown
	case c.expires.Load() != nil && now.After(*c.expires.Load()):
		c.close(closeTokenExpired, reasonExpired)
	case !c.initialized.Load():
		if now.Sub(c.connectedAt) > c.hub.opts.InitTimeout {
			c.close(closePolicy, reasonInitTimeout)
		}
	case c.sse:
		// No pongs in SSE: a dead peer shows as a failed write.
	case now.UnixNano()-c.lastRead.Load() > int64(c.hub.pongWait()):
		c.close(closePolicy, reasonPingTimeout)
	}
}
