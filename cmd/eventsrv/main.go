// Command eventsrv relays events from trusted backends to WebSocket
// subscribers: backends POST to the listen server, subscribers connect to
// the broadcast server. `eventsrv token` prints a new random token;
// `eventsrv healthcheck` probes a running server (for container health
// checks). All settings are environment variables; see README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "eventsrv:", err)
		os.Exit(1)
	}
}
