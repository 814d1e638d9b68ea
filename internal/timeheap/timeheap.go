// Package timeheap is a min-heap of items by the time they are due, each
// item keeping its own index in the heap, so that moving or removing one
// costs O(log n) rather than a search. Both work-queue brokers keep their
// tasks' timers in one (package queue, one node; package jsqueue, cluster
// mode).
package timeheap

import (
	"container/heap"
	"time"
)

// Heap holds items of type T by due time, the earliest first. Its zero
// value is not usable: make one with New. It is not safe for concurrent
// use.
type Heap[T any] struct {
	s slots[T]
}

// New returns an empty heap; due says when an item is due, and index
// points to the item's index in the heap, which the heap keeps: -1 when
// the item is not in it (set it so for a new item).
func New[T any](due func(T) time.Time, index func(T) *int) Heap[T] {
	return Heap[T]{slots[T]{due: due, index: index}}
}

// Len is the number of items in the heap.
func (h *Heap[T]) Len() int { return len(h.s.items) }

// Set puts t in the heap, or moves it to its place when its due time
// changed, and reports whether t is now the earliest.
func (h *Heap[T]) Set(t T) (first bool) {
	if i := *h.s.index(t); i >= 0 {
		heap.Fix(&h.s, i)
	} else {
		heap.Push(&h.s, t)
	}
	return *h.s.index(t) == 0
}

// Remove takes t out of the heap, if it is in it.
func (h *Heap[T]) Remove(t T) {
	if i := *h.s.index(t); i >= 0 {
		heap.Remove(&h.s, i)
	}
}

// Next returns the earliest item's due time, and false when the heap is
// empty.
func (h *Heap[T]) Next() (time.Time, bool) {
	if len(h.s.items) == 0 {
		return time.Time{}, false
	}
	return h.s.due(h.s.items[0]), true
}

// PopDue takes out and returns the earliest item when it is due at now,
// and false when none is.
func (h *Heap[T]) PopDue(now time.Time) (T, bool) {
	if len(h.s.items) == 0 || h.s.due(h.s.items[0]).After(now) {
		var zero T
		return zero, false
	}
	return heap.Pop(&h.s).(T), true
}

// Clear empties the heap, marking every item as out of it.
func (h *Heap[T]) Clear() {
	for _, t := range h.s.items {
		*h.s.index(t) = -1
	}
	h.s.items = nil
}

// slots is the heap.Interface behind Heap.
type slots[T any] struct {
	items []T
	due   func(T) time.Time
	index func(T) *int
}

func (s *slots[T]) Len() int           { return len(s.items) }
func (s *slots[T]) Less(i, j int) bool { return s.due(s.items[i]).Before(s.due(s.items[j])) }
func (s *slots[T]) Swap(i, j int) {
	s.items[i], s.items[j] = s.items[j], s.items[i]
	*s.index(s.items[i]) = i
	*s.index(s.items[j]) = j
}
func (s *slots[T]) Push(x any) {
	t := x.(T)
	*s.index(t) = len(s.items)
	s.items = append(s.items, t)
}
func (s *slots[T]) Pop() any {
	last := len(s.items) - 1
	t := s.items[last]
	var zero T
	s.items[last] = zero
	s.items = s.items[:last]
	*s.index(t) = -1
	return t
}
