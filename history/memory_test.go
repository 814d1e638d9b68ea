package history

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_795_425_601, 0)} }

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// newMemoryAt returns a Memory that reads the time from c.
func newMemoryAt(l Limits, c *fakeClock) *Memory {
	m := NewMemory(l)
	m.now = c.now
	return m
}

// event returns an event whose data is a slice of its frame, as the hub
// builds them, so that it counts eventOverhead+len(name)+frameLen bytes.
func event(seq uint64, name string, frameLen int) Event {
	frame := make([]byte, frameLen)
	return Event{Seq: seq, Name: name, Data: frame[min(2, frameLen):], Frame: frame}
}

// seqs returns the Seqs of events, in order.
func seqs(events []Event) []uint64 {
	var out []uint64
	for _, e := range events {
		out = append(out, e.Seq)
	}
	return out
}

// requireSince checks one Since answer.
func requireSince(t *testing.T, m *Memory, names []string, after uint64, want []uint64, wantComplete bool) {
	t.Helper()
	events, complete := m.Since(names, after, 0)
	require.Equal(t, want, seqs(events), "events of %q after %d", names, after)
	require.Equal(t, wantComplete, complete, "complete for %q after %d", names, after)
	for _, e := range events {
		require.True(t, slices.Contains(names, e.Name), "event %d has name %q", e.Seq, e.Name)
	}
}

func TestMemorySizeKeepsTheNewestPerName(t *testing.T) {
	m := NewMemory(Limits{Size: 3})
	for seq := uint64(1); seq <= 5; seq++ {
		m.Append(event(seq, "a", 10))
	}
	m.Append(event(6, "b", 10))
	requireSince(t, m, []string{"a"}, 0, []uint64{3, 4, 5}, false)
	requireSince(t, m, []string{"a"}, 1, []uint64{3, 4, 5}, false)
	requireSince(t, m, []string{"a"}, 2, []uint64{3, 4, 5}, true)
	requireSince(t, m, []string{"a"}, 4, []uint64{5}, true)
	requireSince(t, m, []string{"a"}, 6, nil, true)
	requireSince(t, m, []string{"b"}, 0, []uint64{6}, true)
	requireSince(t, m, []string{"a", "b"}, 2, []uint64{3, 4, 5, 6}, true)
	requireSince(t, m, []string{"a", "b"}, 1, []uint64{3, 4, 5, 6}, false)

	events, _ := m.Since([]string{"a"}, 4, 0)
	require.Equal(t, "a", events[0].Name)
	require.Len(t, events[0].Frame, 10, "the frame is kept for replay")
	require.Len(t, events[0].Data, 8)
}

func TestMemoryTTLExpiresWithoutAppend(t *testing.T) {
	clock := newFakeClock()
	m := newMemoryAt(Limits{Size: 100, TTL: 10 * time.Second}, clock)
	m.Append(event(1, "a", 10))
	clock.advance(5 * time.Second)
	m.Append(event(2, "b", 10))
	clock.advance(3 * time.Second)
	m.Append(event(3, "a", 10))

	clock.advance(2 * time.Second) // event 1 is exactly TTL old: still kept
	requireSince(t, m, []string{"a"}, 0, []uint64{1, 3}, true)

	clock.advance(time.Nanosecond) // now older than the TTL, with no Append since
	requireSince(t, m, []string{"a"}, 0, []uint64{3}, false)
	requireSince(t, m, []string{"a"}, 1, []uint64{3}, true)
	events, bytes := m.Stats()
	require.Equal(t, 2, events)
	require.Equal(t, 2*(eventOverhead+1+10), bytes)

	// Event 2 expires, and with it b's record: the store forgets which
	// names lost what, so a Since from before 2 is incomplete even for a,
	// which lost nothing after 1. Conservative, never wrong.
	clock.advance(5 * time.Second)
	requireSince(t, m, []string{"b"}, 0, nil, false)
	requireSince(t, m, []string{"b"}, 2, nil, true)
	requireSince(t, m, []string{"a"}, 1, []uint64{3}, false)
	requireSince(t, m, []string{"a"}, 2, []uint64{3}, true)

	clock.advance(time.Hour)
	requireSince(t, m, []string{"a", "b"}, 0, nil, false)
	requireSince(t, m, []string{"a", "b"}, 3, nil, true)
	events, bytes = m.Stats()
	require.Zero(t, events)
	require.Zero(t, bytes)
	require.Empty(t, m.names, "expired names leave no record behind")
	require.Zero(t, m.all.Len())
}

