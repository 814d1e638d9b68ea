// Package queue owns work queues: named queues of tasks, each given to
// exactly one of the workers that take from that queue (issue #15, the
// QueueTasks model). Transports (WebSocket and SSE workers on the broadcast
// server, POST /queue/{name} and take-free on the listen and broadcast
// servers) drive it through the Broker interface; Manager is the in-memory
// implementation.
//
// # The model
//
// A task is added to a queue (Add) and waits. It is offered to one free
// worker at a time: the worker that has been free longest goes first, so
// that load is spread fairly. The worker answers with Assign or Reject; an
// offer left unanswered for Options.OfferTimeout expires, and the worker is
// told with a Notice of Kind "expired". A rejection, an expiry or the
// worker's Leave is a refusal: the task goes back to the head of its queue,
// ahead of newer tasks, and waits for a free live worker that has not
// refused it yet. Only when every live worker of the queue has refused it
// are its refusals forgotten, and it goes around again.
//
// A worker holds at most its maxInFlight tasks: its unanswered offers plus
// its assigned tasks that still need Done. A task added with Forced arrives
// already assigned (Notice.Assigned) and cannot be rejected; it holds a slot
// only while it needs Done. A task added with Complete needs Done within
// Options.TaskTimeout after it is assigned, or it goes back to the queue,
// like one whose worker leaves before Done. Take hands a waiting task (never
// an offered one) straight to an HTTP caller.
//
// # Guarantees
//
//   - A task is held by at most one worker at any moment: offering, taking
//     and answering all happen under one lock.
//   - Without Complete, a task is assigned exactly once: the assignment ends
//     the manager's part, and the task cannot come back.
//   - With Complete, delivery is at least once: a task whose worker vanishes
//     or misses TaskTimeout is offered again, so the work may be done twice.
//     Notice.Attempt counts every delivery of a task (offers, forced
//     assignments and takes), so that a worker can spot a re-delivery.
//     Done is accepted once per assignment; after the task went back, the
//     late worker's Done is answered ErrNotAssigned.
//   - Nothing is dropped silently: past Options.MaxTasks, Add fails with
//     ErrQueueFull.
//   - Tasks live in memory on one node and are lost on restart or Close.
//
// # Decisions
//
//   - Repeating an answer is harmless: Assign of a task already assigned to
//     the caller, and Done of a task already done, return nil, as long as the
//     task is remembered (Options.Retain after it finished, and at most
//     MaxTasks finished tasks per queue; after that, ErrUnknownTask). This
//     lets an HTTP client retry a POST whose answer it lost.
//   - Done of an assigned task that did not need completion (added without
//     Complete) returns nil and does nothing, so that a worker may send done
//     for every task. Done of a task that is only offered returns
//     ErrNotAssigned.
//   - Reject of a task already assigned to the caller returns
//     ErrOfferExpired (the offer was already answered), or ErrForced for a
//     forced task. Assign or Reject of a task whose offer to the caller has
//     ended (expired, rejected, lost by Leave, or taken back after
//     TaskTimeout) returns ErrOfferExpired; of a task never offered to the
//     caller, ErrNotOfferedToYou.
//   - A worker whose Complete task misses TaskTimeout is told "expired" too,
//     so that it can stop working on it, and counts as having refused it.
//   - The *As methods act for a subject (an identity, not a connection):
//     whichever worker with that subject holds the task, or a take of that
//     subject. They answer ErrUnknownTask for a task of another queue, so
//     that a permission checked on the queue in the path covers the task.
//   - Close stops the timer goroutine and drops every task. Afterwards Add
//     and the answers return ErrClosed, Take finds nothing and Join does
//     nothing; Stats still answers. Workers are not notified: the servers
//     close their connections.
//   - Queues are created by Add and Join. One that never had a task is
//     forgotten when its last worker leaves, so that joining made-up names
//     costs nothing; one that had tasks is kept, so that its counters never
//     go backwards.
//
// # Notices
//
// Notices are delivered by calling Worker's notify function, never while
// the manager's lock is held, in order per worker, and never concurrently
// for one worker. Notify may therefore call the Manager (say, assign at
// once), but must not block: a transport queues the frame. A notice already
// on its way may still reach notify just after Leave returns; the transport
// drops it, as it does a frame for a closed connection.
//
// # JetStream
//
// The Broker interface is what a NATS JetStream implementation (the cluster
// mode, issue #13) would fill, so that every instance's workers share one
// queue and nothing is lost when an instance dies:
//
//   - Each queue is a work-queue stream (RetentionPolicy WorkQueue) on a
//     subject such as queue.<name>, with MaxMsgs = MaxTasks and DiscardNew,
//     so that a full stream rejects the publish: Add returns ErrQueueFull.
//     The task ID is the message ID (Nats-Msg-Id, deduplication); the
//     options travel as headers.
//   - One durable pull consumer per queue, shared by all instances, with
//     AckWait = OfferTimeout and MaxAckPending bounding what is out. An
//     instance fetches only as many messages as it has free workers, and
//     offers each to its own longest-free worker: fairness holds within an
//     instance, and across instances as far as their fetches interleave.
//   - Assign is an in-progress ack (AckProgress) and, for Complete tasks,
//     repeated every AckWait until Done (Ack) or TaskTimeout; without
//     Complete, Assign acks. Reject is a Nak, so that JetStream redelivers
//     it ahead of newer messages; an expired offer is an AckWait redelivery;
//     a dead instance's messages come back the same way.
//     NumDelivered is Notice.Attempt.
//   - Refusals (who rejected which task) need a KV bucket keyed by task ID,
//     with a TTL, so that an instance skips workers that refused, and clears
//     the entry when every live worker did; live workers per queue would be
//     a second KV bucket with heartbeats.
//   - Take is a fetch with NoWait; Stats come from the stream (Msgs is the
//     depth, the first message's time the oldest) and the consumer
//     (NumAckPending, NumRedelivered), with the counters kept per instance.
//
// What remains for that: the KV buckets for refusals and live workers, the
// AckProgress heartbeat for long Complete tasks, and a test that kills an
// instance mid-task.
package queue
