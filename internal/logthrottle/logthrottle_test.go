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
	l := New(3, time.Second)
	t0 := time.Unix(1_795_425_601, 0)
	for i := range 3 {
		ok, suppressed := l.Allow(t0.Add(time.Duration(i) * time.Millisecond))
		require.True(t, ok, "line %d", i)
		require.Zero(t, suppressed)
	}
	for i := range 5 {
		ok, suppressed := l.Allow(t0.Add(500 * time.Millisecond))
		require.False(t, ok, "line %d past the window's three", i+3)
		require.Zero(t, suppressed)
	}
	// Just before the window ends: still refused.
	ok, _ := l.Allow(t0.Add(time.Second - time.Nanosecond))
	require.False(t, ok)
	// A new window: allowed, and told that six were left out, once.
	ok, suppressed := l.Allow(t0.Add(time.Second))
	require.True(t, ok)
	assert.Equal(t, 6, suppressed)
	ok, suppressed = l.Allow(t0.Add(time.Second + time.Millisecond))
	require.True(t, ok)
	assert.Zero(t, suppressed)
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
