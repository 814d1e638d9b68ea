//go:build linux && !race

package broadcast

import (
	"syscall"
	"unsafe"
)

// sockWrite is one send(2) on a non-blocking socket, made without telling
// the Go scheduler that a system call is under way (syscall.Write does:
// entersyscall and exitsyscall). The socket never blocks, so the flusher
// keeps its P; with syscall.Write, every write that lasted longer than a
// scheduler tick (loopback writes run the receiver's TCP input and take
// ~10 µs) let sysmon hand the P to another thread and kept sysmon itself
// polling every 20 µs: at 20 events/s × 1000 subscribers that was 8% of
// the server's CPU in sysmon's sleeps and context switches alone.
// send(2) rather than write(2) skips the file layer: vfs_write and
// fdget_pos were 10.5% of a quiet server's CPU, sendto's entry and fdget
// are 7.6%. MSG_NOSIGNAL makes a closed peer EPIPE without a signal for
// the runtime to field.
//
// Under the race detector syscall.Write is used instead (sockwrite_other.go):
// it tells the detector that what was written happens before what reads it
// from the socket, which tests rely on, and a raw write would not.
func sockWrite(fd uintptr, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
