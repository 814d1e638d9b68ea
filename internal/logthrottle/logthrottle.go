// Package logthrottle bounds log lines that peers can cause at will
// (refused credentials, refused origins, connections that never log in),
// so that a flood of them cannot flood the log: a few lines per window,
// then one line that says how many were left out.
package logthrottle

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter allows PerWindow lines per Window and counts the rest. Its zero
// value allows nothing; make one with New.
type Limiter struct {
	perWindow int
	window    time.Duration

	mu         sync.Mutex
	start      time.Time
	used       int
	suppressed int
}

// New returns a Limiter of perWindow lines per window.
func New(perWindow int, window time.Duration) *Limiter {
	return &Limiter{perWindow: perWindow, window: window}
}

// Allow reports whether a line may be written now, and how many lines were
// suppressed since the last report (to be reported once, now).
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= l.window {
		suppressed, l.suppressed = l.suppressed, 0
		l.start, l.used = now, 0
	}
	if l.used >= l.perWindow {
		l.suppressed++
		return false, suppressed
	}
	l.used++
	return true, suppressed
}

// Log writes msg with args at level unless the window's lines are used up;
// before the first line after some were left out, a line says how many.
func (l *Limiter) Log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	ok, suppressed := l.Allow(time.Now())
	if suppressed > 0 {
		log.Log(context.Background(), level, "log lines suppressed", "count", suppressed, "last", msg)
	}
	if ok {
		log.Log(context.Background(), level, msg, args...)
	}
}
