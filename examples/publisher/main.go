// Command publisher publishes an event with the client package and prints
// its ID: its data is the JSON given, or {"n":1}, {"n":2}, … with -n.
// Publish retries a server that is restarting, with the same
// Idempotency-Key, so that an event is published once; a refusal is an
// error to match with errors.Is.
//
//	EVENTSRV_URL=http://localhost:8080 EVENTSRV_TOKEN=... go run ./examples/publisher order.created '{"id":42}'
//	go run ./examples/publisher -n 100 order.created
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"eventsrv/client"
)

func main() {
	n := flag.Int("n", 1, "publish this many events, with data {\"n\":1}, {\"n\":2}, …")
	flag.Parse()
	if flag.NArg() < 1 || flag.NArg() > 2 {
		log.Fatal("usage: publisher [-n N] EVENT [JSON]")
	}
	c, err := client.New(os.Getenv("EVENTSRV_URL"), client.WithToken(os.Getenv("EVENTSRV_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for i := 1; i <= *n; i++ {
		data := json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))
		if flag.NArg() == 2 {
			data = json.RawMessage(flag.Arg(1))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		id, err := c.PublishRaw(ctx, flag.Arg(0), data)
		cancel()
		switch {
		case errors.Is(err, client.ErrForbidden):
			log.Fatalf("this token may not publish %s", flag.Arg(0))
		case errors.Is(err, client.ErrUnreachable), errors.Is(err, client.ErrUnavailable):
			log.Fatalf("the server is down; nothing was lost, try again later: %v", err)
		case err != nil:
			log.Fatal(err)
		}
		fmt.Println(id)
	}
}
