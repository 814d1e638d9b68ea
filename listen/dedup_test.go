package listen

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingPublisher numbers its publishes; it fails while fail is set.
type countingPublisher struct {
	mu      sync.Mutex
	n       int
	fail    error
	release chan struct{} // when set, each publish waits for it
}

func (p *countingPublisher) Publish(string, json.RawMessage) (string, error) {
	if p.release != nil {
		<-p.release
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return "", p.fail
	}
	p.n++
	return fmt.Sprint("id-", p.n), nil
}

func TestDedup(t *testing.T) {
	pub := &countingPublisher{}
	d := NewDedup(pub, time.Minute, 100)
	clock := time.Unix(1000, 0)
	d.now = func() time.Time { return clock }

	id, dup, err := d.PublishOnce("k", "a", []byte(`1`))
	require.NoError(t, err)
	assert.Equal(t, "id-1", id)
	assert.False(t, dup)

	id, dup, err = d.PublishOnce("k", "b", []byte(`2`))
	require.NoError(t, err)
	assert.Equal(t, "id-1", id, "the same key answers the first ID, whatever the body")
	assert.True(t, dup)

	id, _, _ = d.PublishOnce("other", "a", []byte(`1`))
	assert.Equal(t, "id-2", id)
	id, _ = d.Publish("a", []byte(`1`))
	assert.Equal(t, "id-3", id, "no key: always published")

	clock = clock.Add(time.Minute - time.Nanosecond)
	_, dup, _ = d.PublishOnce("k", "a", []byte(`1`))
	assert.True(t, dup, "still inside the window")
	clock = clock.Add(time.Nanosecond)
	id, dup, _ = d.PublishOnce("k", "a", []byte(`1`))
	assert.False(t, dup, "past the window the key is new")
	assert.Equal(t, "id-4", id)
}

func TestDedupForgetsFailures(t *testing.T) {
	pub := &countingPublisher{fail: errors.New("down")}
	d := NewDedup(pub, time.Minute, 100)
	_, _, err := d.PublishOnce("k", "a", []byte(`1`))
	require.Error(t, err)
	pub.fail = nil
	id, dup, err := d.PublishOnce("k", "a", []byte(`1`))
	require.NoError(t, err)
	assert.False(t, dup, "a failed publish is not remembered: the retry publishes")
	assert.Equal(t, "id-1", id)
}

func TestDedupBoundsKeys(t *testing.T) {
	pub := &countingPublisher{}
	d := NewDedup(pub, time.Hour, 100)
	for i := range 1000 {
		_, _, err := d.PublishOnce(fmt.Sprint(i), "a", []byte(`1`))
		require.NoError(t, err)
	}
	assert.Len(t, d.keys, 100)
	assert.LessOrEqual(t, len(d.order)-d.head, 100)
	assert.LessOrEqual(t, len(d.order), 300, "the order slice is compacted")
	_, dup, _ := d.PublishOnce("999", "a", []byte(`1`))
	assert.True(t, dup, "the newest keys are kept")
	_, dup, _ = d.PublishOnce("0", "a", []byte(`1`))
	assert.False(t, dup, "the oldest went first")
}

// Concurrent publishes with one key publish once; the others wait for its
// answer.
func TestDedupConcurrent(t *testing.T) {
	pub := &countingPublisher{release: make(chan struct{})}
	d := NewDedup(pub, time.Minute, 100)
	var wg sync.WaitGroup
	ids := make([]string, 8)
	dups := make([]bool, 8)
	for i := range ids {
		wg.Go(func() {
			var err error
			ids[i], dups[i], err = d.PublishOnce("k", "a", []byte(`1`))
			assert.NoError(t, err)
		})
	}
	close(pub.release)
	wg.Wait()
	assert.Equal(t, 1, pub.n)
	first := 0
	for i := range ids {
		assert.Equal(t, "id-1", ids[i])
		if !dups[i] {
			first++
		}
	}
	assert.Equal(t, 1, first, "one of them published")
}