func TestMemoryTTLExpiresOnStats(t *testing.T) {
	clock := newFakeClock()
	m := newMemoryAt(Limits{Size: 100, TTL: time.Second}, clock)
	m.Append(event(1, "a", 10))
	clock.advance(2 * time.Second)
	events, bytes := m.Stats()
	require.Zero(t, events, "an idle store does not report expired events")
	require.Zero(t, bytes)
}

func TestMemoryMaxBytesDropsTheOldestOverall(t *testing.T) {
	const perEvent = eventOverhead + 1 + 10
	m := NewMemory(Limits{Size: 100, MaxBytes: 3 * perEvent})
	m.Append(event(1, "a", 10))
	m.Append(event(2, "b", 10))
	m.Append(event(3, "a", 10))
	events, bytes := m.Stats()
	require.Equal(t, 3, events)
	require.Equal(t, 3*perEvent, bytes, "exactly at the limit is allowed")

	m.Append(event(4, "b", 10))
	requireSince(t, m, []string{"a", "b"}, 0, []uint64{2, 3, 4}, false)
	requireSince(t, m, []string{"a"}, 1, []uint64{3}, true)
	requireSince(t, m, []string{"b"}, 0, []uint64{2, 4}, true) // b lost nothing

	m.Append(event(5, "c", 10)) // drops 2, b's oldest
	requireSince(t, m, []string{"b"}, 0, []uint64{4}, false)
	requireSince(t, m, []string{"b"}, 2, []uint64{4}, true)

	m.Append(event(6, "c", 10)) // drops 3, a's last: a's record goes, floor rises to 3
	requireSince(t, m, []string{"a"}, 2, nil, false)
	requireSince(t, m, []string{"a"}, 3, nil, true)
	events, bytes = m.Stats()
	require.Equal(t, 3, events)
	require.Equal(t, 3*perEvent, bytes)
}

func TestMemoryEventLargerThanMaxBytes(t *testing.T) {
	const perEvent = eventOverhead + 1 + 10
	m := NewMemory(Limits{Size: 100, MaxBytes: 3 * perEvent})
	m.Append(event(1, "a", 10))
	m.Append(event(2, "b", 10))

	// Too big for the whole store: dropped at once, without evicting
	// anything else first.
	m.Append(event(3, "a", 3*perEvent))
	requireSince(t, m, []string{"a", "b"}, 0, []uint64{1, 2}, false)
	requireSince(t, m, []string{"a"}, 2, nil, false) // a remembers that it lost 3
	requireSince(t, m, []string{"a"}, 3, nil, true)
	requireSince(t, m, []string{"b"}, 0, []uint64{2}, true) // b lost nothing

	// A name without a record has nothing to remember the loss by, so
	// the floor takes it.
	m.Append(event(4, "c", 3*perEvent))
	requireSince(t, m, []string{"c"}, 3, nil, false)
	requireSince(t, m, []string{"c"}, 4, nil, true)
	requireSince(t, m, []string{"b"}, 3, nil, false) // conservative: the floor covers every name

	events, bytes := m.Stats()
	require.Equal(t, 2, events)
	require.Equal(t, 2*perEvent, bytes)
}

func TestMemoryStatsBytesStayWithinMaxBytes(t *testing.T) {
	const maxBytes = 4096
	m := NewMemory(Limits{Size: 50, MaxBytes: maxBytes})
	rng := rand.New(rand.NewPCG(1, 2))
	for seq := uint64(1); seq <= 5000; seq++ {
		m.Append(event(seq, fmt.Sprint("n", rng.IntN(20)), rng.IntN(600)))
		events, bytes := m.Stats()
		require.LessOrEqual(t, bytes, maxBytes)
		require.Positive(t, events)
	}
}

func TestEventSize(t *testing.T) {
	// Exactly 21 bytes of capacity: sameArray compares where capacities end.
	frame := make([]byte, 21)
	copy(frame, `0123456789{"data":42}`)
	tests := []struct {
		name string
		e    Event
		want int
	}{
		{"data aliases the frame", Event{Name: "ab", Frame: frame, Data: frame[10:21]}, eventOverhead + 2 + 21},
		{"data at the frame's start", Event{Name: "ab", Frame: frame, Data: frame[:2]}, eventOverhead + 2 + 21},
		{"separate data", Event{Name: "ab", Frame: frame, Data: []byte("42")}, eventOverhead + 2 + 21 + 2},
		{"no frame", Event{Name: "ab", Data: []byte("42")}, eventOverhead + 2 + 2},
		{"empty", Event{}, eventOverhead},
		// A full slice expression hides the aliasing; counting twice errs
		// on the safe side.
		{"capped alias counts twice", Event{Frame: frame, Data: frame[10:20:20]}, eventOverhead + 21 + 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, eventSize(tc.e))
		})
	}
}

