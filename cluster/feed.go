package cluster

import (
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"eventsrv/history"
	"eventsrv/internal/jsonvalid"
)

// An instance's feed has two sources. Live: the stream republishes every
// message it stores, once a majority has it, on the core subject
// <NATS_STREAM>_LIVE.<nonce>.<encoded name> with its sequence in the
// Nats-Sequence header (JetStream's RePublish); every instance subscribes,
// and the stream's leader sends each message once to each NATS server with
// a subscriber. Catch-up: an ordered consumer from the feed's position,
// which reads the stream's store. Live is the cheap one: no consumer state,
// no pull requests and no acknowledgements on the servers, and no wait for
// a follower to learn of the commit (an R1 consumer on a follower delivers
// only then). It cost NATS ~10% less CPU per event with 3 instances, and
// the instances ~15% less, in a 100k-event test on this machine.
//
// Live messages are core NATS, which may lose some: a leader that dies
// after storing a message but before republishing it, a subscriber too slow
// for its pending limits. A live message is fed only when it is next in the
// stream (its sequence one past the feed's), so nothing is skipped without
// being seen; one past a gap is kept back (early, bounded) and the catch-up
// consumer is started from the feed's position. The consumer feeds the gap,
// the kept-back messages follow, and once a live message is next again the
// consumer stops. A gap with nothing after it (the last message lost, then
// silence) is found by the watch: the stream's last sequence is ahead of a
// feed that has not moved for a watch interval.
//
// The nonce is the stream's, chosen by whoever creates it: a stream deleted
// and created anew republishes on another subject, so an instance never
// takes a new stream's message for its old one's.

// livePrefix is the prefix of the live subjects of stream.
func livePrefix(stream string) string { return stream + "_LIVE." }

// newLiveDestination is the RePublish destination of a stream created now.
func newLiveDestination(stream string) string { return livePrefix(stream) + nuid.Next() + ".>" }

// maxEarly bounds the live messages kept back behind a gap; those past it
// are left to the catch-up consumer.
const maxEarly = 8192

// feed is one follow's feed of the hub: it puts the two sources in the
// stream's order.
type feed struct {
	b      *Bus
	epoch  uint64
	prefix string // the live subjects' prefix, up to the encoded name

	mu    sync.Mutex
	fed   uint64    // the last sequence fed in this follow
	early []liveMsg // live messages past a gap, ascending
	// catching is set while the catch-up consumer is wanted; changed
	// tells the follow loop, which starts or stops it.
	catching bool
	changed  chan struct{}
	// gen numbers the catch-up consumers: a message of one stopped, late,
	// is not taken (it may be past a gap the next one fills).
	gen uint64
}

type liveMsg struct {
	seq     uint64
	subject string
	data    []byte
}

func newFeed(b *Bus, epoch, fed uint64, destination string) *feed {
	return &feed{b: b, epoch: epoch, fed: fed, prefix: strings.TrimSuffix(destination, ".>"),
		changed: make(chan struct{}, 1)}
}

// live takes a republished message.
func (f *feed) live(m *nats.Msg) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil || seq == 0 {
		return
	}
	f.b.noteLast(seq)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case seq <= f.fed:
		return
	case seq > f.fed+1:
		if n := len(f.early); n < maxEarly && (n == 0 || seq > f.early[n-1].seq) {
			f.early = append(f.early, liveMsg{seq, m.Subject, m.Data})
		}
		if !f.catching {
			f.b.quiet.Log(f.b.log, slog.LevelInfo, "the live messages skip some of the stream's: the feed reads them from the stream",
				"fed", f.fed, "live", seq)
			f.setCatchingLocked(true)
		}
		return
	}
	f.feedLocked(seq, m.Subject, f.prefix, m.Data)
	f.drainLocked()
	if len(f.early) == 0 {
		f.setCatchingLocked(false)
	}
	if !f.b.caughtUp.Load() {
		f.b.caughtUp.Store(true)
	}
}

// caughtUpFrom takes a message of catch-up consumer gen.
func (f *feed) caughtUpFrom(gen uint64, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	seq := md.Sequence.Stream
	f.b.noteLast(seq + md.NumPending)
	f.mu.Lock()
	defer f.mu.Unlock()
	if gen != f.gen {
		return
	}
	if seq > f.fed {
		// The consumer skips what the stream no longer has: a gap in its
		// sequences is events lost to the limits, which the hub is told.
		f.feedLocked(seq, m.Subject(), f.b.cfg.Stream, m.Data())
	}
	f.drainLocked()
	if md.NumPending == 0 {
		// At the stream's end: what is stored next comes live.
		if len(f.early) == 0 {
			f.setCatchingLocked(false)
		}
		if !f.b.caughtUp.Load() {
			f.b.caughtUp.Store(true)
		}
	}
}

// setCatchingLocked says whether the catch-up consumer is wanted, and
// tells the follow loop of a change; under mu.
func (f *feed) setCatchingLocked(on bool) {
	if f.catching != on {
		f.catching = on
		signal(f.changed)
	}
}

// drainLocked feeds the kept-back live messages that are next; under mu.
func (f *feed) drainLocked() {
	i := 0
	for ; i < len(f.early) && f.early[i].seq <= f.fed+1; i++ {
		if e := f.early[i]; e.seq == f.fed+1 {
			f.feedLocked(e.seq, e.subject, f.prefix, e.data)
		}
	}
	if i > 0 {
		f.early = append(f.early[:0], f.early[i:]...)
	}
}

// feedLocked hands the hub the stream's message seq, whose subject is
// prefix and its encoded event name; under mu.
func (f *feed) feedLocked(seq uint64, subject, prefix string, data []byte) {
	f.fed = seq
	if f.b.epoch.Load() != f.epoch {
		// The stream was deleted (perhaps created anew): the follow starts
		// over with the new one.
		return
	}
	id := history.ID{Epoch: f.epoch, Seq: seq}
	name, ok := Name(prefix, subject)
	if !ok || !jsonvalid.Valid(data) {
		// Not published by eventsrv: passed over, which loses nothing.
		f.b.quiet.Log(f.b.log, slog.LevelWarn, "skipped a message of the NATS stream that eventsrv did not publish", "seq", seq)
		f.b.hub.Skip(id)
		return
	}
	f.b.hub.Deliver(id, name, data)
	f.b.fedTo(seq)
}

// position is the last sequence fed, and whether the catch-up consumer
// is wanted.
func (f *feed) position() (fed uint64, catching bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fed, f.catching
}

// want asks for the catch-up consumer: the follow loop found the feed
// behind the stream's end (why says how).
func (f *feed) want(why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.catching {
		f.b.quiet.Log(f.b.log, slog.LevelInfo, why+"; the feed reads what it missed from the stream", "fed", f.fed, "last", f.b.lastSeq.Load())
		f.setCatchingLocked(true)
	}
}

// nextGen starts a new generation of catch-up consumer (none, after a
// stop), and returns it with the position to start after.
func (f *feed) nextGen() (gen, fed uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	return f.gen, f.fed
}

// signal wakes whoever waits on c (of capacity 1) without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// noteLast records that the stream has at least seq messages.
func (b *Bus) noteLast(seq uint64) {
	for {
		last := b.lastSeq.Load()
		if seq <= last || b.lastSeq.CompareAndSwap(last, seq) {
			return
		}
	}
}
