package timeheap

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type item struct {
	name string
	at   time.Time
	idx  int
}

func newHeap() Heap[*item] {
	return New(func(i *item) time.Time { return i.at }, func(i *item) *int { return &i.idx })
}

// popAll pops every item due by now, in order.
func popAll(t *testing.T, h *Heap[*item], now time.Time) []string {
	var names []string
	for {
		it, ok := h.PopDue(now)
		if !ok {
			return names
		}
		assert.Equal(t, -1, it.idx, "a popped item is out of the heap")
		names = append(names, it.name)
	}
}

func TestHeap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	h := newHeap()
	_, ok := h.Next()
	assert.False(t, ok, "empty")

	a, b, c, d := &item{"a", at(3), -1}, &item{"b", at(1), -1}, &item{"c", at(2), -1}, &item{"d", at(5), -1}
	assert.True(t, h.Set(a), "the only item is the first")
	assert.True(t, h.Set(b), "earlier than a")
	assert.False(t, h.Set(c), "later than b")
	assert.False(t, h.Set(d))
	assert.Equal(t, 4, h.Len())
	next, ok := h.Next()
	require.True(t, ok)
	assert.Equal(t, at(1), next)

	// Moved: d becomes the earliest, b the latest.
	d.at = at(0)
	assert.True(t, h.Set(d))
	b.at = at(9)
	assert.False(t, h.Set(b))
	assert.Equal(t, 4, h.Len(), "Set of an item in the heap does not add it again")

	// Removed: c, twice (the second does nothing).
	h.Remove(c)
	assert.Equal(t, -1, c.idx)
	h.Remove(c)
	assert.Equal(t, 3, h.Len())

	assert.Empty(t, popAll(t, &h, at(-1)), "nothing due before the earliest")
	assert.Equal(t, []string{"d", "a"}, popAll(t, &h, at(3)), "due at 3: d (0) and a (3), in order")
	assert.Equal(t, 1, h.Len())

	h.Set(a)
	h.Clear()
	assert.Equal(t, 0, h.Len())
	assert.Equal(t, -1, a.idx, "cleared items are out of the heap")
	assert.Equal(t, -1, b.idx)
	assert.True(t, h.Set(b), "usable after Clear")
}

// TestHeapOrder: many items with random-ish times come out sorted, each
// index right all along.
func TestHeapOrder(t *testing.T) {
	h := newHeap()
	t0 := time.Unix(0, 0)
	items := make([]*item, 200)
	for i := range items {
		items[i] = &item{at: t0.Add(time.Duration((i*7919)%200) * time.Millisecond), idx: -1}
		h.Set(items[i])
		for _, it := range items[:i+1] {
			require.Same(t, it, h.s.items[it.idx], "item's index")
		}
	}
	var last time.Time
	for range items {
		it, ok := h.PopDue(t0.Add(time.Hour))
		require.True(t, ok)
		assert.False(t, it.at.Before(last), "out of order")
		last = it.at
	}
	_, ok := h.PopDue(t0.Add(time.Hour))
	assert.False(t, ok)
}
