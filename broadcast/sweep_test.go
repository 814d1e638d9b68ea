package broadcast

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/auth"
)

// sweepOptions are timeouts for sweep tests, which pass their own times to
// sweep rather than wait.
func sweepOptions() Options {
	return Options{QueueMaxBytes: 1 << 10, WriteTimeout: 3 * time.Second, PingInterval: 10 * time.Second, InitTimeout: 2 * time.Second}
}

// closedWith reports whether c has begun closing, and why.
func closedWith(c *client) (bool, string, [][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing, c.reason, append([][]byte(nil), c.queue...)
}

// TestSweepTokenExpiry: a subscriber whose credential expires is closed
// with 4001 at the first sweep after the expiry, not at or before it.
func TestSweepTokenExpiry(t *testing.T) {
	t0 := time.Unix(1_795_425_601, 0)
	exp := t0.Add(time.Minute)
	c, _, _ := detachedClient(t, sweepOptions())
	c.grant(auth.Permissions{Subscribe: auth.Patterns{"*"}, Expires: exp})
	c.initialized.Store(true)
	for _, now := range []time.Time{t0, exp.Add(-time.Nanosecond), exp} {
		c.lastRead.Store(now.UnixNano()) // not silent
		c.sweep(now)
		closing, _, _ := closedWith(c)
		require.False(t, closing, "closed at %v, before the credential expired", now.Sub(exp))
	}
	c.lastRead.Store(exp.UnixNano())
	c.sweep(exp.Add(time.Nanosecond))
	closing, reason, queue := closedWith(c)
	require.True(t, closing)
	assert.Equal(t, reasonExpired, reason)
	assert.Equal(t, [][]byte{closeFrame(closeTokenExpired, reasonExpired)}, queue)
}

// TestSweepNoExpiry: a credential without expiry is never closed for it.
func TestSweepNoExpiry(t *testing.T) {
	c, _, _ := detachedClient(t, sweepOptions())
	c.grant(auth.Permissions{Subscribe: auth.Patterns{"*"}})
	c.initialized.Store(true)
	for _, now := range []time.Time{time.Unix(0, 1), time.Now(), time.Unix(1<<33, 0)} {
		c.lastRead.Store(now.UnixNano())
		c.sweep(now)
		closing, _, _ := closedWith(c)
		require.False(t, closing, "at %v", now)
	}
}

// TestSweepInitTimeout: a connection without a successful init is closed
// once InitTimeout has passed since it connected.
func TestSweepInitTimeout(t *testing.T) {
	c, _, _ := detachedClient(t, sweepOptions())
	deadline := c.connectedAt.Add(c.hub.opts.InitTimeout)
	c.sweep(deadline)
	closing, _, _ := closedWith(c)
	require.False(t, closing, "at the deadline")
	c.sweep(deadline.Add(time.Nanosecond))
	closing, reason, queue := closedWith(c)
	require.True(t, closing)
	assert.Equal(t, reasonInitTimeout, reason)
	assert.Equal(t, [][]byte{closeFrame(closePolicy, reasonInitTimeout)}, queue)
}

// TestSweepPingTimeout: an initialized WebSocket subscriber that sends
// nothing for 1.5 ping intervals is closed; an SSE one, which cannot
// answer pings, is not.
func TestSweepPingTimeout(t *testing.T) {
	t0 := time.Unix(1_795_425_601, 0)
	c, _, _ := detachedClient(t, sweepOptions())
	c.initialized.Store(true)
	c.lastRead.Store(t0.UnixNano())
	deadline := t0.Add(15 * time.Second)
	c.sweep(deadline)
	closing, _, _ := closedWith(c)
	require.False(t, closing, "at the deadline")
	c.sweep(deadline.Add(time.Nanosecond))
	closing, reason, queue := closedWith(c)
	require.True(t, closing)
	assert.Equal(t, reasonPingTimeout, reason)
	assert.Equal(t, [][]byte{closeFrame(closePolicy, reasonPingTimeout)}, queue)

	sse, _, _ := detachedClient(t, sweepOptions())
	sse.sse = true
	sse.initialized.Store(true)
	sse.lastRead.Store(t0.UnixNano())
	sse.sweep(t0.Add(time.Hour))
	closing, _, _ = closedWith(sse)
	require.False(t, closing, "SSE has no pongs")
}

// TestSweepAbortsAClosingConnection: a peer that does not read our close
// frame within WRITE_TIMEOUT of the close, or does not answer it within
// closeGrace of its writing, is cut off, once.
func TestSweepAbortsAClosingConnection(t *testing.T) {
	t.Run("close frame not written", func(t *testing.T) {
		c, _, nc := detachedClient(t, sweepOptions())
		c.close(closePolicy, "bye")
		deadline := c.closedAt.Add(c.hub.opts.WriteTimeout)
		c.sweep(deadline)
		require.Zero(t, nc.closes.Load(), "at the deadline")
		c.sweep(deadline.Add(time.Nanosecond))
		require.EqualValues(t, 1, nc.closes.Load())
		c.sweep(deadline.Add(time.Hour))
		require.EqualValues(t, 1, nc.closes.Load(), "aborted once")
	})
	t.Run("close frame written", func(t *testing.T) {
		c, _, nc := detachedClient(t, sweepOptions())
		c.close(closePolicy, "bye")
		sent := c.closedAt.Add(time.Second)
		c.mu.Lock()
		c.closeSent = sent
		c.mu.Unlock()
		c.sweep(sent.Add(closeGrace))
		require.Zero(t, nc.closes.Load(), "at the deadline")
		c.sweep(sent.Add(closeGrace + time.Nanosecond))
		require.EqualValues(t, 1, nc.closes.Load())
	})
	t.Run("closing does not close again", func(t *testing.T) {
		c, _, _ := detachedClient(t, sweepOptions())
		c.grant(auth.Permissions{Expires: time.Unix(1, 0)})
		c.close(closePolicy, "bye")
		c.sweep(c.closedAt)
		_, reason, queue := closedWith(c)
		assert.Equal(t, "bye", reason)
		assert.Equal(t, [][]byte{closeFrame(closePolicy, "bye")}, queue)
	})
}

func TestSweepInterval(t *testing.T) {
	for _, tc := range []struct {
		init, ping, write time.Duration
		want              time.Duration
	}{
		{10 * time.Second, time.Hour, 5 * time.Second, closeGrace / 4},
		{100 * time.Millisecond, time.Hour, 5 * time.Second, 25 * time.Millisecond},
		{10 * time.Second, 40 * time.Millisecond, 5 * time.Second, 15 * time.Millisecond},
		{10 * time.Second, time.Hour, 80 * time.Millisecond, 20 * time.Millisecond},
		{time.Millisecond, time.Hour, 5 * time.Second, 5 * time.Millisecond},
	} {
		h := &Hub{opts: Options{InitTimeout: tc.init, PingInterval: tc.ping, WriteTimeout: tc.write}}
		assert.Equal(t, tc.want, h.sweepInterval(), "%+v", tc)
	}
	h := &Hub{opts: Options{PingInterval: 2 * time.Second}}
	assert.Equal(t, 3*time.Second, h.pongWait())
}

// expiringAuth grants every credential subscriptions until exp.
type expiringAuth struct{ exp time.Time }

func (a expiringAuth) Authenticate(string, string, string) (auth.Permissions, error) {
	return auth.Permissions{Subscribe: auth.Patterns{"*"}, Expires: a.exp}, nil
}

// TestTokenExpiryCloses runs the sweep for real: a subscriber whose
// credential expires gets close 4001 "token expired", after the expiry.
func TestTokenExpiryCloses(t *testing.T) {
	exp := time.Now().Add(300 * time.Millisecond)
	opts := testOptions()
	h := NewHub(expiringAuth{exp: exp}, opts)
	_, url := serveHub(t, h)
	conn := dial(t, url)
	require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(`{"authentication":"Bearer x","events":["a"]}`)))
	assert.Equal(t, `{"type":"init","code":"OK"}`, readText(t, conn))

	_, _, err := conn.ReadMessage()
	closedAt := time.Now()
	var ce *websocket.CloseError
	require.True(t, errors.As(err, &ce), "%v", err)
	assert.Equal(t, closeTokenExpired, ce.Code)
	assert.Equal(t, reasonExpired, ce.Text)
	assert.True(t, closedAt.After(exp), "closed %v before the credential expired", exp.Sub(closedAt))
}

// serveHub serves h on a real port until the test ends, then closes it.
func serveHub(t *testing.T, h *Hub) (*Hub, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, h.Close(ctx))
	})
	return h, "ws" + strings.TrimPrefix(srv.URL, "http")
}