func TestMemorySinceMergesNamesBySeq(t *testing.T) {
	m := NewMemory(Limits{Size: 100})
	names := []string{"a", "b", "c"}
	for seq := uint64(1); seq <= 30; seq++ {
		m.Append(event(seq, names[(seq*7)%3], 5))
	}
	events, complete := m.Since([]string{"c", "a"}, 4, 0)
	require.True(t, complete)
	var want []uint64
	for seq := uint64(5); seq <= 30; seq++ {
		if n := names[(seq*7)%3]; n == "a" || n == "c" {
			want = append(want, seq)
		}
	}
	require.Equal(t, want, seqs(events))
	for _, e := range events {
		require.Equal(t, names[(e.Seq*7)%3], e.Name)
	}
}

func TestMemorySinceDuplicateNames(t *testing.T) {
	m := NewMemory(Limits{Size: 100})
	m.Append(event(1, "a", 5))
	m.Append(event(2, "b", 5))
	m.Append(event(3, "a", 5))
	requireSince(t, m, []string{"a", "a", "b", "a"}, 0, []uint64{1, 2, 3}, true)
	requireSince(t, m, []string{"a", "a"}, 0, []uint64{1, 3}, true)
}

func TestMemorySinceUnknownName(t *testing.T) {
	m := NewMemory(Limits{Size: 2})
	requireSince(t, m, []string{"nobody"}, 0, nil, true)
	requireSince(t, m, nil, 0, nil, true)
	m.Append(event(1, "a", 5))
	requireSince(t, m, []string{"nobody"}, 0, nil, true) // a Size drop elsewhere is not the floor
	requireSince(t, m, []string{"nobody"}, 100, nil, true)
}

func TestMemoryForgottenNameRaisesFloor(t *testing.T) {
	clock := newFakeClock()
	m := newMemoryAt(Limits{Size: 10, TTL: time.Minute}, clock)
	m.Append(event(1, "b", 5))
	clock.advance(30 * time.Second)
	m.Append(event(2, "a", 5))
	clock.advance(31 * time.Second) // b's only event expires: b's record goes
	m.Append(event(3, "a", 5))
	require.NotContains(t, m.names, "b")
	requireSince(t, m, []string{"a"}, 0, []uint64{2, 3}, false)
	requireSince(t, m, []string{"a"}, 1, []uint64{2, 3}, true)
	requireSince(t, m, []string{"b"}, 0, nil, false)
	requireSince(t, m, []string{"b"}, 1, nil, true)
	requireSince(t, m, []string{"never"}, 0, nil, false)
}

func TestMemoryDisabled(t *testing.T) {
	for _, size := range []int{0, -1} {
		t.Run(fmt.Sprint("size ", size), func(t *testing.T) {
			m := NewMemory(Limits{Size: size, TTL: time.Minute, MaxBytes: 1 << 20})
			requireSince(t, m, []string{"a"}, 0, nil, true)
			for seq := uint64(1); seq <= 3; seq++ {
				m.Append(event(seq, "a", 5))
			}
			events, bytes := m.Stats()
			require.Zero(t, events)
			require.Zero(t, bytes)
			requireSince(t, m, []string{"a"}, 2, nil, false)
			requireSince(t, m, []string{"b"}, 2, nil, false)
			requireSince(t, m, []string{"a"}, 3, nil, true)
			requireSince(t, m, nil, 3, nil, true)
			require.Empty(t, m.names)
		})
	}
}

func TestMemoryIgnoresSeqsOutOfOrder(t *testing.T) {
	m := NewMemory(Limits{Size: 10})
	m.Append(event(0, "a", 5)) // Seq 0 is before the first event
	m.Append(event(5, "a", 5))
	m.Append(event(5, "a", 5))
	m.Append(event(3, "b", 5))
	requireSince(t, m, []string{"a", "b"}, 0, []uint64{5}, true)
	events, _ := m.Stats()
	require.Equal(t, 1, events)
}

