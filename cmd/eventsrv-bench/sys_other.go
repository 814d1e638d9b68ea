//go:build !linux

package main

import (
	"errors"
	"os/exec"
	"syscall"
)

// bindAddressNoPort does nothing outside Linux, which alone has
// IP_BIND_ADDRESS_NO_PORT.
func bindAddressNoPort(network, address string, c syscall.RawConn) error { return nil }

// raiseFileLimit is not implemented outside Linux; the caller only warns.
func raiseFileLimit() (uint64, error) {
	return 0, errors.New("raising the open-file limit is only implemented on Linux")
}

// sampleMachine is not implemented outside Linux; the report then has no
// machine line.
func sampleMachine() (busyTicks, selfNanos int64, err error) {
	return 0, 0, errors.New("the machine's CPU time is only read on Linux")
}

// ownProcessGroup does nothing outside Linux.
func ownProcessGroup(cmd *exec.Cmd) {}
