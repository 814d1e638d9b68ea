package history

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Forget marks a gap of unknown names: a Since from before its end is
// incomplete, one from its end on is complete, and an Append inside it is
// ignored.
func TestForget(t *testing.T) {
	m := NewMemory(Limits{Size: 10})
	m.Append(Event{Seq: 1, Name: "a", Data: []byte(`1`)})
	m.Forget(4)
	m.Append(Event{Seq: 3, Name: "a", Data: []byte(`3`)}) // inside the gap
	m.Append(Event{Seq: 5, Name: "a", Data: []byte(`5`)})

	events, complete := m.Since([]string{"a"}, 1, 0)
	assert.False(t, complete)
	assert.Equal(t, []uint64{5}, seqs(events))
	events, complete = m.Since([]string{"a"}, 4, 0)
	assert.True(t, complete)
	assert.Equal(t, []uint64{5}, seqs(events))

	m.Forget(2) // an older gap lowers nothing
	_, complete = m.Since([]string{"a"}, 4, 0)
	assert.True(t, complete)
}

// Reset empties the store for a sequence that starts again from 1.
func TestReset(t *testing.T) {
	m := NewMemory(Limits{Size: 10})
	for seq := uint64(1); seq <= 3; seq++ {
		m.Append(Event{Seq: seq, Name: "a", Data: []byte(`1`)})
	}
	m.Forget(7)
	m.Reset()
	n, bytes := m.Stats()
	assert.Zero(t, n)
	assert.Zero(t, bytes)
	m.Append(Event{Seq: 1, Name: "a", Data: []byte(`"new"`)})
	events, complete := m.Since([]string{"a"}, 0, 0)
	assert.True(t, complete, "the old floor is gone")
	assert.Equal(t, []uint64{1}, seqs(events))
}
