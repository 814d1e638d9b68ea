// Package client is the Go client of eventsrv: it publishes events to the
// listen server and subscribes to them on the broadcast server, with the
// parts that are easy to get wrong done once: retries that never publish
// twice, reconnects with backoff and full jitter, resume from the last
// event received, the reset that tells you to reload, and JWTs refreshed
// on the live connection before they expire.
//
// A Client is made for one server and shared:
//
//	c, err := client.New("http://localhost:8080", client.WithToken(token))
//	id, err := c.Publish(ctx, "order.created", map[string]int{"id": 42})
//
// A Subscription yields events, in order, across reconnects and server
// restarts, losing nothing while the server's history holds what was
// missed; when it does not, ErrReset comes first, then what it kept:
//
//	sub, err := c.Subscribe(ctx, []string{"order.created"})
//	for ev, err := range sub.Events() {
//		if errors.Is(err, client.ErrReset) {
//			reload()
//			continue
//		}
//		if err != nil {
//			return err // the subscription ended: a refused token, …
//		}
//		handle(ev)
//	}
//
// Every answer code of the server is an *Error that errors.Is matches
// against a sentinel (ErrForbidden, ErrUnauthenticated, ErrUnavailable,
// …); close codes are a *CloseError (ErrTokenRevoked, ErrGoingAway, …).
package client
