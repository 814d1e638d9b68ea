//go:build !linux

package main

import "errors"

// The epoll reader exists on Linux only (rawread_linux.go); elsewhere every
// subscriber is read through gorilla.

// defaultReader is -reader's default: gorilla, the only reader here.
const defaultReader = readerGorilla

type epollReaders struct{}

type rawConn struct{}

func newEpollReaders() (*epollReaders, error) {
	return nil, errors.New("the epoll reader needs Linux")
}

func (r *epollReaders) attach(*subscriber, int, int) error {
	return errors.New("the epoll reader needs Linux")
}

func (r *epollReaders) stop() {}

func (c *rawConn) close() {}
