package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/websocket"
)

// Stalled subscribers (-stall N) init like the others and then never read,
// as a client that hangs would. They show what such a client costs the
// others (compare a run without them) and whether the server cuts it off
// with a reason. They are not counted in deliveries.

// stalledReport says what became of the stalled subscribers.
type stalledReport struct {
	Opened int            `json:"opened"`
	Closes map[string]int `json:"closes"` // by close code and reason, or "still open"
}

// openStalled connects n subscribers that will never read after init,
// taking the broadcast URLs in turn.
func openStalled(ctx context.Context, cfg config, n int) ([]*websocket.Conn, error) {
	dialer := newDialers(cfg)[0]
	conns := make([]*websocket.Conn, 0, n)
	for i := range n {
		conn, resp, err := dialer.DialContext(ctx, cfg.broadcastURLs[i%len(cfg.broadcastURLs)], nil)
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("stalled subscriber: %w", err)
		}
		resp.Body.Close()
		if err := initialize(ctx, conn, cfg); err != nil {
			conn.Close()
			closeAll(conns)
			return nil, fmt.Errorf("stalled subscriber: %w", err)
		}
		conns = append(conns, conn)
	}
	return conns, nil
}

// stalledOutcome reads each stalled subscriber to its end (draining what
// the server managed to send) and reports how each ended. A subscriber the
// server did not close within wait counts as still open.
func stalledOutcome(conns []*websocket.Conn, wait time.Duration) *stalledReport {
	rep := &stalledReport{Opened: len(conns), Closes: make(map[string]int)}
	for _, conn := range conns {
		rep.Closes[readToEnd(conn, wait)]++
	}
	closeAll(conns)
	return rep
}

func readToEnd(conn *websocket.Conn, wait time.Duration) string {
	for {
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		_, _, err := conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		var ne interface{ Timeout() bool }
		switch {
		case errors.As(err, &ce):
			return fmt.Sprintf("close %d %q", ce.Code, ce.Text)
		case errors.As(err, &ne) && ne.Timeout():
			return "still open"
		default:
			return "ended without close frame"
		}
	}
}

func closeAll(conns []*websocket.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

func (s *stalledReport) writeText(line func(label, format string, args ...any)) {
	line("stalled", "%d subscribers that never read", s.Opened)
	for how, n := range s.Closes {
		line("", "%d × %s", n, how)
	}
}
