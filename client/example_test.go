package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"eventsrv/client"
)

// These examples need a running eventsrv, so most are compiled but not
// run here; cmd/eventsrv's tests run the same calls against a real server,
// and examples/ holds whole programs that its tests run.

// Publish an event and subscribe to it.
func Example() {
	ctx := context.Background()
	c, err := client.New(os.Getenv("EVENTSRV_URL"), client.WithToken(os.Getenv("EVENTSRV_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	sub, err := c.Subscribe(ctx, []string{"order.created"})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	id, err := c.Publish(ctx, "order.created", map[string]int{"id": 42})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("published", id)

	for ev, err := range sub.Events() {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.Name, string(ev.Data)) // order.created {"id":42}
		break
	}
}

// A publish is retried on 503 and network errors with the same
// Idempotency-Key; refusals come back as errors to match.
func ExampleClient_Publish() {
	c, err := client.New("http://localhost:8080", client.WithToken(os.Getenv("EVENTSRV_TOKEN")),
		client.WithPublishRetry(5, 100*time.Millisecond, 5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := c.Publish(ctx, "job.42.progress", map[string]any{"done": 40})
	switch {
	case errors.Is(err, client.ErrForbidden):
		log.Fatal("this token may not publish job events")
	case errors.Is(err, client.ErrUnreachable), errors.Is(err, client.ErrUnavailable):
		log.Fatal("the server is down; try later: ", err)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println(id)
}

// Follow events across reconnects and restarts, reload on a reset, and
// watch the connection.
func ExampleClient_Subscribe() {
	ctx := context.Background()
	c, err := client.New("http://localhost:8080", client.WithToken(os.Getenv("EVENTSRV_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, []string{"order.created", "order.paid"},
		client.Since(os.Getenv("LAST_ID")), // "" starts now
		client.OnStateChange(func(sc client.StateChange) {
			log.Printf("%s %v (retry in %v)", sc.State, sc.Err, sc.Delay)
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	for ev, err := range sub.Events() {
		if errors.Is(err, client.ErrReset) {
			log.Print("events were missed: reload from the database")
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.ID, ev.Name, string(ev.Data))
	}
}

// Change what a live subscription receives.
func ExampleSubscription_Subscribe() {
	ctx := context.Background()
	c, _ := client.New("http://localhost:8080", client.WithToken(os.Getenv("EVENTSRV_TOKEN")))
	sub, err := c.Subscribe(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Subscribe(ctx, "job.42"); err != nil {
		log.Fatal(err) // e.g. client.ErrForbidden
	}
	for ev, err := range sub.Events() {
		if err != nil {
			log.Fatal(err)
		}
		if string(ev.Data) == `"done"` {
			_ = sub.Unsubscribe(ctx, "job.42")
			break
		}
	}
}

// A JWT is refreshed before it expires, on the live connection.
func ExampleWithJWT() {
	mint := func(ctx context.Context) (string, error) {
		// Ask your backend for a new token here.
		return os.Getenv("EVENTSRV_JWT"), nil
	}
	c, err := client.New("https://events.example.com", client.WithJWT("", mint))
	if err != nil {
		log.Fatal(err)
	}
	sub, err := c.Subscribe(context.Background(), []string{"user.7.notifications"})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	for ev, err := range sub.Events() {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(ev.Data))
	}
}

// Refusals are *client.Error values: errors.Is matches the code's
// sentinel, errors.As gives the status, code and message.
func ExampleError() {
	// What Publish returns when the token may not publish the event:
	err := fmt.Errorf("eventsrv: publish %q: %w", "order.created",
		&client.Error{Status: 403, Code: "FORBIDDEN", Message: `this token may not publish "order.created"`})

	fmt.Println(errors.Is(err, client.ErrForbidden), errors.Is(err, client.ErrUnauthenticated))
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(e.Status, e.Code)
	}
	// Output:
	// true false
	// 403 FORBIDDEN
}

// The close that ended a connection is a *client.CloseError.
func ExampleCloseError() {
	err := error(&client.CloseError{Code: 4003, Text: "token revoked"})
	fmt.Println(errors.Is(err, client.ErrTokenRevoked), errors.Is(err, client.ErrPermissionsChanged))
	// Output: true false
}
