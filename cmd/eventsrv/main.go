// Command eventsrv relays events from trusted backends to subscribers:
// backends POST to the listen server, subscribers connect to the broadcast
// server by WebSocket or Server-Sent Events. `eventsrv help` lists the
// subcommands (token, jwt, secret, healthcheck, version, and the clients
// pub, sub and tail) and every setting; all settings are environment
// variables.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// main exits 2 for a mistake on the command line, 3 when a client
// command's token is refused, 4 when its server is unreachable, and 1 for
// any other failure (see exitCode).
func main() {
	keepSysmonAwake()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr, os.Environ()...); err != nil {
		fmt.Fprintln(os.Stderr, "eventsrv:", err)
		stop()
		os.Exit(exitCode(err))
	}
}
