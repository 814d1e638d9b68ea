//go:build !linux

package main

// keepSysmonAwake does nothing here: the saving of sysmon.go was measured
// on Linux, and starting a process again in place (exec) is Unix-only.
func keepSysmonAwake() {}
