// Package deque is a FIFO ring buffer for queues that only grow at the
// back and shrink at the front: the history's per-name queues and the work
// queues' waiting and finished tasks.
package deque

// Deque is a FIFO ring buffer: it grows at the back and shrinks at the
// front, both in O(1), without the reallocation churn of re-slicing a plain
// slice from the front. The zero value is an empty deque.
type Deque[T any] struct {
	buf  []T // len(buf) is 0 or a power of two, so that indexes wrap with a mask
	head int // index in buf of the front element
	n    int
}

// minDequeCap is the smallest buffer a deque allocates or shrinks to: small
// enough for names with few events, large enough that a queue hovering
// around a few elements does not reallocate on every push and pop.
const minDequeCap = 8

func (q *Deque[T]) Len() int { return q.n }

// Cap is how many elements the buffer holds without growing: a bound on
// the memory a queue keeps, for tests.
func (q *Deque[T]) Cap() int { return len(q.buf) }

// At returns the i-th element from the front; 0 <= i < Len().
func (q *Deque[T]) At(i int) T { return q.buf[(q.head+i)&(len(q.buf)-1)] }

// Front returns the oldest element; the deque must not be empty.
func (q *Deque[T]) Front() T { return q.buf[q.head] }

func (q *Deque[T]) PushBack(v T) {
	if q.n == len(q.buf) {
		q.resize(max(minDequeCap, 2*len(q.buf)))
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = v
	q.n++
}

// PopFront removes and returns the oldest element; the deque must not be
// empty. The freed slot is zeroed so that the ring does not keep a dropped
// element alive, and the buffer shrinks once it is mostly empty, so
// that a burst does not pin its peak memory forever.
func (q *Deque[T]) PopFront() T {
	var zero T
	v := q.buf[q.head]
	q.buf[q.head] = zero
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	if len(q.buf) > minDequeCap && q.n <= len(q.buf)/4 {
		q.resize(len(q.buf) / 2)
	}
	return v
}

// Filter keeps, in order, only the elements for which keep returns true.
func (q *Deque[T]) Filter(keep func(T) bool) {
	var zero T
	mask := len(q.buf) - 1
	kept := 0
	for i := range q.n {
		v := q.buf[(q.head+i)&mask]
		if keep(v) {
			q.buf[(q.head+kept)&mask] = v
			kept++
		}
	}
	for i := kept; i < q.n; i++ {
		q.buf[(q.head+i)&mask] = zero
	}
	q.n = kept
	if len(q.buf) > minDequeCap && q.n <= len(q.buf)/4 {
		q.resize(max(minDequeCap, ceilPow2(2*q.n)))
	}
}

// resize moves the elements to a new buffer of size capacity, a power of two
// no smaller than Len().
func (q *Deque[T]) resize(capacity int) {
	buf := make([]T, capacity)
	if q.n > 0 {
		end := q.head + q.n
		if end <= len(q.buf) {
			copy(buf, q.buf[q.head:end])
		} else {
			k := copy(buf, q.buf[q.head:])
			copy(buf[k:], q.buf[:end-len(q.buf)])
		}
	}
	q.buf, q.head = buf, 0
}

// ceilPow2 returns the smallest power of two >= n, for n >= 1.
func ceilPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
