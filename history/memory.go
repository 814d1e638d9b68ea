package history

import (
	"cmp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"eventsrv/internal/deque"
)

// Event is one accepted event as the history keeps it. The history keeps
// the slices, not copies: neither the caller of Append nor the receiver of
// Since may modify them.
type Event struct {
	Seq   uint64
	Name  string
	Data  []byte // the JSON data as published; may alias Frame's bytes
	Frame []byte // the encoded delivery, kept so that a replay costs no encoding; may be nil
}

// Limits bound the history. Negative values count as zero.
type Limits struct {
	// Size is how many events are kept per event name; 0 disables the
	// history, so that NewMemory keeps nothing.
	Size int
	// TTL drops events older than this; 0: no age limit.
	TTL time.Duration
	// MaxBytes bounds all kept events together, each counted by eventSize;
	// 0: no byte limit.
	MaxBytes int
}

// eventOverhead approximates what the store spends on an event besides its
// bytes (queue slots, time stamp, slice headers), so that MaxBytes bounds
// memory even for events with empty data.
const eventOverhead = 64

// eventSize is what an event counts against MaxBytes: its name, frame and
// data, plus eventOverhead. Data is not counted again when it lies in the
// same array as Frame, as the hub arranges by slicing the data out of the
// frame it has built: the bytes are held once.
func eventSize(e Event) int {
	n := eventOverhead + len(e.Name) + len(e.Frame)
	if !sameArray(e.Data, e.Frame) {
		n += len(e.Data)
	}
	return n
}

// sameArray reports whether a and b are slices of one array, without
// package unsafe: slices of one array end their capacity at the same
// element unless a full slice expression capped one of them, in which case
// the bytes are counted twice, which errs on the safe side.
func sameArray(a, b []byte) bool {
	return cap(a) > 0 && cap(b) > 0 && &a[:cap(a)][cap(a)-1] == &b[:cap(b)][cap(b)-1]
}

// Memory is a bounded in-memory history, safe for concurrent use. Create
// one with NewMemory.
//
// Events are kept per name, in a queue each, so that Size drops a name's
// oldest and Since finds a name's events by binary search. A second,
// store-wide queue remembers the order of all events, so that TTL and
// MaxBytes drop the oldest overall in O(1). An event dropped by Size leaves
// a tombstone in the store-wide queue; tombstones at its front are removed
// at once, and the queue is compacted when they outnumber the live events,
// so that it never holds more than about twice the kept events.
//
// To answer whether a Since is complete, each name's record remembers the
// highest Seq dropped from it. A name's record is deleted when its last
// event goes (only TTL and MaxBytes can empty a name), so that names that
// come and go cost nothing forever; the store then raises floor to that
// record's highest dropped Seq, as it can no longer tell whether that name
// lost events. This is conservative: a Since older than the TTL may be
// answered incomplete even when its names had no events; it is never
// answered complete when an event it asked for was dropped.
type Memory struct {
	limits Limits
	now    func() time.Time // time.Now; tests set their own clock

	mu    sync.Mutex
	names map[string]*record
	all   deque.Deque[ref] // every kept event and tombstone, in Seq order
	// tombstones counts the refs in all whose event Size has dropped.
	tombstones int
	events     int
	bytes      int
	// last is the highest Seq appended, so that stale or repeated Seqs
	// are recognized and ignored.
	last uint64
	// floor bounds what the store has forgotten: a dropped event with a
	// Seq above floor is remembered by its name's record, while at or
	// below floor the store can no longer tell which names lost events.
	floor uint64
}

// record is what the store knows about one event name.
type record struct {
	name   string
	events deque.Deque[entry]
	// dropped is the highest Seq dropped from this name: by the limits,
	// or at once for being bigger than MaxBytes.
	dropped uint64
}

// event returns the i-th kept event of rec, oldest first.
func (rec *record) event(i int) Event {
	en := rec.events.At(i)
	return Event{Seq: en.seq, Name: rec.name, Data: en.data, Frame: en.frame}
}

// entry is a kept event, without its name, which its record holds.
type entry struct {
	seq         uint64
	data, frame []byte
	at          time.Time
}

// ref places an event in the store-wide order. It is a tombstone once its
// Seq is below the front of its record's queue: Size has dropped it.
type ref struct {
	rec *record
	seq uint64
}

// minCompaction is how many tombstones may accumulate before the
// store-wide queue is compacted, so that small stores do not compact
// every few appends.
const minCompaction = 64

