package main

import (
	"slices"
	"strings"
)

// The Go runtime's monitor thread (sysmon) sleeps deeply while every
// goroutine is idle, and the first system call after that wakes it and
// sets it polling every 20 µs, backing off only after a millisecond. A
// server at a low event rate goes idle between events, so each event
// paid for some 60 monitor wake-ups: at 20 events/s × 1,000 subscribers,
// about 1.2 µs of CPU per delivery (10% of the server's CPU on this
// project's benchmark machine), and the burst that every subscriber
// waits for grows by as much.
//
// GODEBUG=schedtrace=N keeps the monitor from sleeping deeply (it must
// wake to print the trace every N ms); it then polls every 10 ms while
// idle, about 100 cheap wake-ups a second. The runtime reads GODEBUG only
// at start, so the server starts itself again with it set. With the
// largest N (24.8 days) it prints its scheduler line only on a host that
// has been up longer than that: once at start, then every 24.8 days; and
// a crash prints the scheduler's state with the stack traces. Any
// schedtrace already in GODEBUG is kept (schedtrace=0 restores Go's
// default).
const sysmonSetting = "schedtrace=2147483647"

// sysmonEnv returns the environment to start the server again with, or
// false when it is to run as it is: a client command or tool, or a
// GODEBUG that names schedtrace already (as it does after the restart).
func sysmonEnv(args, environ []string) ([]string, bool) {
	if !serverMode(args) {
		return nil, false
	}
	env := slices.Clone(environ)
	for i, kv := range env {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			continue
		}
		for setting := range strings.SplitSeq(v, ",") {
			if strings.HasPrefix(setting, "schedtrace=") {
				return nil, false
			}
		}
		if v != "" {
			v += ","
		}
		env[i] = "GODEBUG=" + v + sysmonSetting
		return env, true
	}
	return append(env, "GODEBUG="+sysmonSetting), true
}

// serverMode says whether args start the server: no subcommand, or serve
// without arguments.
func serverMode(args []string) bool {
	return len(args) < 2 || len(args) == 2 && args[1] == "serve"
}
