package jsqueue

// ring is a FIFO ring buffer (as queue's): a queue's remembered tasks only
// grow at the back and shrink at the front. The zero value is empty.
type ring[T any] struct {
	buf  []T // len(buf) is 0 or a power of two
	head int
	n    int
}

const minRing = 8

func (r *ring[T]) len() int { return r.n }

// front returns the oldest element; the ring must not be empty.
func (r *ring[T]) front() T { return r.buf[r.head] }

func (r *ring[T]) pushBack(v T) {
	if r.n == len(r.buf) {
		r.resize(max(minRing, 2*len(r.buf)))
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = v
	r.n++
}

// popFront removes the oldest element; the ring must not be empty.
func (r *ring[T]) popFront() T {
	var zero T
	v := r.buf[r.head]
	r.buf[r.head] = zero
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	if len(r.buf) > minRing && r.n <= len(r.buf)/4 {
		r.resize(len(r.buf) / 2)
	}
	return v
}

func (r *ring[T]) resize(capacity int) {
	buf := make([]T, capacity)
	for i := range r.n {
		buf[i] = r.buf[(r.head+i)&(len(r.buf)-1)]
	}
	r.buf, r.head = buf, 0
}
