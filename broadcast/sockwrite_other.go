//go:build !linux

package broadcast

import "syscall"

// sockWrite is one write(2) on a non-blocking socket (see the Linux version).
func sockWrite(fd uintptr, b []byte) (int, error) { return syscall.Write(int(fd), b) }
