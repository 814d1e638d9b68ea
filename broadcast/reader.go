package broadcast

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// How messages from subscribers are read.
//
// Subscribers send little: an init message or two, pongs, perhaps a close.
// A goroutine blocked in a read for each of them would cost its stack for
// the connection's whole life, so on plain TCP connections the hub's
// poller (poller_linux.go) watches the sockets and starts a reader only when
// one has something to read; the reader reads what is there and returns.
// TLS connections, and systems without the poller, keep a reader goroutine
// each (run).
//
// Either way there is exactly one reader of a connection at a time, which
// reads frame by frame: control frames (ping, pong, close) are handled here,
// so that a pong never leaves the reader waiting for a data frame that is
// not coming; data frames are read by gorilla. Timeouts are not read
// deadlines but the hub's sweep (sweep.go), which closes silent
// connections and aborts those whose peer does not finish closing.

// errProtocol marks a frame this server refuses; the peer gets 1002.
var errProtocol = errors.New("websocket protocol error")

// setupReader prepares gorilla for a new connection.
func (c *client) setupReader() {
	c.conn.SetReadLimit(c.hub.opts.MaxMessageBytes)
	// Control frames inside a fragmented message reach gorilla's handlers;
	// they must do what readControl does, and never write themselves.
	c.conn.SetPingHandler(func(data string) error {
		c.enqueue(controlFrame(opPong, []byte(data)))
		c.keepAlive()
		return nil
	})
	c.conn.SetPongHandler(func(string) error {
		c.keepAlive()
		return nil
	})
	c.conn.SetCloseHandler(func(int, string) error { return nil })
}

// run is the reader goroutine of a connection the poller does not watch.
func (c *client) run() {
	for {
		if code, reason, ok := c.readFrame(); !ok {
			c.teardown(code, reason)
			return
		}
	}
}

// readReady runs when the poller reports that c's socket has something to
// read. It reads every complete frame there is, then re-arms the poller.
// A report that arrives while another reader runs (a descriptor's number
// reused after a close, reported late) finds reading set and leaves.
func (c *client) readReady() {
	if !c.reading.CompareAndSwap(false, true) {
		return
	}
	for {
		if c.br.Buffered() == 0 && !c.socketReadable() {
			c.reading.Store(false) // before re-arming: the next report may come at once
			if err := c.hub.poll.rearm(c); err != nil && c.reading.CompareAndSwap(false, true) {
				c.teardown(closeNoStatus, "poller: "+err.Error())
			}
			return
		}
		if code, reason, ok := c.readFrame(); !ok {
			c.teardown(code, reason)
			return
		}
	}
}

// socketReadable reports whether a read would not block: data, end of
// stream, or an error are all for readFrame to find.
func (c *client) socketReadable() bool {
	readable := true
	_ = c.raw.rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		readable = !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR)
		return true // one attempt: never wait here
	})
	return readable
}

// readFrame reads one frame (a whole message, for data frames). ok is false
// when the connection is done, with the close code and reason to send.
func (c *client) readFrame() (code int, reason string, ok bool) {
	if c.sse {
		// An SSE client sends nothing after its request; read only to see
		// the stream end.
		if _, err := c.br.Discard(max(c.br.Buffered(), 1)); err != nil {
			if errors.Is(err, io.EOF) {
				return closeNoStatus, "closed by peer", false
			}
			return closeCodeFor(err)
		}
		return 0, "", true
	}
	hdr, err := c.br.Peek(2)
	if err != nil {
		return closeCodeFor(err)
	}
	if op := hdr[0] & 0x0F; op < opClose {
		// A data frame: gorilla reads the whole message.
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			return closeCodeFor(err)
		}
		c.keepAlive()
		c.handleOnFreshStack(msg)
		return 0, "", true
	}
	op, payload, err := c.readControl(hdr)
	if err != nil {
		c.hub.opts.Log.Debug("subscriber broke the protocol", "remote", c.remote, "err", err)
		return closeProtocolError, "protocol error", false
	}
	c.keepAlive()
	switch op {
	case opPing:
		c.enqueue(controlFrame(opPong, payload))
	case opClose:
		return closeNormal, "closed by peer", false
	}
	return 0, "", true
}

