package broadcast

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
)

// poller watches idle subscribers' sockets with one epoll instance, so that
// no goroutine waits on each of them (see reader.go). Each socket is
// registered one-shot: after it reports readable it stays quiet until its
// reader has read everything and re-arms it, so a connection never has two
// readers.
type poller struct {
	log  *slog.Logger
	epfd int
	wake [2]int // a pipe whose read end, when readable, stops run

	mu    sync.Mutex
	conns map[int]*client // by file descriptor
	wg    sync.WaitGroup
}

const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// newPoller starts a poller; on failure the hub falls back to a reader
// goroutine per connection.
func newPoller(log *slog.Logger) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	p := &poller{log: log, epfd: epfd, conns: make(map[int]*client)}
	if err := syscall.Pipe2(p.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p.wake[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	p.wg.Add(1)
	go p.run()
	return p, nil
}

func (p *poller) run() {
	defer p.wg.Done()
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			p.log.Error("poller stopped: subscribers' messages go unread", "err", err)
			return
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == p.wake[0] {
				return
			}
			p.mu.Lock()
			c := p.conns[fd]
			p.mu.Unlock()
			if c != nil {
				go c.readReady()
			}
		}
	}
}

// add registers c's socket.
func (p *poller) add(c *client) error {
	if p == nil || c.raw == nil {
		return errors.New("no poller")
	}
	fd := -1
	if err := c.raw.rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c.fd = fd
	p.conns[fd] = c
	ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		delete(p.conns, fd)
		c.fd = -1
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	return nil
}

// rearm lets c's socket report readable again.
func (p *poller) rearm(c *client) error {
	ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(c.fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl mod: %w", err)
	}
	return nil
}

// remove unregisters c before its socket is closed. The descriptor's number
// may already belong to a newer connection only if c's socket was closed
// first, which teardown never does; the check keeps it that way.
func (p *poller) remove(c *client) {
	if p == nil || c.fd < 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[c.fd] == c {
		delete(p.conns, c.fd)
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	}
}

// close stops the poller; every connection must be gone.
func (p *poller) close() {
	if p == nil {
		return
	}
	_, _ = syscall.Write(p.wake[1], []byte{0})
	p.wg.Wait()
	p.closeFDs()
}

func (p *poller) closeFDs() {
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
	syscall.Close(p.epfd)
}
