package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT from linux/in.h, which the
// syscall package does not define.
const ipBindAddressNoPort = 24

// bindAddressNoPort is a net.Dialer Control function for dials from a chosen
// source address. Without it, binding the source address before connecting
// reserves an ephemeral port for that address alone, so every source would
// draw on one shared pool of ~28k ports and spreading would not help. With
// it, the kernel picks the port at connect time, per destination. It is best
// effort: if the option is refused, the dial still works, with fewer ports.
func bindAddressNoPort(network, address string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
}

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and returns
// the new soft limit: every subscriber is a socket. (Go itself has raised
// the soft limit at start since 1.19; doing it here keeps the tool's needs
// explicit and tells us the number to warn against.)
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading the open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raising the open-file limit to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}

// sampleMachine returns the busy time of all CPUs (clock ticks, from
// /proc/stat) and this process's CPU time (ns).
func sampleMachine() (busyTicks, selfNanos int64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	if busyTicks, err = parseProcStatBusy(string(data)); err != nil {
		return 0, 0, err
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, err
	}
	return busyTicks, ru.Utime.Nano() + ru.Stime.Nano(), nil
}

// ownProcessGroup starts cmd in a process group of its own, so that a
// Ctrl-C meant for this tool reaches a server it started only through the
// tool, which then reports the interrupted run and stops the server.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