// readControl reads and validates one control frame whose first two bytes
// are hdr (RFC 6455 §5.5: final, at most 125 bytes, masked from a client).
func (c *client) readControl(hdr []byte) (byte, []byte, error) {
	op, n := hdr[0]&0x0F, int(hdr[1]&0x7F)
	switch {
	case hdr[0]&0x70 != 0:
		return 0, nil, fmt.Errorf("%w: reserved bits set", errProtocol)
	case hdr[0]&0x80 == 0:
		return 0, nil, fmt.Errorf("%w: fragmented control frame", errProtocol)
	case hdr[1]&0x80 == 0:
		return 0, nil, fmt.Errorf("%w: unmasked frame from a client", errProtocol)
	case n > 125:
		return 0, nil, fmt.Errorf("%w: control frame of %d bytes", errProtocol, n)
	case op != opClose && op != opPing && op != opPong:
		return 0, nil, fmt.Errorf("%w: unknown opcode %d", errProtocol, op)
	}
	frame, err := c.br.Peek(6 + n)
	if err != nil {
		return 0, nil, err
	}
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = frame[6+i] ^ frame[2+i%4]
	}
	_, _ = c.br.Discard(6 + n)
	if op == opClose {
		if err := validClosePayload(payload); err != nil {
			return 0, nil, err
		}
	}
	return op, payload, nil
}

// validClosePayload checks a close frame's body: empty, or a status code
// a peer may send followed by a UTF-8 reason (RFC 6455 §5.5.1, §7.4).
func validClosePayload(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if len(p) == 1 {
		return fmt.Errorf("%w: close frame of 1 byte", errProtocol)
	}
	code := int(binary.BigEndian.Uint16(p))
	valid := (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) || (code >= 3000 && code <= 4999)
	if !valid {
		return fmt.Errorf("%w: close code %d", errProtocol, code)
	}
	if !utf8.Valid(p[2:]) {
		return fmt.Errorf("%w: close reason is not UTF-8", errProtocol)
	}
	return nil
}

// transport names the client's kind, for metrics and the admin list.
func (c *client) transport() string {
	if c.sse {
		return "sse"
	}
	return "websocket"
}

// keepAlive records that the peer is alive (after init; before it the init
// deadline holds, so failed inits cannot keep a connection open).
func (c *client) keepAlive() {
	if c.initialized.Load() {
		c.lastRead.Store(time.Now().UnixNano())
	}
}

// teardown is the one place that removes a subscriber: from the poller and
// the hub, then it finishes the closing handshake and closes the socket.
// It runs once, on the connection's reader.
func (c *client) teardown(code int, reason string) {
	if !c.tornDown.CompareAndSwap(false, true) {
		return
	}
	defer c.hub.readers.Done()
	c.hub.poll.remove(c)
	c.hub.unsubscribe(c, c.subs)
	c.leaveWork()
	c.hub.deregister(c)
	c.close(code, reason)
	<-c.writerDone
	c.nc.Close()
	c.mu.Lock()
	reason = c.reason
	c.mu.Unlock()
	if c.initialized.Load() {
		c.hub.opts.Log.Info("subscriber closed", "remote", c.remote, "reason", reason)
	} else {
		// It never logged in: anyone can cause this line (see Hub.quiet).
		c.hub.quiet.Log(c.hub.opts.Log, slog.LevelInfo, "subscriber closed", "remote", c.remote, "reason", reason)
	}
	// The metric's label is the reason without its details ("write
	// failed: broken pipe" counts as "write failed"), so labels stay few.
	kind, _, _ := strings.Cut(reason, ":")
	c.hub.metrics.Closed(kind)
}

// handleOnFreshStack handles a message on a short-lived goroutine. Parsing
// and authenticating need a deep stack, and a goroutine's stack never
// shrinks below what it once used; in a reader goroutine (run) that lives as
// long as the connection, that would cost every idle subscriber. Messages
// are rare, so the extra goroutine is cheap.
func (c *client) handleOnFreshStack(msg []byte) {
	done := make(chan struct{})
	go func() {
		c.handleMessage(msg)
		close(done)
	}()
	<-done
}

// closeCodeFor picks the close frame to answer a read error with.
func closeCodeFor(err error) (int, string, bool) {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		return closeNormal, "closed by peer", false
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has already sent close 1009; a second close frame would
		// be a protocol error, so the reason is for the log only.
		return closeNoStatus, "message too big", false
	case errors.Is(err, net.ErrClosed):
		return closeNoStatus, "connection closed", false
	default:
		// End of stream, a reset, or malformed frames (gorilla has already
		// sent 1002): no close frame of ours can follow.
		return closeNoStatus, "read failed: " + err.Error(), false
	}
}