func TestMemoryTombstonesStayBounded(t *testing.T) {
	t.Run("one name", func(t *testing.T) {
		m := NewMemory(Limits{Size: 10})
		for seq := uint64(1); seq <= 100_000; seq++ {
			m.Append(event(seq, "a", 1))
			require.LessOrEqual(t, m.all.Len(), 10)
		}
		require.LessOrEqual(t, m.all.Cap(), 16)
		requireSince(t, m, []string{"a"}, 99_990, []uint64{99_991, 99_992, 99_993, 99_994, 99_995, 99_996, 99_997, 99_998, 99_999, 100_000}, true)
	})
	t.Run("a rare name pins the front", func(t *testing.T) {
		m := NewMemory(Limits{Size: 10})
		m.Append(event(1, "rare", 1))
		for seq := uint64(2); seq <= 100_000; seq++ {
			m.Append(event(seq, "busy", 1))
			require.LessOrEqual(t, m.all.Len(), 2*11+minCompaction)
		}
		require.LessOrEqual(t, m.all.Cap(), 256)
		requireSince(t, m, []string{"rare"}, 0, []uint64{1}, true)
		events, complete := m.Since([]string{"busy", "rare"}, 99_990, 0)
		require.True(t, complete)
		require.Len(t, events, 10)

		// The compacted order still drives MaxBytes-style eviction: the
		// rare event is still the oldest.
		m.dropOldest()
		requireSince(t, m, []string{"rare"}, 0, nil, false)
		events, _ = m.Since([]string{"busy"}, 0, 0)
		require.Len(t, events, 10)
	})
}

func TestMemoryConcurrentUse(t *testing.T) {
	m := NewMemory(Limits{Size: 100, TTL: time.Minute, MaxBytes: 64 << 10})
	var wg sync.WaitGroup
	wg.Go(func() {
		for seq := uint64(1); seq <= 5000; seq++ {
			m.Append(event(seq, fmt.Sprint("n", seq%7), 50))
		}
	})
	for range 4 {
		wg.Go(func() {
			for i := range 1000 {
				events, _ := m.Since([]string{"n1", "n3"}, uint64(i), 0)
				// assert, not require: FailNow must not run off the test's goroutine.
				assert.True(t, slices.IsSortedFunc(events, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) }))
				_, bytes := m.Stats()
				assert.LessOrEqual(t, bytes, 64<<10)
			}
		})
	}
	wg.Wait()
}

// model is the history done the slow, obvious way, to check Memory against.
type model struct {
	limits  Limits
	kept    []modelEvent
	dropped []Event
	last    uint64
}

type modelEvent struct {
	Event
	at time.Time
}

func (md *model) append(e Event, now time.Time) {
	md.expire(now)
	if e.Seq <= md.last {
		return
	}
	md.last = e.Seq
	if md.limits.Size <= 0 || (md.limits.MaxBytes > 0 && eventSize(e) > md.limits.MaxBytes) {
		md.dropped = append(md.dropped, e)
		return
	}
	md.kept = append(md.kept, modelEvent{e, now})
	var ofName []int
	for i, k := range md.kept {
		if k.Name == e.Name {
			ofName = append(ofName, i)
		}
	}
	if len(ofName) > md.limits.Size {
		md.dropAt(ofName[0])
	}
	for md.limits.MaxBytes > 0 && md.bytes() > md.limits.MaxBytes {
		md.dropAt(0)
	}
}

func (md *model) expire(now time.Time) {
	for md.limits.TTL > 0 && len(md.kept) > 0 && now.Sub(md.kept[0].at) > md.limits.TTL {
		md.dropAt(0)
	}
}

func (md *model) dropAt(i int) {
	md.dropped = append(md.dropped, md.kept[i].Event)
	md.kept = slices.Delete(md.kept, i, i+1)
}

func (md *model) bytes() int {
	n := 0
	for _, k := range md.kept {
		n += eventSize(k.Event)
	}
	return n
}

// since returns the kept events asked for, and whether any event asked for
// was dropped.
func (md *model) since(names []string, after uint64, now time.Time) (kept []uint64, lost bool) {
	md.expire(now)
	for _, k := range md.kept {
		if k.Seq > after && slices.Contains(names, k.Name) {
			kept = append(kept, k.Seq)
		}
	}
	for _, d := range md.dropped {
		if d.Seq > after && slices.Contains(names, d.Name) {
			lost = true
		}
	}
	return kept, lost
}

