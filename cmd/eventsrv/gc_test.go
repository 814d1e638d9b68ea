package main

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestTuneGC: cluster mode raises GOGC to clusterGCPercent, unless GOGC is
// set; one instance keeps Go's default.
func TestTuneGC(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const before = 123
	for _, tc := range []struct {
		name      string
		clustered bool
		gogc      string
		want      int
	}{
		{"one instance", false, "", before},
		{"cluster mode", true, "", clusterGCPercent},
		{"cluster mode, GOGC set", true, "150", before},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.gogc)
			old := debug.SetGCPercent(before)
			defer debug.SetGCPercent(old)
			tuneGC(tc.clustered, log)
			assert.Equal(t, tc.want, debug.SetGCPercent(before))
		})
	}
}