// NewMemory returns an empty history bounded by l.
func NewMemory(l Limits) *Memory {
	return &Memory{
		limits: Limits{Size: max(l.Size, 0), TTL: max(l.TTL, 0), MaxBytes: max(l.MaxBytes, 0)},
		now:    time.Now,
		names:  make(map[string]*record),
	}
}

// Append keeps e (its slices, not copies; see Event), stamped with the
// current time if there is a TTL, then drops what the limits no longer
// allow: the name's oldest beyond Size, events older than TTL, and the
// oldest events overall while over MaxBytes. An event bigger than MaxBytes
// on its own is dropped at once, rather than emptying the history before
// being dropped anyway. e.Seq must be larger than any appended before; an
// event that breaks this is ignored (it would break the order every answer
// relies on), and Append never panics.
func (m *Memory) Append(e Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var now time.Time // only a TTL needs the time, and reading the clock is not free
	if m.limits.TTL > 0 {
		now = m.now()
		m.expire(now)
	}
	if e.Seq <= m.last {
		return
	}
	m.last = e.Seq
	if m.limits.Size == 0 {
		// Disabled: every event is dropped as it comes, which floor
		// records without any per-name state.
		m.floor = e.Seq
		return
	}
	size := eventSize(e)
	rec := m.names[e.Name]
	if m.limits.MaxBytes > 0 && size > m.limits.MaxBytes {
		if rec != nil {
			rec.dropped = e.Seq
		} else {
			m.floor = e.Seq // no record to remember it by
		}
		return
	}
	if rec == nil {
		rec = &record{name: e.Name}
		m.names[e.Name] = rec
	}
	if rec.events.Len() >= m.limits.Size {
		// Drop before pushing, so that a full queue does not grow its
		// buffer for one element. The dropped event's ref stays in the
		// store-wide queue as a tombstone until reclaimTombstones.
		m.drop(rec, rec.events.PopFront())
		m.tombstones++
	}
	rec.events.PushBack(entry{seq: e.Seq, data: e.Data, frame: e.Frame, at: now})
	m.all.PushBack(ref{rec: rec, seq: e.Seq})
	m.events++
	m.bytes += size
	for m.limits.MaxBytes > 0 && m.bytes > m.limits.MaxBytes {
		m.dropOldest()
	}
	m.reclaimTombstones()
}

// Since returns the kept events of names with Seq > after, oldest first, and
// whether that is all of them: complete is false when an event of those
// names with Seq > after has been dropped (or may have been; see Memory),
// or when there were more than max (> 0), of which it returns the newest
// max. A name repeated in names counts once; a name ending in "*" is a
// pattern, for every name with the prefix before it (a subscription's
// wildcard). The events share their bytes with the store; they must not be
// modified.
//
// The store's lock, which Append waits for, is held only to copy the
// events out (at most max per name); merging names happens after.
func (m *Memory) Since(names []string, after uint64, max int) (events []Event, complete bool) {
	uniq := slices.Clone(names)
	slices.Sort(uniq)
	uniq = slices.Compact(uniq)
	var runs int
	events, complete, runs = m.collect(uniq, after, max)
	if runs > 1 {
		events = bySeq(events)
	}
	if max > 0 && len(events) > max {
		events, complete = events[len(events)-max:], false
	}
	return events, complete
}

// collect copies out the kept events of names (sorted, distinct) with Seq
// > after, at most max (> 0) of each name, the newest, name after name;
// runs is how many names had any. A name ending in "*" is a pattern: every
// name with the prefix before the "*". A name that several of names match
// is collected once.
func (m *Memory) collect(names []string, after uint64, max int) (events []Event, complete bool, runs int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireNow()
	complete = after >= m.floor
	var seen map[*record]bool // only when patterns could match a record twice
	take := func(rec *record) {
		if seen != nil {
			if seen[rec] {
				return
			}
			seen[rec] = true
		}
		if rec.dropped > after {
			complete = false
		}
		n := rec.events.Len()
		start := sort.Search(n, func(i int) bool { return rec.events.At(i).seq > after })
		if max > 0 && n-start > max {
			start, complete = n-max, false
		}
		if start == n {
			return
		}
		runs++
		if events == nil {
			events = make([]Event, 0, n-start)
		}
		for i := start; i < n; i++ {
			events = append(events, rec.event(i))
		}
	}
	for _, name := range names {
		prefix, wild := strings.CutSuffix(name, "*")
		if !wild {
			if rec := m.names[name]; rec != nil {
				take(rec)
			}
			continue
		}
		if seen == nil && len(names) > 1 {
			seen = make(map[*record]bool)
		}
		for n, rec := range m.names {
			if strings.HasPrefix(n, prefix) {
				take(rec)
			}
		}
	}
	return events, complete, runs
}