// TestMemoryAgainstModel runs random appends, clock steps and queries on
// Memory and on model: the events must match, Stats must match, and
// complete must never be true when the model lost an event asked for (and
// with Size alone, must be exactly whether it did).
func TestMemoryAgainstModel(t *testing.T) {
	limits := []Limits{
		{Size: 3},
		{Size: 5, TTL: 10 * time.Second},
		{Size: 8, MaxBytes: 1000},
		{Size: 4, TTL: 5 * time.Second, MaxBytes: 600},
		{Size: 6, TTL: 8 * time.Second, MaxBytes: 300}, // some events are bigger than MaxBytes
		{Size: 0},
	}
	for li, l := range limits {
		t.Run(fmt.Sprintf("%+v", l), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(li), 7))
			clock := newFakeClock()
			m := newMemoryAt(l, clock)
			md := &model{limits: l}
			names := []string{"a", "b", "c", "d", "e"}
			seq := uint64(0)
			incomplete, answers := 0, 0
			for range 3000 {
				switch r := rng.IntN(10); {
				case r < 6:
					if rng.IntN(20) > 0 { // now and then a stale Seq, ignored by both
						seq++
					}
					e := event(seq, names[rng.IntN(len(names))], rng.IntN(300))
					m.Append(e)
					md.append(e, clock.now())
				case r < 8:
					clock.advance(time.Duration(rng.IntN(3000)) * time.Millisecond)
				default:
					asked := make([]string, 1+rng.IntN(3))
					for i := range asked {
						asked[i] = names[rng.IntN(len(names))]
					}
					after := seq - min(seq, uint64(rng.IntN(40)))
					events, complete := m.Since(asked, after, 0)
					want, lost := md.since(asked, after, clock.now())
					require.Equal(t, want, seqs(events), "events of %q after %d", asked, after)
					if lost {
						require.False(t, complete, "%q after %d lost an event", asked, after)
					}
					if l.Size > 0 && l.TTL == 0 && l.MaxBytes == 0 {
						// Size alone never empties a name, so no record
						// is forgotten and the answer is exact.
						require.Equal(t, !lost, complete, "%q after %d", asked, after)
					}
					answers++
					if !complete {
						incomplete++
					}
				}
				events, bytes := m.Stats()
				md.expire(clock.now())
				require.Equal(t, len(md.kept), events)
				require.Equal(t, md.bytes(), bytes)
			}
			t.Logf("%d of %d answers incomplete", incomplete, answers)
		})
	}
}

// requireCounts checks that the store's counters agree with what its queues
// hold: events and bytes with the records, tombstones with the store-wide
// queue.
func requireCounts(t *testing.T, m *Memory) {
	t.Helper()
	events, bytes, tombstones := 0, 0, 0
	for _, rec := range m.names {
		for i := range rec.events.Len() {
			events++
			bytes += eventSize(rec.event(i))
		}
	}
	for i := range m.all.Len() {
		if isTombstone(m.all.At(i)) {
			tombstones++
		}
	}
	require.Equal(t, events, m.events, "events")
	require.Equal(t, bytes, m.bytes, "bytes")
	require.Equal(t, tombstones, m.tombstones, "tombstones")
	require.Equal(t, m.events+m.tombstones, m.all.Len(), "every ref is a live event or a tombstone")
}

// TestMemoryCompaction pins when the store-wide queue is compacted: once
// tombstones reach minCompaction and outnumber the live events, not one
// append earlier or later. A name appended first and never again keeps
// the queue's front live, so that only compaction reclaims tombstones.
func TestMemoryCompaction(t *testing.T) {
	for _, live := range []int{2, minCompaction - 1, minCompaction, minCompaction + 1, 3 * minCompaction} {
		t.Run(fmt.Sprint(live, " live"), func(t *testing.T) {
			m := NewMemory(Limits{Size: 1})
			seq := uint64(0)
			for i := range live - 1 {
				seq++
				m.Append(event(seq, fmt.Sprint("pinned", i), 10))
			}
			seq++
			m.Append(event(seq, "busy", 10))
			requireCounts(t, m)
			require.Equal(t, live, m.events)
			require.Zero(t, m.tombstones)

			// Compaction comes at the first append that leaves this many
			// tombstones.
			trigger := max(minCompaction, live+1)
			for round := range 3 {
				for k := 1; k <= trigger; k++ {
					seq++
					m.Append(event(seq, "busy", 10))
					if k < trigger {
						require.Equal(t, k, m.tombstones, "round %d: %d appends to busy, no compaction yet", round, k)
						require.Equal(t, live+k, m.all.Len())
					} else {
						require.Zero(t, m.tombstones, "round %d: compacted at %d tombstones", round, k)
						require.Equal(t, live, m.all.Len())
					}
					require.Equal(t, live, m.events)
					requireCounts(t, m)
				}
			}
			events, complete := m.Since([]string{"busy", "pinned0"}, 0, 0)
			require.Equal(t, []uint64{1, seq}, seqs(events))
			require.False(t, complete, "busy dropped events")
		})
	}
}

