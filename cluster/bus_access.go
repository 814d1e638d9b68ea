package cluster

import "github.com/nats-io/nats.go"

// Conn returns the bus's NATS connection (to the embedded server with
// NATS_EMBED), for the work queues of cluster mode (package
// eventsrv/cluster/jsqueue), which share it. It is closed by Close.
func (b *Bus) Conn() *nats.Conn { return b.nc }
