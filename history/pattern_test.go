package history

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A name ending in "*" asks for every name with that prefix; an event that
// a pattern and an exact name both match comes once, in Seq order.
func TestSincePatterns(t *testing.T) {
	m := NewMemory(Limits{Size: 2})
	for i, name := range []string{"order.a", "order.b", "invoice", "order.a", "order.a", "ord"} {
		m.Append(Event{Seq: uint64(i + 1), Name: name, Data: []byte(`1`)})
	}
	events, complete := m.Since([]string{"order.*"}, 0, 0)
	assert.False(t, complete, "order.a lost event 1 to Size")
	assert.Equal(t, []uint64{2, 4, 5}, seqs(events))

	events, complete = m.Since([]string{"order.*", "order.a", "invoice"}, 1, 0)
	assert.True(t, complete)
	assert.Equal(t, []uint64{2, 3, 4, 5}, seqs(events))

	events, _ = m.Since([]string{"*"}, 2, 0)
	assert.Equal(t, []uint64{3, 4, 5, 6}, seqs(events))
	events, _ = m.Since([]string{"x*"}, 0, 0)
	assert.Empty(t, events)
}
