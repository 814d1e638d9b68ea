package main

import (
	"fmt"
	"os"
	"syscall"
)

// keepSysmonAwake starts the server again, in the same process, with the
// GODEBUG setting of sysmon.go; it returns only when there is no need or
// the exec failed (then the server runs with Go's default, and says so).
func keepSysmonAwake() {
	env, ok := sysmonEnv(os.Args, os.Environ())
	if !ok {
		return
	}
	exe, err := os.Executable()
	if err == nil {
		err = syscall.Exec(exe, os.Args, env)
	}
	fmt.Fprintf(os.Stderr, "eventsrv: could not start again with GODEBUG=%s (%v); running with the Go runtime's default, which costs more CPU per event at low rates\n", sysmonSetting, err)
}
