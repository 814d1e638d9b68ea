//go:build !linux || race

package broadcast

import "syscall"

// sockWrite is one write(2) on a non-blocking socket (see the Linux version
// for why that one is raw, and why not under the race detector).
func sockWrite(fd uintptr, b []byte) (int, error) { return syscall.Write(int(fd), b) }
