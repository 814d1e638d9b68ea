package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// lookupTry bounds one stream lookup of LookStreamUp.
const lookupTry = time.Second

// LookStreamUp looks stream up, asking again every lookupTry until ctx
// ends. JetStream leaves a lookup unanswered while the stream is being
// created (instances that start together race to create their streams):
// the lookup then waited for its whole deadline (5 s), and logged a
// warning, where asking again finds the stream within a try.
func LookStreamUp(ctx context.Context, js jetstream.JetStream, stream string) (jetstream.Stream, error) {
	for {
		try, cancel := context.WithTimeout(ctx, lookupTry)
		s, err := js.Stream(try, stream)
		cancel()
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return s, err
		}
	}
}
