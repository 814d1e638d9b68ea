// Command eventsrv relays events from trusted backends to subscribers:
// backends POST to the listen server, subscribers connect to the broadcast
// server by WebSocket or Server-Sent Events. `eventsrv help` lists the
// subcommands (token, jwt, secret, healthcheck, version) and every
// setting; all settings are environment variables.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// main exits 2 for a mistake on the command line and 1 for any other
// failure (see exitCode).
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr, os.Environ()...); err != nil {
		fmt.Fprintln(os.Stderr, "eventsrv:", err)
		stop()
		os.Exit(exitCode(err))
	}
}
