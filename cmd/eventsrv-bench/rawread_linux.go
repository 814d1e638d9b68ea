package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// The epoll reader reads every subscriber of a run with one loop per core,
// each waiting on its own epoll set, instead of one goroutine per
// connection reading through gorilla. The tool shares the cores with the
// server it measures, so its own cost per delivery is part of every
// latency it reports: perf showed a goroutine per connection spending a
// quarter of the tool's time waking and parking goroutines and in netpoll.
// One epoll_wait here returns many ready sockets, and each is read with one
// read(2) that takes every frame that has arrived.

// defaultReader is -reader's default: the epoll reader, where it exists.
const defaultReader = readerEpoll

// rawReadBuffer is each loop's read buffer: large enough that one read
// takes everything a subscriber has waiting in all but bulk runs.
const rawReadBuffer = 64 << 10

// epollReaders is the set of loops of one fleet.
type epollReaders struct {
	loops []*epollLoop
}

// epollLoop reads the connections registered with its epoll set.
type epollLoop struct {
	epfd   int
	wakeFD int // an eventfd in the set; a write to it ends the loop
	mu     sync.Mutex
	conns  []*rawConn // by the index in each epoll event's data
	stop   bool
	done   chan struct{}
}

// rawConn is one subscriber's socket, read by its loop.
type rawConn struct {
	fd      int
	sub     *subscriber
	loop    *epollLoop
	reader  frameReader
	pending []byte // bytes of a frame not yet whole
	// Guarded by loop.mu, which every read and write of the socket holds.
	dead    bool // unregistered and closed
	sentEnd bool // our close frame is written
}

// newEpollReaders starts one loop per core.
func newEpollReaders() (*epollReaders, error) {
	r := &epollReaders{}
	for range runtime.GOMAXPROCS(0) {
		l, err := newEpollLoop()
		if err != nil {
			r.stop()
			return nil, err
		}
		r.loops = append(r.loops, l)
		go l.run()
	}
	return r, nil
}

func newEpollLoop() (*epollLoop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		syscall.Close(epfd)
		return nil, fmt.Errorf("eventfd2: %w", errno)
	}
	l := &epollLoop{epfd: epfd, wakeFD: int(wake), done: make(chan struct{})}
	// The eventfd's data is -1, which no connection has.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: -1}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, l.wakeFD, &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(l.wakeFD)
		return nil, fmt.Errorf("epoll_ctl(eventfd): %w", err)
	}
	return l, nil
}

// stop ends every loop and waits for them; connections still registered
// are closed.
func (r *epollReaders) stop() {
	for _, l := range r.loops {
		l.mu.Lock()
		l.stop = true
		l.mu.Unlock()
		one := [8]byte{1}
		_, _ = syscall.Write(l.wakeFD, one[:])
	}
	for _, l := range r.loops {
		<-l.done
	}
}

// attach takes over subscriber s's socket from gorilla and registers it
// with loop i mod len(loops). It fails, leaving s to gorilla, when the
// connection is not a plain TCP socket (wss). The caller has not started
// s's gorilla read loop.
func (r *epollReaders) attach(s *subscriber, i int, limit int) error {
	fd, err := takeOver(s)
	if err != nil {
		return err
	}
	l := r.loops[i%len(r.loops)]
	c := &rawConn{fd: fd, sub: s, loop: l, reader: frameReader{limit: limit}}
	l.mu.Lock()
	defer l.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(len(l.conns))}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	l.conns = append(l.conns, c)
	s.raw = c
	return nil
}

// takeOver returns a duplicate of s's socket and closes gorilla's, so
// that only the loop reads it. gorilla may already have buffered bytes
// past the init reply; reading with a deadline in the past returns them
// (gorilla answers a ping among them) and then times out without reading
// the socket, so nothing is lost.
func takeOver(s *subscriber) (int, error) {
	sc, ok := s.conn.NetConn().(syscall.Conn)
	if !ok {
		return -1, errNotTCP
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	if err := drainBuffered(s); err != nil {
		return -1, err
	}
	fd := -1
	err = raw.Control(func(orig uintptr) { fd, err = syscall.Dup(int(orig)) })
	if err != nil {
		return -1, fmt.Errorf("dup: %w", err)
	}
	syscall.CloseOnExec(fd)
	// The duplicate shares the file description, so it is non-blocking
	// like gorilla's. Closing gorilla's descriptor removes it from Go's
	// poller; the socket stays open through the duplicate.
	s.conn.NetConn().Close()
	return fd, nil
}

// drainBuffered hands every message gorilla buffered to s, and fails if a
// frame was cut off at the buffer's end (the socket is then out of step).
func drainBuffered(s *subscriber) error {
	_ = s.conn.SetReadDeadline(time.Unix(1, 0))
	for {
		kind, frame, err := readFrame(s.conn, nil)
		// gorilla hides the error's type but keeps Timeout.
		var ne net.Error
		switch {
		case err == nil:
			s.handle(kind, frame, time.Now().UnixNano())
		case errors.As(err, &ne) && ne.Timeout():
			return nil
		default:
			return fmt.Errorf("taking over the connection: %w", err)
		}
	}
}

// run waits for ready sockets and reads each once; a socket with more
// waiting stays ready (level-triggered) for the next wait.
func (l *epollLoop) run() {
	defer close(l.done)
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, rawReadBuffer)
	for {
		n, err := syscall.EpollWait(l.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			panic(fmt.Sprintf("epoll_wait: %v", err)) // a bug: epfd is ours
		}
		l.mu.Lock()
		if l.stop {
			l.closeAll()
			l.mu.Unlock()
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd >= 0 {
				l.readOnce(l.conns[ev.Fd], buf)
			}
		}
		l.mu.Unlock()
	}
}

