package logthrottle

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAllow(t *testing.T) {
	l := New(10, time.Second)
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	// The first window: 10 lines, then suppression.
	for i := range 10 {
		ok, suppressed := l.Allow(at(time.Duration(i) * time.Millisecond))
		require.True(t, ok, "line %d", i)
		require.Zero(t, suppressed, "line %d", i)
	}
	for i := range 6 {
		ok, suppressed := l.Allow(at(500*time.Millisecond + time.Duration(i)*time.Millisecond))
		require.False(t, ok, "suppressed line %d", i)
		require.Zero(t, suppressed, "the count is reported only when a new window begins")
	}
	ok, suppressed := l.Allow(at(time.Second - time.Nanosecond))
	require.False(t, ok, "still the first window")
	require.Zero(t, suppressed)

	// The next window begins: the count of 7 is reported once.
	ok, suppressed = l.Allow(at(time.Second))
	require.True(t, ok)
	require.Equal(t, 7, suppressed)
	ok, suppressed = l.Allow(at(time.Second + time.Millisecond))
	require.True(t, ok)
	require.Zero(t, suppressed, "reported once, not again")

	// Fill this window (2 used so far) and suppress 3 more.
	for range 8 {
		ok, _ = l.Allow(at(1500 * time.Millisecond))
		require.True(t, ok)
	}
	for range 3 {
		ok, _ = l.Allow(at(1500 * time.Millisecond))
		require.False(t, ok)
	}
	// A window later than the next one still reports the count.
	ok, suppressed = l.Allow(at(10 * time.Second))
	require.True(t, ok)
	require.Equal(t, 3, suppressed)

	// A quiet window reports nothing.
	ok, suppressed = l.Allow(at(20 * time.Second))
	require.True(t, ok)
	require.Zero(t, suppressed)
}

func TestLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := New(2, time.Hour)
	for range 5 {
		l.Log(log, slog.LevelInfo, "refused", "remote", "1.2.3.4:5")
	}
	assert.Equal(t, 2, strings.Count(buf.String(), `msg=refused`))
	l.start = l.start.Add(-time.Hour) // the window is over
	l.Log(log, slog.LevelInfo, "refused")
	assert.Contains(t, buf.String(), `msg="log lines suppressed" count=3 last=refused`)
	assert.Equal(t, 3, strings.Count(buf.String(), `msg=refused`))
}
