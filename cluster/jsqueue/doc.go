// Package jsqueue is the work queues of cluster mode (issues #13 and #15):
// a queue.Broker whose tasks live in a NATS JetStream work-queue stream
// that every eventsrv instance shares, so that every instance's workers
// take from one queue and nothing is lost when an instance dies.
//
// Package queue's documentation (its JetStream section) says how it works
// and what it promises next to the in-memory Manager: one stream
// <NATS_STREAM>_QUEUES with a subject per queue, a durable pull consumer
// per queue shared by the instances, a lease per delivered task (the
// consumer's ack wait, renewed with in-progress acks), assign and done as
// confirmed acks, refusals as naks, and two core NATS subjects on which
// the instances say which queues they work on and settle each other's
// HTTP answers.
//
// The files: broker.go (the Broker, its state and lock), tasks.go (the
// model: joining, offers, answers, take), timers.go (offer, task and lease
// timers), net.go (JetStream: add, the stream and consumers, pull requests,
// acks and lease renewals), peers.go (presence and questions between
// instances), stats.go.
package jsqueue