// TestMemoryTombstonesAtTheFront checks the counters when tombstones reach
// the front of the store-wide queue and leave it one by one, without a
// compaction: a pinned event at the front expires by MaxBytes, and the
// tombstones behind it go with it.
func TestMemoryTombstonesAtTheFront(t *testing.T) {
	m := NewMemory(Limits{Size: 1, MaxBytes: 3 * eventSize(event(0, "a", 10))})
	m.Append(event(1, "a", 10))
	for seq := uint64(2); seq <= 20; seq++ {
		m.Append(event(seq, "b", 10))
		requireCounts(t, m)
	}
	require.Equal(t, 18, m.tombstones)
	require.Equal(t, 20, m.all.Len())
	// Two more names: the fourth kept event overflows MaxBytes and drops
	// "a", and the tombstones of "b" then lead the queue and leave it.
	m.Append(event(21, "c", 10))
	requireCounts(t, m)
	m.Append(event(22, "d", 10))
	requireCounts(t, m)
	require.Zero(t, m.tombstones)
	require.Equal(t, 3, m.events)
	requireSince(t, m, []string{"a", "b", "c", "d"}, 0, []uint64{20, 21, 22}, false)
}

// TestMemorySinceAllocatesWhatItReturns: the answer's capacity is its
// length, for one name or several, whatever part of each queue it takes.
func TestMemorySinceAllocatesWhatItReturns(t *testing.T) {
	m := NewMemory(Limits{Size: 10})
	for seq := uint64(1); seq <= 12; seq++ {
		m.Append(event(seq, fmt.Sprint("n", seq%3), 1))
	}
	for _, names := range [][]string{{"n0"}, {"n0", "n1"}, {"n0", "n1", "n2"}, {"n0", "none"}} {
		for _, after := range []uint64{0, 4, 9, 11} {
			events, _ := m.Since(names, after, 0)
			require.Equal(t, len(events), cap(events), "%q after %d", names, after)
		}
	}
}

// Since with max returns the newest max events, merged across names, and
// says that they are not all.
func TestMemorySinceMax(t *testing.T) {
	m := NewMemory(Limits{Size: 100})
	// a: 1..10; b: 11, 13, 15; c: 12, 14
	for seq := uint64(1); seq <= 10; seq++ {
		m.Append(event(seq, "a", 10))
	}
	for _, seq := range []uint64{11, 12, 13, 14, 15} {
		name := "b"
		if seq%2 == 0 {
			name = "c"
		}
		m.Append(event(seq, name, 10))
	}
	cases := []struct {
		names    []string
		after    uint64
		max      int
		want     []uint64
		complete bool
	}{
		{[]string{"a"}, 0, 3, []uint64{8, 9, 10}, false},
		{[]string{"a"}, 0, 10, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, true},
		{[]string{"a"}, 7, 3, []uint64{8, 9, 10}, true},
		{[]string{"a"}, 6, 3, []uint64{8, 9, 10}, false},
		{[]string{"b", "c"}, 0, 4, []uint64{12, 13, 14, 15}, false},
		{[]string{"b", "c"}, 0, 5, []uint64{11, 12, 13, 14, 15}, true},
		{[]string{"a", "c"}, 8, 2, []uint64{12, 14}, false},
		{[]string{"a", "c"}, 8, 4, []uint64{9, 10, 12, 14}, true},
		{[]string{"c", "a", "c"}, 9, 0, []uint64{10, 12, 14}, true},
	}
	for _, tc := range cases {
		events, complete := m.Since(tc.names, tc.after, tc.max)
		require.Equal(t, tc.want, seqs(events), "%q after %d, max %d", tc.names, tc.after, tc.max)
		require.Equal(t, tc.complete, complete, "complete: %q after %d, max %d", tc.names, tc.after, tc.max)
	}
}