// readOnce reads what c has waiting and accounts every whole frame in it.
// It runs with l.mu held.
func (l *epollLoop) readOnce(c *rawConn, buf []byte) {
	if c.dead {
		return
	}
	data := buf
	if len(c.pending) > 0 {
		// A frame is cut off: read its rest after it.
		if cap(c.pending)-len(c.pending) < rawReadBuffer/4 {
			c.pending = append(make([]byte, 0, 2*cap(c.pending)+rawReadBuffer), c.pending...)
		}
		data = c.pending[len(c.pending):cap(c.pending)]
	}
	n, err := syscall.Read(c.fd, data)
	now := time.Now().UnixNano()
	switch {
	case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
		return
	case err != nil:
		l.end(c, fmt.Errorf("read: %w", err))
		return
	case n == 0:
		l.end(c, errUnexpectedEOF)
		return
	}
	if len(c.pending) > 0 {
		c.pending = c.pending[:len(c.pending)+n]
		data = c.pending
	} else {
		data = data[:n]
	}
	sink := rawSink{c: c, now: now}
	used, err := c.reader.feed(data, &sink)
	switch {
	case err != nil:
		l.end(c, err)
	case sink.closeErr != nil:
		l.end(c, sink.closeErr)
	case sink.writeErr != nil:
		l.end(c, sink.writeErr)
	default:
		c.pending = append(c.pending[:0], data[used:]...)
	}
}

// end unregisters and closes c and finishes its subscriber, recording why
// unless we were closing it. It runs with l.mu held.
func (l *epollLoop) end(c *rawConn, why error) {
	if c.dead {
		return
	}
	c.dead = true
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	syscall.Close(c.fd)
	if !c.sub.closing.Load() {
		c.sub.exitErr = why
	}
	c.sub.finish()
	close(c.sub.loopDone)
}

// closeAll ends every connection still open, when the loop stops.
func (l *epollLoop) closeAll() {
	for _, c := range l.conns {
		l.end(c, errors.New("the reader stopped"))
	}
	syscall.Close(l.epfd)
	syscall.Close(l.wakeFD)
}

// rawSink hands a read's frames to the subscriber and answers control
// frames the way gorilla's default handlers do.
type rawSink struct {
	c        *rawConn
	now      int64
	closeErr *websocket.CloseError
	writeErr error
}

func (k *rawSink) message(kind int, frame []byte) { k.c.sub.handle(kind, frame, k.now) }

func (k *rawSink) ping(payload []byte) {
	if err := k.c.write(opPong, payload); err != nil && k.writeErr == nil {
		k.writeErr = err
	}
}

// closed echoes the server's close code, as gorilla does, unless we sent
// our close frame first.
func (k *rawSink) closed(ce *websocket.CloseError) {
	k.closeErr = ce
	var payload []byte
	if ce.Code != websocket.CloseNoStatusReceived {
		payload = websocket.FormatCloseMessage(ce.Code, "")
	}
	_ = k.c.write(opClose, payload)
}

// write sends one masked control frame, with c.loop.mu held. The socket
// is non-blocking and a control frame is at most 131 bytes on a socket we
// otherwise never write, so it goes out at once; a short write fails
// rather than corrupting the stream.
func (c *rawConn) write(op byte, payload []byte) error {
	if c.dead || c.sentEnd {
		return nil
	}
	if op == opClose {
		c.sentEnd = true
	}
	var key [4]byte
	k := rand.Uint32()
	key[0], key[1], key[2], key[3] = byte(k), byte(k>>8), byte(k>>16), byte(k>>24)
	frame := appendClientFrame(make([]byte, 0, 14+len(payload)), op, payload, key)
	n, err := syscall.Write(c.fd, frame)
	switch {
	case err != nil:
		return fmt.Errorf("writing a control frame: %w", err)
	case n != len(frame):
		return fmt.Errorf("writing a control frame: %d of %d bytes went out", n, len(frame))
	}
	return nil
}

// close sends our close frame and waits, up to closeGrace, for the server's
// answer to end the connection; then it ends it regardless.
func (c *rawConn) close() {
	c.sub.closing.Store(true)
	c.loop.mu.Lock()
	// An error means the connection already ended; the loop has recorded
	// why.
	_ = c.write(opClose, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bench done"))
	c.loop.mu.Unlock()
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-c.sub.loopDone:
	case <-t.C:
		c.loop.mu.Lock()
		c.loop.end(c, nil)
		c.loop.mu.Unlock()
	}
}
