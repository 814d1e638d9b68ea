package main

import (
	"math"
	"math/bits"
)

// bitset is a fixed-size set of small non-negative integers.
type bitset []uint64

// newBitset returns an empty set that can hold 0..n-1.
func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) set(i int)      { b[i/64] |= 1 << (i % 64) }

// countMissing returns how many members of want are not in b.
func (b bitset) countMissing(want bitset) int {
	n := 0
	for i, w := range want {
		n += bits.OnesCount64(w &^ b[i])
	}
	return n
}

// FNV-1a 64-bit parameters, for the arrival-order hash.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// malformedSampleBytes bounds how much of a bad frame is kept for the report.
const malformedSampleBytes = 160

// tally is one subscriber's account of what it received. Only that
// subscriber's read loop writes it, so recording takes no lock; the report
// reads it after the loop has ended.
type tally struct {
	events          int      // sequences run 0..events-1 for each publisher
	seen            []bitset // per publisher: sequences received at least once
	lastSeq         []int    // per publisher: the latest sequence received, -1 before any
	latencies       []int64  // ns, one per first delivery; never grows past its capacity
	orderHash       uint64   // FNV-1a over (publisher, sequence) in arrival order
	received        int64    // well-formed deliveries, duplicates included
	duplicates      int64
	orderViolations int64
	malformed       int64
	malformedSample string // the first malformed frame and why
	lastRecv        int64  // Unix ns of the latest well-formed delivery
}

// newTally returns an empty tally for publishers × events sequences. Its
// latencies are appended into the capacity of latencies, which is this
// subscriber's window of a shared, preallocated slab.
func newTally(publishers, events int, latencies []int64) *tally {
	t := &tally{
		events:    events,
		seen:      make([]bitset, publishers),
		lastSeq:   make([]int, publishers),
		latencies: latencies[:0],
		orderHash: fnvOffset64,
	}
	for p := range t.seen {
		t.seen[p] = newBitset(events)
		t.lastSeq[p] = -1
	}
	return t
}

// record accounts one delivery received at now. first is true when this
// (publisher, sequence) had not been seen before. A delivery that arrives
// after a later sequence of the same publisher is an order violation; a
// duplicate is counted only as a duplicate.
func (t *tally) record(pl payload, now int64) (first bool, err error) {
	if pl.pub < 0 || pl.pub >= len(t.seen) || pl.seq < 0 || pl.seq >= t.events {
		return false, errOutOfRange
	}
	t.received++
	t.lastRecv = now
	t.hashArrival(pl)
	seen := t.seen[pl.pub]
	if seen.has(pl.seq) {
		t.duplicates++
		return false, nil
	}
	seen.set(pl.seq)
	if pl.seq < t.lastSeq[pl.pub] {
		t.orderViolations++
	}
	t.lastSeq[pl.pub] = pl.seq
	if len(t.latencies) < cap(t.latencies) {
		t.latencies = append(t.latencies, now-pl.sent)
	}
	return true, nil
}

// hashArrival folds (publisher, sequence) into the arrival-order hash.
func (t *tally) hashArrival(pl payload) {
	v := uint64(pl.pub)<<32 | uint64(uint32(pl.seq))
	for range 8 {
		t.orderHash ^= v & 0xff
		t.orderHash *= fnvPrime64
		v >>= 8
	}
}

// recordMalformed counts a frame that is not a valid delivery, keeping the
// first one as a sample.
func (t *tally) recordMalformed(frame []byte, why error) {
	t.malformed++
	if t.malformedSample == "" {
		t.malformedSample = why.Error() + ": " + truncate(string(frame), malformedSampleBytes)
	}
}

// lostAndUnexpected compares what was received with published, the
// sequences each publisher had acknowledged with 200 OK. lost are
// acknowledged events never received; unexpected are received events that
// were never acknowledged.
func (t *tally) lostAndUnexpected(published []bitset) (lost, unexpected int64) {
	for p, ok := range published {
		lost += int64(t.seen[p].countMissing(ok))
		unexpected += int64(ok.countMissing(t.seen[p]))
	}
	return lost, unexpected
}

// truncate shortens s to at most n bytes, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// deliveryStats merges every subscriber's tally against what was published.
type deliveryStats struct {
	expected        int64
	received        int64
	lost            int64
	duplicates      int64
	unexpected      int64
	orderViolations int64
	orderMismatches int64
	malformed       int64
	malformedSample []string
	lastRecv        int64
	latencies       []int64 // sorted by the caller, ns
}

// maxSamples bounds each list of example errors in the report.
const maxSamples = 5

// summarize merges tallies. published holds each publisher's acknowledged
// sequences and acked their total. The latencies are gathered into slab;
// when the tallies' windows are ascending, non-overlapping parts of slab
// itself (as openFleet makes them), the gathering happens in place.
func summarize(tallies []*tally, published []bitset, acked int, slab []int64) deliveryStats {
	st := deliveryStats{expected: int64(len(tallies)) * int64(acked)}
	merged := slab[:0]
	var completeHashes []uint64
	for _, t := range tallies {
		lost, unexpected := t.lostAndUnexpected(published)
		st.add(t, lost, unexpected)
		merged = append(merged, t.latencies...)
		if lost == 0 && unexpected == 0 && t.duplicates == 0 {
			completeHashes = append(completeHashes, t.orderHash)
		}
	}
	st.orderMismatches = countMismatches(completeHashes)
	st.latencies = merged
	return st
}

// add folds one tally into the totals.
func (st *deliveryStats) add(t *tally, lost, unexpected int64) {
	st.received += t.received
	st.lost += lost
	st.unexpected += unexpected
	st.duplicates += t.duplicates
	st.orderViolations += t.orderViolations
	st.malformed += t.malformed
	st.lastRecv = max(st.lastRecv, t.lastRecv)
	if t.malformedSample != "" && len(st.malformedSample) < maxSamples {
		st.malformedSample = append(st.malformedSample, t.malformedSample)
	}
}

// countMismatches returns how many hashes differ from the most common one.
// Only subscribers that received exactly the published set are compared, so
// that a loss or a duplicate, already reported as such, is not counted a
// second time as an order mismatch.
func countMismatches(hashes []uint64) int64 {
	counts := make(map[uint64]int, 4)
	best := 0
	for _, h := range hashes {
		counts[h]++
		best = max(best, counts[h])
	}
	return int64(len(hashes) - best)
}

// percentile returns the nearest-rank q-quantile (0 < q ≤ 1) of sorted
// values: the smallest value with at least q of all values at or below it.
// It returns 0 for no values. The epsilon keeps q·n that should be a whole
// number, such as 0.99·100 computed in floating point, from rounding up.
func percentile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted))-1e-9)) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}
