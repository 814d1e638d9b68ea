// Command subscriber prints the events named on its command line as they
// arrive, and goes on across reconnects and server restarts: it resumes
// after the last event it printed, so that it misses nothing the server's
// history still holds (a restarted single server holds nothing; one with
// NATS_EMBED or in cluster mode holds its history across restarts), and
// says so when it did miss some.
//
//	EVENTSRV_URL=http://localhost:8080 EVENTSRV_TOKEN=... go run ./examples/subscriber order.created
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"eventsrv/client"
)

func main() {
	c, err := client.New(os.Getenv("EVENTSRV_URL"), client.WithToken(os.Getenv("EVENTSRV_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	sub, err := c.Subscribe(context.Background(), os.Args[1:])
	if err != nil {
		log.Fatal(err)
	}
	for ev, err := range sub.Events() {
		if errors.Is(err, client.ErrReset) {
			log.Print("events were missed: reload your state from its source")
			continue
		}
		if err != nil {
			log.Fatal(err) // the token was refused or revoked: reconnecting would not help
		}
		fmt.Println(ev.ID, ev.Name, string(ev.Data))
	}
}