// bySeq returns events, runs of ascending Seq one after the other, in
// Seq order. Sorting small pointer-free positions and then building the
// events in order is several times faster than sorting the events
// themselves, whose every move of a pointer costs a write barrier while
// the collector runs.
func bySeq(events []Event) []Event {
	type position struct {
		seq uint64
		i   int
	}
	order := make([]position, len(events))
	for i, e := range events {
		order[i] = position{e.Seq, i}
	}
	slices.SortFunc(order, func(a, b position) int { return cmp.Compare(a.seq, b.seq) })
	sorted := make([]Event, len(events))
	for i, p := range order {
		sorted[i] = events[p.i]
	}
	return sorted
}

// Stats reports the events and bytes kept, for metrics. It drops expired
// events first, so that an idle store does not report them forever.
func (m *Memory) Stats() (events, bytes int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireNow()
	return m.events, m.bytes
}

// expire drops the events older than the TTL. It is called lazily, by each
// method, rather than by a timer, so that the store needs no goroutine.
// Events are stamped in Seq order, so the oldest are at the front; a clock
// that steps back only delays expiry.
func (m *Memory) expire(now time.Time) {
	cutoff := now.Add(-m.limits.TTL)
	for {
		m.popTombstones()
		if m.all.Len() == 0 || !m.all.Front().rec.events.Front().at.Before(cutoff) {
			return
		}
		m.dropOldest()
	}
}

// expireNow expires by the clock, if there is a TTL.
func (m *Memory) expireNow() {
	if m.limits.TTL > 0 {
		m.expire(m.now())
	}
}

// dropOldest drops the oldest kept event overall; there must be one.
func (m *Memory) dropOldest() {
	m.popTombstones()
	r := m.all.PopFront()
	// Not a tombstone, so r is its record's front: nothing older of that
	// name is kept.
	m.drop(r.rec, r.rec.events.PopFront())
	if r.rec.events.Len() == 0 {
		delete(m.names, r.rec.name)
		m.floor = max(m.floor, r.rec.dropped)
	}
}

// drop accounts for en, just removed from rec's queue.
func (m *Memory) drop(rec *record, en entry) {
	rec.dropped = max(rec.dropped, en.seq)
	m.events--
	m.bytes -= eventSize(Event{Name: rec.name, Data: en.data, Frame: en.frame})
}

// isTombstone reports whether r's event was dropped by Size. A record
// whose queue is empty has been deleted, and by then every ref to it has
// left the store-wide queue (they are older than its last event), so r's
// record always has a front here.
func isTombstone(r ref) bool { return r.seq < r.rec.events.Front().seq }

// popTombstones removes the tombstones at the front of the store-wide queue.
func (m *Memory) popTombstones() {
	for m.all.Len() > 0 && isTombstone(m.all.Front()) {
		m.all.PopFront()
		m.tombstones--
	}
}

// reclaimTombstones keeps tombstones from growing the store-wide queue
// without bound when only Size drops events: those at the front go at once,
// and the rest once they outnumber the kept events, which costs O(1)
// amortized per append since a compaction at least halves the queue.
func (m *Memory) reclaimTombstones() {
	m.popTombstones()
	if m.tombstones >= minCompaction && m.tombstones > m.events {
		m.all.Filter(func(r ref) bool { return !isTombstone(r) })
		m.tombstones = 0
	}
}

// Forget records that the events up to Seq through, of names the store
// cannot know, will never be appended: a shared stream's sequence has a
// gap there (events its own limits dropped before this store saw them).
// A Since from before through is then answered incomplete, and an Append
// at or below it is ignored.
func (m *Memory) Forget(through uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.floor = max(m.floor, through)
	m.last = max(m.last, through)
}

// Reset empties the store for a new sequence, whose Seqs start again from
// 1: a shared stream was created anew.
func (m *Memory) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.names = make(map[string]*record)
	m.all = deque.Deque[ref]{}
	m.tombstones, m.events, m.bytes, m.last, m.floor = 0, 0, 0, 0, 0
}
