package broadcast

import (
	"bufio"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"eventsrv/internal/jsonhttp"
)

// maxHeaderValue bounds a header value kept (the user agent, for the admin
// client list) or logged (a refused origin).
const maxHeaderValue = 256

// trimHeader is v cut to maxHeaderValue bytes of valid UTF-8.
func trimHeader(v string) string {
	if len(v) > maxHeaderValue {
		v = strings.ToValidUTF8(v[:maxHeaderValue], "")
	}
	return v
}

// upgrader is shared by every connection. Buffers are small because
// messages from subscribers are rare and small, and the server's own writes
// bypass gorilla's write buffer (see client.writeFrames).
var upgrader = websocket.Upgrader{
	ReadBufferSize:  0,            // gorilla reads through the reader lockingWriter.Hijack provides
	WriteBufferPool: &sync.Pool{}, // gorilla allocates no write buffer per connection
	// Origins are checked in ServeHTTP against CORS_ALLOWED_ORIGINS, when
	// set. Otherwise any origin may connect: subscribers authenticate with
	// a token in the init message, not with cookies, so a cross-site page
	// gains nothing a token would not already give it.
	CheckOrigin: func(*http.Request) bool { return true },
	Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
		writeError(w, status, "BAD_HANDSHAKE", "the WebSocket handshake failed: "+reason.Error())
	},
}

// ServeHTTP upgrades a request at any path to a WebSocket subscriber, and
// serves Server-Sent Events at /events (see sse.go).
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == ssePath && !websocket.IsWebSocketUpgrade(r) {
		h.serveSSE(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/queue/") && !websocket.IsWebSocketUpgrade(r) {
		h.serveQueue(w, r)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		writeError(w, http.StatusUpgradeRequired, "UPGRADE_REQUIRED",
			"this is the broadcast server: subscribe with a WebSocket, or with Server-Sent Events at GET /events?event=<name>"+h.opts.Elsewhere)
		return
	}
	if h.refuse(w, r, "websocket") {
		return
	}
	lw := &lockingWriter{ResponseWriter: w}
	conn, err := upgrader.Upgrade(lw, r, nil)
	if err != nil {
		h.opts.Log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return // the upgrader has answered
	}
	c := h.newSubscriber(r, conn, lw.conn, lw.br)
	if !h.register(c) {
		_, _ = c.nc.Write(closeFrame(closeGoingAway, "going away"))
		_ = c.nc.Close()
		return
	}
	c.setupReader()
	h.startReading(c)
}

// refuse answers a new subscriber that cannot be served, while the hub
// shuts down or from a browser origin not allowed, and reports whether it
// did. Both transports ask it first.
func (h *Hub) refuse(w http.ResponseWriter, r *http.Request, transport string) bool {
	if h.closing.Load() {
		writeError(w, http.StatusServiceUnavailable, "SHUTTING_DOWN", "the server is shutting down: reconnect, to another instance or once it is back, and resume")
		return true
	}
	if h.opts.CheckOrigin != nil && !h.opts.CheckOrigin(r) {
		h.quiet.Log(h.opts.Log, slog.LevelInfo, transport+" refused", "remote", r.RemoteAddr, "code", "FORBIDDEN_ORIGIN",
			"origin", trimHeader(r.Header.Get("Origin")), "hint", "add the origin to CORS_ALLOWED_ORIGINS to allow it")
		writeError(w, http.StatusForbidden, "FORBIDDEN_ORIGIN", "this origin is not in CORS_ALLOWED_ORIGINS: "+trimHeader(r.Header.Get("Origin")))
		return true
	}
	return false
}

// newSubscriber makes the client of a hijacked connection: an ID for the
// admin list, the user agent, and non-blocking writes when nc allows them.
func (h *Hub) newSubscriber(r *http.Request, conn *websocket.Conn, nc *lockedConn, br *bufio.Reader) *client {
	c := newClient(h, conn, nc, br, r.RemoteAddr)
	c.id = h.nextID.Add(1)
	c.userAgent = trimHeader(r.UserAgent())
	if nc.rc != nil {
		c.raw = nc
	}
	return c
}

// startReading hands a registered subscriber to the poller, which starts a
// reader when there is something to read, or, where there is no poller or
// the connection is TLS, to a reader goroutine of its own. (A fresh
// goroutine: the connection does not keep net/http's handler stack.)
func (h *Hub) startReading(c *client) {
	// Anyone can connect: the line is throttled (see Hub.quiet).
	h.quiet.Log(h.opts.Log, slog.LevelInfo, "subscriber connected", "remote", c.remote, "transport", c.transport())
	if h.poll.add(c) == nil {
		return
	}
	go c.run()
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	jsonhttp.Error(w, status, code, message)
}

// lockingWriter hands gorilla a connection whose writes are serialised.
// The flushers and writer goroutines write whole frames straight to the
// connection; gorilla itself writes only when it rejects a malformed data
// frame (a close frame, from the reader). The lock keeps those from
// interleaving bytes.
type lockingWriter struct {
	http.ResponseWriter
	conn *lockedConn
	br   *bufio.Reader
}

func (w *lockingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer cannot hijack")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = newLockedConn(nc)
	if brw.Reader.Buffered() > 0 {
		nc.Close()
		return nil, nil, errors.New("client sent data before the handshake completed")
	}
	// gorilla reads through this reader (ReadBufferSize is 0), so our
	// reader can see whether a frame is already buffered before it goes
	// back to the poller (client.readReady). It is small: messages from
	// subscribers are rare and short, and larger ones pass through it.
	w.br = bufio.NewReaderSize(w.conn, 512)
	brw.Reader = w.br
	return w.conn, brw, nil
}

// lockedConn makes each Write atomic with respect to other Writes.
type lockedConn struct {
	net.Conn
	mu sync.Mutex
	// rc allows non-blocking writes (see tryWrite); nil for TLS, whose
	// records cannot be written without blocking.
	rc syscall.RawConn
}

// newLockedConn wraps nc, a connection just hijacked from net/http, with
// the raw connection when nc has one. The server's request deadlines
// (READ_TIMEOUT) bound the request, not the subscriber's life, so they are
// cleared: the subscriber's own timeouts take over (see sweep.go).
func newLockedConn(nc net.Conn) *lockedConn {
	_ = nc.SetDeadline(time.Time{})
	lc := &lockedConn{Conn: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			lc.rc = rc
		}
	}
	return lc
}

func (c *lockedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(p)
}

// CloseWrite half-closes the connection when the underlying one can.
func (c *lockedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
