// Package uring submits many non-blocking socket sends with one system call,
// through Linux's io_uring. It does that one thing: the broadcast flushers
// write a burst's frames to hundreds of sockets, and on a virtual machine
// the entry into the kernel costs about as much as a small send itself.
//
// A Ring belongs to one goroutine at a time. Send waits for every send it
// submitted, so no buffer is referenced by the kernel after it returns.
package uring

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// System call numbers and constants from linux/io_uring.h (x86-64 and arm64
// share the numbers since 5.1).
const (
	sysSetup = 425
	sysEnter = 426

	offSQRing = 0
	offSQEs   = 0x10000000

	enterGetEvents = 1 << 0

	setupSubmitAll   = 1 << 7
	setupCoopTaskrun = 1 << 8

	featSingleMmap = 1 << 0

	opSend = 26

	sqeSize = 64
	cqeSize = 16
)

// params is struct io_uring_params.
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// sqe is struct io_uring_sqe, as far as a send uses it.
type sqe struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64
	addr     uint64
	len      uint32
	msgFlags uint32
	userData uint64
	_        [24]byte
}

// cqe is struct io_uring_cqe.
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// Ring is one io_uring instance sized for a batch of sends.
type Ring struct {
	fd      int
	entries uint32
	ring    []byte // the SQ and CQ rings, one mapping
	sqes    []byte

	sqTail, sqHead *uint32
	sqMask         uint32
	sqArray        unsafe.Pointer
	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           unsafe.Pointer
}

// ErrUnavailable wraps why io_uring cannot be used: an old kernel, the
// kernel.io_uring_disabled setting, or a seccomp profile (Docker's default
// refuses it). Callers fall back to one system call per send.
var ErrUnavailable = errors.New("io_uring is unavailable")

// New sets up a ring for batches of up to entries sends.
func New(entries uint32) (*Ring, error) {
	var p params
	p.flags = setupSubmitAll | setupCoopTaskrun
	fd, _, errno := syscall.Syscall(sysSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno == syscall.EINVAL {
		// Kernels before 5.19 know neither flag; both only save work.
		p = params{}
		fd, _, errno = syscall.Syscall(sysSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	}
	if errno != 0 {
		return nil, fmt.Errorf("%w: io_uring_setup: %w", ErrUnavailable, errno)
	}
	r := &Ring{fd: int(fd), entries: p.sqEntries}
	if p.features&featSingleMmap == 0 {
		r.Close()
		return nil, fmt.Errorf("%w: the kernel predates IORING_FEAT_SINGLE_MMAP (5.4)", ErrUnavailable)
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*cqeSize)
	var err error
	if r.ring, err = syscall.Mmap(r.fd, offSQRing, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: mapping the rings: %w", ErrUnavailable, err)
	}
	if r.sqes, err = syscall.Mmap(r.fd, offSQEs, int(p.sqEntries*sqeSize), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: mapping the submission entries: %w", ErrUnavailable, err)
	}
	at := func(off uint32) unsafe.Pointer { return unsafe.Pointer(&r.ring[off]) }
	r.sqHead, r.sqTail = (*uint32)(at(p.sqOff.head)), (*uint32)(at(p.sqOff.tail))
	r.sqMask, r.sqArray = *(*uint32)(at(p.sqOff.ringMask)), at(p.sqOff.array)
	r.cqHead, r.cqTail = (*uint32)(at(p.cqOff.head)), (*uint32)(at(p.cqOff.tail))
	r.cqMask, r.cqes = *(*uint32)(at(p.cqOff.ringMask)), at(p.cqOff.cqes)
	return r, nil
}

// Entries is the most sends one call to Send takes.
func (r *Ring) Entries() int { return int(r.entries) }

// Send sends bufs[i] on socket fds[i], each with
// MSG_DONTWAIT|MSG_NOSIGNAL, and stores in n[i] how many bytes the socket
// took (0 when its buffer was full) and in errs[i] why a send failed. It
// submits them all with one system call and returns when every one has
// completed. The caller keeps each fd open until Send returns. At most
// Entries sends at once.
func (r *Ring) Send(fds []int, bufs [][]byte, n []int, errs []error) error {
	count := uint32(len(fds))
	if count > r.entries || len(bufs) != len(fds) || len(n) != len(fds) || len(errs) != len(fds) {
		return fmt.Errorf("uring: %d sends for a ring of %d, with %d buffers", len(fds), r.entries, len(bufs))
	}
	if count == 0 {
		return nil
	}
	tail := *r.sqTail // only this goroutine writes the tail
	for i := range count {
		idx := (tail + i) & r.sqMask
		e := (*sqe)(unsafe.Pointer(&r.sqes[idx*sqeSize]))
		*e = sqe{opcode: opSend, fd: int32(fds[i]), len: uint32(len(bufs[i])),
			msgFlags: syscall.MSG_DONTWAIT | syscall.MSG_NOSIGNAL, userData: uint64(i)}
		if len(bufs[i]) > 0 {
			e.addr = uint64(uintptr(unsafe.Pointer(&bufs[i][0])))
		}
		*(*uint32)(unsafe.Add(r.sqArray, idx*4)) = idx
	}
	atomic.StoreUint32(r.sqTail, tail+count)
	for submitted, completed := uint32(0), uint32(0); completed < count; {
		// MSG_DONTWAIT makes a send that would block complete at
		// once with EAGAIN, so one enter normally does everything.
		_, _, errno := syscall.Syscall6(sysEnter, uintptr(r.fd), uintptr(count-submitted), uintptr(count-completed), enterGetEvents, 0, 0)
		if errno != 0 && errno != syscall.EINTR && errno != syscall.EAGAIN && errno != syscall.EBUSY {
			runtime.KeepAlive(bufs)
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
		submitted = count - (atomic.LoadUint32(r.sqTail) - atomic.LoadUint32(r.sqHead))
		completed += r.reap(n, errs)
	}
	runtime.KeepAlive(bufs)
	return nil
}

// reap takes the completions off the ring and returns how many there were.
func (r *Ring) reap(n []int, errs []error) uint32 {
	head, tail := *r.cqHead, atomic.LoadUint32(r.cqTail)
	for h := head; h != tail; h++ {
		c := (*cqe)(unsafe.Add(r.cqes, (h&r.cqMask)*cqeSize))
		i := c.userData
		switch {
		case c.res >= 0:
			n[i], errs[i] = int(c.res), nil
		case syscall.Errno(-c.res) == syscall.EAGAIN:
			n[i], errs[i] = 0, nil
		default:
			n[i], errs[i] = 0, syscall.Errno(-c.res)
		}
	}
	atomic.StoreUint32(r.cqHead, tail)
	return tail - head
}

// Close releases the ring.
func (r *Ring) Close() error {
	if r.sqes != nil {
		_ = syscall.Munmap(r.sqes)
	}
	if r.ring != nil {
		_ = syscall.Munmap(r.ring)
	}
	return syscall.Close(r.fd)
}
