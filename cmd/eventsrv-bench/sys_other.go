//go:build !linux

package main

import (
	"errors"
	"syscall"
)

// bindAddressNoPort does nothing outside Linux, which alone has
// IP_BIND_ADDRESS_NO_PORT.
func bindAddressNoPort(network, address string, c syscall.RawConn) error { return nil }

// raiseFileLimit is not implemented outside Linux; the caller only warns.
func raiseFileLimit() (uint64, error) {
	return 0, errors.New("raising the open-file limit is only implemented on Linux")
}
