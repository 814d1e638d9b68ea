package deque

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// contents returns q's elements, front first.
func contents[T any](q *Deque[T]) []T {
	out := make([]T, 0, q.Len())
	for i := range q.Len() {
		out = append(out, q.At(i))
	}
	return out
}

func TestDequeWrapsAndGrows(t *testing.T) {
	var q Deque[int]
	var want []int
	next := 0
	// Interleave pushes and pops so that the ring wraps before it grows.
	for round := range 50 {
		for range round%7 + 2 {
			q.PushBack(next)
			want = append(want, next)
			next++
		}
		for range round % 5 {
			require.Equal(t, want[0], q.Front())
			require.Equal(t, want[0], q.PopFront())
			want = want[1:]
		}
		require.Equal(t, len(want), q.Len())
		require.Equal(t, want, contents(&q))
	}
}

func TestDequeShrinksWhenMostlyEmpty(t *testing.T) {
	var q Deque[int]
	for i := range 1000 {
		q.PushBack(i)
	}
	require.Equal(t, 1024, len(q.buf))
	for range 990 {
		q.PopFront()
	}
	require.LessOrEqual(t, len(q.buf), 64, "a drained buffer gives its memory back")
	require.Equal(t, []int{990, 991, 992, 993, 994, 995, 996, 997, 998, 999}, contents(&q))
	for q.Len() > 0 {
		q.PopFront()
	}
	require.Equal(t, minDequeCap, len(q.buf))
}

func TestDequeFilter(t *testing.T) {
	var q Deque[int]
	for i := range 12 {
		q.PushBack(i)
	}
	for range 6 {
		q.PopFront() // move the head so that the filter crosses the wrap
	}
	for i := 12; i < 200; i++ {
		q.PushBack(i)
	}
	q.Filter(func(v int) bool { return v%10 == 0 })
	want := []int{10}
	for v := 20; v < 200; v += 10 {
		want = append(want, v)
	}
	require.Equal(t, want, contents(&q))
	require.LessOrEqual(t, len(q.buf), 64, "filtering most elements away shrinks the buffer")
	q.PushBack(200)
	require.Equal(t, 200, q.At(q.Len()-1))

	q.Filter(func(int) bool { return false })
	require.Zero(t, q.Len())
	q.PushBack(1)
	require.Equal(t, []int{1}, contents(&q))
}

// TestDequeFilterAcrossTheWrap filters a ring whose elements really wrap
// around the end of its buffer: the front sits near the end and the back
// has wrapped to the start, with no push since growing it, so head is not
// reset by a resize.
func TestDequeFilterAcrossTheWrap(t *testing.T) {
	var q Deque[int]
	for i := 1; i <= 16; i++ {
		q.PushBack(i)
	}
	require.Len(t, q.buf, 16)
	for range 10 {
		q.PopFront()
	}
	require.Len(t, q.buf, 16, "six left of sixteen is not mostly empty")
	for i := 17; i <= 26; i++ {
		q.PushBack(i) // 11..16 at buf[10:16], then 17..26 wrap to buf[0:10]
	}
	require.Len(t, q.buf, 16, "the ring is full, not grown")
	require.Equal(t, 10, q.head)

	q.Filter(func(v int) bool { return v%3 != 0 })
	want := []int{11, 13, 14, 16, 17, 19, 20, 22, 23, 25, 26}
	require.Equal(t, want, contents(&q))
	require.Equal(t, 10, q.head, "eleven of sixteen kept: no resize")
	// The freed slots, the last five after the kept ones, are zeroed so that
	// the ring does not keep what it dropped alive.
	for i := len(want); i < len(q.buf); i++ {
		require.Zero(t, q.buf[(q.head+i)&(len(q.buf)-1)], "slot %d after the kept elements", i)
	}
	for _, v := range want {
		require.Equal(t, v, q.PopFront())
	}
}

// TestDequeShrinkBoundaries pins when the buffer shrinks: popFront halves
// it once a quarter or less is used, and filter sizes it to twice what it
// keeps, rounded up to a power of two; neither goes below minDequeCap nor
// reallocates a buffer that is already that small.
func TestDequeShrinkBoundaries(t *testing.T) {
	filled := func(n int) *Deque[int] {
		var q Deque[int]
		for i := 1; i <= n; i++ {
			q.PushBack(i)
		}
		return &q
	}
	t.Run("popFront", func(t *testing.T) {
		q := filled(32)
		require.Len(t, q.buf, 32)
		for range 23 {
			q.PopFront()
		}
		require.Len(t, q.buf, 32, "9 of 32 is more than a quarter")
		q.PopFront()
		require.Len(t, q.buf, 16, "8 of 32 is a quarter")
		require.Equal(t, []int{25, 26, 27, 28, 29, 30, 31, 32}, contents(q))
	})
	t.Run("filter to a quarter", func(t *testing.T) {
		q := filled(32)
		q.Filter(func(v int) bool { return v <= 8 })
		require.Len(t, q.buf, 16, "8 kept of 32: twice that")
		require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8}, contents(q))
	})
	t.Run("filter to more than a quarter", func(t *testing.T) {
		q := filled(32)
		q.Filter(func(v int) bool { return v <= 9 })
		require.Len(t, q.buf, 32)
	})
	t.Run("filter to a power of two", func(t *testing.T) {
		q := filled(64)
		q.Filter(func(v int) bool { return v <= 8 })
		require.Len(t, q.buf, 16, "8 kept: 16, not 32")
	})
	t.Run("filter a minimal buffer", func(t *testing.T) {
		q := filled(4)
		q.PopFront()
		q.PopFront()
		require.Len(t, q.buf, minDequeCap)
		allocs := testing.AllocsPerRun(10, func() { q.Filter(func(int) bool { return true }) })
		require.Zero(t, allocs, "2 of minDequeCap is a quarter, but the buffer cannot shrink")
		require.Equal(t, 2, q.head)
		require.Equal(t, []int{3, 4}, contents(q))
	})
}

func TestCeilPow2(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 16: 16, 17: 32, 1000: 1024} {
		require.Equal(t, want, ceilPow2(n), "ceilPow2(%d)", n)
	}
}
