//go:build pprof

package main

// Built with -tags pprof, eventsrv serves net/http/pprof on
// 127.0.0.1:6060 (PPROF_ADDRESS overrides), for profiling under load.
// Release builds do not contain it.

import (
	"net/http"
	_ "net/http/pprof" //nolint:gosec // loopback only, opt-in build
	"os"
)

func init() {
	addr := os.Getenv("PPROF_ADDRESS")
	if addr == "" {
		addr = "127.0.0.1:6060"
	}
	go func() { _ = http.ListenAndServe(addr, nil) }()
}
