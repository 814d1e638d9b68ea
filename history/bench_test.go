package history

import (
	"fmt"
	"testing"
	"time"
)

// benchFrames returns n preallocated 150-byte frames, so that the
// benchmarks measure the store, not building events.
func benchFrames(n int) [][]byte {
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = make([]byte, 150)
	}
	return frames
}

func BenchmarkAppend(b *testing.B) {
	frames := benchFrames(4096)
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprint("event-", i)
	}
	benchmarks := []struct {
		name   string
		limits Limits
		names  []string
	}{
		{"one name, Size 1000", Limits{Size: 1000}, names[:1]},
		{"100 names, Size 1000, TTL and MaxBytes", Limits{Size: 1000, TTL: time.Minute, MaxBytes: 1 << 20}, names},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			m := NewMemory(bm.limits)
			b.ReportAllocs()
			seq := uint64(0)
			for b.Loop() {
				seq++
				frame := frames[seq%uint64(len(frames))]
				m.Append(Event{Seq: seq, Name: bm.names[seq%uint64(len(bm.names))], Data: frame[40:149], Frame: frame})
			}
		})
	}
}

func BenchmarkSince(b *testing.B) {
	frames := benchFrames(1000)
	m := NewMemory(Limits{Size: 1000})
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for seq := uint64(1); seq <= 10_000; seq++ {
		frame := frames[seq%1000]
		m.Append(Event{Seq: seq, Name: names[seq%10], Data: frame[40:149], Frame: frame})
	}
	for _, bm := range []struct {
		name  string
		names []string
		after uint64
	}{
		{"one name, 100 events", names[:1], 9000},
		{"three names, 300 events", names[:3], 9000},
		{"three names, nothing new", names[:3], 10_000},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Since(bm.names, bm.after, 0)
			}
		})
	}
}
