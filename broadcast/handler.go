package broadcast

import (
	"bufio"
	"errors"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/gorilla/websocket"

	"eventsrv/auth"
	"eventsrv/internal/jsonhttp"
)

// InitCode is the code of an init reply: {"type":"init","code":"<InitCode>"}.
type InitCode string

// The init reply codes. The first five are the old service's.
const (
	InitOK                     InitCode = "OK"
	InitInvalidSyntax          InitCode = "INVALID_SYNTAX"
	InitInvalidEventsMissing   InitCode = "INVALID_EVENTS_MISSING"
	InitAuthUnrecognizedScheme InitCode = "AUTH_UNRECOGNIZED_SCHEME"
	InitUnauthenticated        InitCode = "UNAUTHENTICATED"
	// InitTooManyEvents: the init would take the connection past
	// MAX_SUBSCRIPTIONS event names; nothing is added.
	InitTooManyEvents InitCode = "INVALID_EVENTS_TOO_MANY"
	// InitForbidden: the token may not subscribe to one of the events;
	// nothing is added.
	InitForbidden InitCode = "FORBIDDEN"
)

// initReplies holds each reply frame, built once.
var initReplies = func() map[InitCode][]byte {
	m := make(map[InitCode][]byte)
	for _, c := range []InitCode{InitOK, InitInvalidSyntax, InitInvalidEventsMissing,
		InitAuthUnrecognizedScheme, InitUnauthenticated, InitTooManyEvents, InitForbidden} {
		m[c] = textFrame([]byte(`{"type":"init","code":"` + string(c) + `"}`))
	}
	return m
}()

// handleInit answers one init message and reports whether it succeeded.
// A failed init changes nothing; a successful one adds its events to the
// subscription, and its OK arrives before the first event.
func (c *client) handleInit(msg []byte) bool {
	code, added := c.checkInit(msg)
	if code != InitOK {
		c.enqueue(initReplies[code])
		c.hub.opts.Log.Debug("init refused", "remote", c.remote, "code", code)
		return false
	}
	for _, e := range added {
		c.subs[e] = struct{}{}
	}
	list := slices.Sorted(maps.Keys(c.subs))
	c.subList.Store(&list)
	c.hub.subscribe(c, added, initReplies[InitOK])
	return true
}

// checkInit validates an init message and returns its code and the event
// names it would add to the subscription.
func (c *client) checkInit(msg []byte) (InitCode, []string) {
	in, err := ParseInit(msg)
	switch {
	case errors.Is(err, ErrInvalidSyntax):
		return InitInvalidSyntax, nil
	case err != nil:
		return InitInvalidEventsMissing, nil
	}
	perms, err := c.hub.auth.Authenticate(in.Authentication, c.remote, "websocket")
	if err != nil {
		if errors.Is(err, auth.ErrUnrecognizedScheme) {
			return InitAuthUnrecognizedScheme, nil
		}
		return InitUnauthenticated, nil
	}
	var added []string
	for _, e := range in.Events {
		if !perms.Subscribe.Allows(e) {
			return InitForbidden, nil
		}
		if _, ok := c.subs[e]; ok || contains(added, e) {
			continue
		}
		if len(c.subs)+len(added) == c.hub.opts.MaxSubscriptions {
			return InitTooManyEvents, nil
		}
		added = append(added, e)
	}
	return InitOK, added
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// maxUserAgent bounds the user agent kept for the admin client list.
const maxUserAgent = 256

// upgrader is shared by every connection. Buffers are small because
// messages from subscribers are rare and small, and the server's own writes
// bypass gorilla's write buffer (see client.writeFrames).
var upgrader = websocket.Upgrader{
	ReadBufferSize:  0,            // gorilla reads through the reader lockingWriter.Hijack provides
	WriteBufferPool: &sync.Pool{}, // gorilla allocates no write buffer per connection
	// Any origin may connect: subscribers authenticate with a token in the
	// init message, not with cookies, so a cross-site page gains nothing a
	// token would not already give it (no cross-site WebSocket hijacking).
	CheckOrigin: func(*http.Request) bool { return true },
	Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
		writeCode(w, status, "BAD_HANDSHAKE")
	},
}

// ServeHTTP upgrades a request at any path to a WebSocket subscriber.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		writeCode(w, http.StatusUpgradeRequired, "UPGRADE_REQUIRED")
		return
	}
	if h.closing.Load() {
		writeCode(w, http.StatusServiceUnavailable, "SHUTTING_DOWN")
		return
	}
	lw := &lockingWriter{ResponseWriter: w}
	conn, err := upgrader.Upgrade(lw, r, nil)
	if err != nil {
		h.opts.Log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return // the upgrader has answered
	}
	c := newClient(h, conn, lw.conn, lw.br, r.RemoteAddr)
	c.id = h.nextID.Add(1)
	c.userAgent = r.UserAgent()
	if len(c.userAgent) > maxUserAgent {
		c.userAgent = strings.ToValidUTF8(c.userAgent[:maxUserAgent], "")
	}
	if lw.conn.rc != nil {
		c.raw = lw.conn
	}
	if !h.register(c) {
		_, _ = c.nc.Write(closeFrame(closeGoingAway, "going away"))
		_ = c.nc.Close()
		return
	}
	c.setupReader()
	h.opts.Log.Info("subscriber connected", "remote", c.remote, "transport", "websocket")
	if h.poll.add(c) == nil {
		return // the poller starts a reader when there is something to read
	}
	// A fresh goroutine reads, so the connection does not keep net/http's
	// handler stack alive for its whole life.
	go c.run()
}

func writeCode(w http.ResponseWriter, status int, code string) { jsonhttp.Code(w, status, code) }

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
	w.conn = &lockedConn{Conn: nc}
	if tc, ok := nc.(syscall.Conn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			w.conn.rc = rc
		}
	}
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
