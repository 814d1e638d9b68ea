package listen

import (
	"encoding/json"
	"sync"
	"time"
)

// Dedup gives a single instance's Publisher the Idempotency-Key promise that
// cluster mode gets from JetStream: within window, a publish with a key seen
// before is not published again and answers the first one's ID. Keys are
// kept in memory, at most maxKeys (the oldest go first when there are
// more), and are lost at a restart, along with the IDs they name.
//
// A publish that fails forgets its key, so that a retry publishes. Two
// publishes with one key at the same time publish once: the second waits
// for the first's answer.
type Dedup struct {
	pub     Publisher
	window  time.Duration
	maxKeys int
	now     func() time.Time

	mu    sync.Mutex
	keys  map[string]*dedupEntry
	order []*dedupEntry // by time of first publish, oldest first
	head  int           // order[:head] are gone
}

type dedupEntry struct {
	key  string
	at   time.Time
	done chan struct{} // closed once id and err are set
	id   string
	err  error
}

// NewDedup wraps pub.
func NewDedup(pub Publisher, window time.Duration, maxKeys int) *Dedup {
	return &Dedup{pub: pub, window: window, maxKeys: maxKeys, now: time.Now, keys: make(map[string]*dedupEntry)}
}

// Publish publishes without a key.
func (d *Dedup) Publish(event string, data json.RawMessage) (string, error) {
	return d.pub.Publish(event, data)
}

// PublishOnce publishes unless key was seen within the window.
func (d *Dedup) PublishOnce(key, event string, data json.RawMessage) (id string, duplicate bool, err error) {
	d.mu.Lock()
	now := d.now()
	d.expire(now)
	if e := d.keys[key]; e != nil {
		d.mu.Unlock()
		<-e.done
		if e.err != nil {
			return "", false, e.err
		}
		return e.id, true, nil
	}
	e := &dedupEntry{key: key, at: now, done: make(chan struct{})}
	d.keys[key] = e
	d.order = append(d.order, e)
	for len(d.keys) > d.maxKeys {
		d.drop()
	}
	d.mu.Unlock()

	e.id, e.err = d.pub.Publish(event, data)
	if e.err != nil {
		d.mu.Lock()
		if d.keys[key] == e {
			delete(d.keys, key)
		}
		d.mu.Unlock()
	}
	close(e.done)
	return e.id, false, e.err
}

// expire drops the keys older than the window; under mu.
func (d *Dedup) expire(now time.Time) {
	for d.head < len(d.order) && now.Sub(d.order[d.head].at) >= d.window {
		d.drop()
	}
}

// drop forgets the oldest key; under mu, with one to forget.
func (d *Dedup) drop() {
	e := d.order[d.head]
	d.order[d.head] = nil
	d.head++
	if d.keys[e.key] == e {
		delete(d.keys, e.key)
	}
	// Compact once half the slice is gone, so that it does not grow
	// without bound: O(1) amortized.
	if d.head > 64 && d.head*2 >= len(d.order) {
		d.order = append(d.order[:0], d.order[d.head:]...)
		d.head = 0
	}
}
