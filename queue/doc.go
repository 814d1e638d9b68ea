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
// In cluster mode (NATS_URL or NATS_EMBED, issue #13) the Broker is
// eventsrv/cluster/jsqueue's, not the Manager: every instance's workers
// share each queue, and the tasks live in NATS JetStream, so that nothing is
// lost when an instance dies or restarts. How it works:
//
//   - One work-queue stream, <NATS_STREAM>_QUEUES (RetentionPolicy
//     WorkQueue, file storage, NATS_REPLICAS), with one subject per queue:
//     <NATS_STREAM>_QUEUES.<name>, the name encoded as event names are
//     (cluster/subject.go). MaxMsgsPerSubject is MaxTasks with DiscardNew
//     per subject, so that a full queue refuses the publish: Add returns
//     ErrQueueFull, for the whole cluster, exactly. The task ID is the
//     message ID (Nats-Msg-Id, deduplicated for 2 minutes); Forced and
//     Complete travel as headers. Add answers once JetStream has stored the
//     task.
//   - One durable pull consumer per queue, shared by every instance, with
//     AckWait = OfferTimeout (at least 2 s, at most a minute): the "ack
//     wait". Each instance keeps pull requests out for as many tasks as its
//     workers of the queue have free slots; JetStream serves waiting pull
//     requests in turn, so the instance that has waited longest gets the
//     next task, and the instance offers it to its own longest-free worker.
//     A task delivered to an instance whose workers cannot take it (they
//     left, or became busy with another queue's task) waits there, parked,
//     for one of them, and counts in Depth.
//   - An instance holds a delivered task under a lease: it counts from the
//     pull request that brought it (never later than the delivery) and
//     ends an ack wait later; an in-progress ack (AckProgress), confirmed by
//     JetStream before the lease ends, renews it halfway through, for offers, parked tasks and
//     Complete tasks alike, so that OfferTimeout and TaskTimeout are this
//     instance's timers, not JetStream's. A quarter of the ack wait before
//     the lease ends the instance stops acting on the task (no ack, no nak:
//     JetStream may deliver it elsewhere from then on); if the lease could
//     not be renewed (NATS unreachable), the worker is told "expired", as
//     after OfferTimeout.
//   - Assign without Complete, Done, a forced delivery without Complete and
//     a Take without Complete ack the message and wait for JetStream's
//     confirmation, retried while the lease lasts; the answer is nil once
//     it is confirmed (the message is gone from the stream). Assign of a
//     Complete task changes nothing in JetStream: the lease goes on being
//     renewed until Done or TaskTimeout. A forced task is told to its
//     worker only once acked.
//   - Reject, an expired offer or TaskTimeout, and Leave are a nak: JetStream
//     delivers the task again at once, ahead of newer tasks; the nak is
//     confirmed before this instance asks for more, and tasks parked here
//     that are newer wait a quarter of a second for the refused one to come
//     back, so that it is not overtaken here. An instance that dies (or is
//     cut off) acks and naks nothing: JetStream delivers its tasks again
//     when their lease runs out, within an ack wait. Close naks what the
//     instance holds, so that a shutdown gives its tasks back at once.
//   - Refusals are remembered by the instance where they happened: the task
//     goes, on the instance it is delivered to, to its longest-free worker
//     that has not refused it, waiting for a busy one that has not; when
//     every live worker of that instance has refused it, it is handed back
//     once for other instances' workers (if any other instance has workers
//     of the queue), and goes around again there when it comes back.
//   - Take takes a task parked here, or asks JetStream for the queue's next
//     task without waiting: one that a worker's pull request waits for
//     goes to that worker, as a task goes to a free worker in memory.
//   - The instances tell each other, on core NATS subjects (nothing
//     stored), which queues they have workers on and how many tasks they
//     have out (every second, <NATS_STREAM>_QCTL.presence), and ask each
//     other about answers (<NATS_STREAM>_QCTL.ask): an HTTP worker's
//     assign, reject or done that the load balancer sent to an instance
//     that does not hold the task is settled by the one that does.
//
// What holds in cluster mode:
//
//   - A task is held by at most one worker at any moment, across all
//     instances: within an instance as in the Manager, and between
//     instances because an instance stops acting on a task before JetStream
//     may deliver it elsewhere (assuming its messages reach NATS within a
//     quarter of the ack wait).
//   - Nothing is lost when an instance dies, and delivery is at least once:
//     its offers and its assigned tasks that still need Done are offered
//     elsewhere within an ack wait. Without Complete a task is assigned once;
//     the only exception is an ack sent but not confirmed before its lease
//     ran out (a NATS failover at that moment), which is answered nil and
//     may be delivered again, rather than lost.
//   - Notice.Attempt is JetStream's delivery count. It starts at 1 and grows
//     with every offer, so a worker spots a re-delivery, but it may skip a
//     number when a delivery reached an instance that could not offer it
//     (its workers had all left, or all refused it and it went on to other
//     instances).
//   - Fairness is longest-free first within an instance, and across
//     instances as their pull requests interleave: roughly in turn.
//   - An answer about a task that no instance holds right now (refused and
//     on its way back) is ErrUnknownTask where the Manager would say
//     ErrNotOfferedToYou, unless an instance remembers the caller's offer
//     (then ErrOfferExpired, as in the Manager). An answer another instance
//     must settle waits for it (a round trip), up to a second.
//   - Repeated answers are recognised for Retain by the instance that
//     finished the task, from any instance.
//   - Stats: Depth (the queue's unfinished tasks less those out with
//     workers on live instances) and OldestWaiting come from JetStream and
//     are the same on every instance; Workers, Offering, Working and the
//     counters are the instance's own. MaxQueues counts the queues with
//     unfinished tasks in the stream, checked against a count at most a
//     second old. Give every instance the same OFFER_TIMEOUT, TASK_TIMEOUT,
//     QUEUE_MAX_TASKS and QUEUE_MAX_QUEUES: the stream and its consumers
//     hold the first two's effects for all (an ack wait is only ever
//     lowered, and every instance's leases assume the smallest).
package queue
