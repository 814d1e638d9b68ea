package cluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"eventsrv/history"
)

// The instances tell each other how far their feeds are, on the core NATS
// subject <NATS_STREAM>_FEED.progress (nothing is stored): each says its
// feed's epoch and sequence whenever its feed has moved a quarter of the
// hold's slack (reportStep) since it last said, at least every reportMoving
// while the feed moves and every reportIdle while it does not, and "bye"
// when it closes. A publish
// is held (Bus.keepUp) while a live instance's feed is more than
// HISTORY_SIZE/2 behind it, not only this instance's own: in a cluster the
// feeds do the fan-out, JetStream acknowledges without waiting for them,
// and a feed that falls HISTORY_SIZE events behind loses events to the
// stream's limits. An instance not heard from for peerTTL is gone (it died,
// or lost its connection) and holds nothing; so is one whose feed is still
// reading the stream's history for the first time (it says nothing yet).
//
// The reports by count keep a held publisher's wait short: with reports
// only every 100 ms, a publisher held behind a peer waited for the peer's
// next report even when the peer had long caught up, and at 20k events/s
// (2,000 events per 100 ms against a slack of 500) nearly every publish
// was held that long (POST p50 93 ms, with a third of the 2 cores idle).
const (
	reportMoving = 100 * time.Millisecond
	reportIdle   = 500 * time.Millisecond
	peerTTL      = 1500 * time.Millisecond
)

// peerFeed is another instance's feed, as it last said.
type peerFeed struct {
	fed  history.ID
	seen time.Time
}

// peers tracks the other instances' feeds.
type peers struct {
	mu    sync.Mutex
	feeds map[string]peerFeed
	moved chan struct{} // closed and replaced when a report comes
}

func newPeers() *peers { return &peers{feeds: make(map[string]peerFeed)} }

// report records a report; "bye" removes the instance.
func (p *peers) report(id string, fed history.ID, bye bool, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if bye {
		delete(p.feeds, id)
	} else {
		p.feeds[id] = peerFeed{fed: fed, seen: now}
	}
	if p.moved != nil {
		close(p.moved)
		p.moved = nil
	}
}

// behind reports whether a live instance's feed of epoch is not yet
// through seq, and when the first such instance found would be gone (it
// forgets those gone already). Instances in another epoch are starting
// over, and hold nothing.
func (p *peers) behind(epoch, seq uint64, now time.Time) (expires time.Time, ok bool) {
	for id, f := range p.feeds {
		if now.Sub(f.seen) >= peerTTL {
			delete(p.feeds, id)
			continue
		}
		if f.fed.Epoch == epoch && f.fed.Seq < seq {
			return f.seen.Add(peerTTL), true
		}
	}
	return time.Time{}, false
}

// anyBehind reports whether a live instance's feed of epoch is not yet
// through seq.
func (p *peers) anyBehind(epoch, seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.behind(epoch, seq, time.Now())
	return ok
}

// await waits until no live instance's feed of epoch is behind seq, or ctx
// ends; it reports whether none is.
func (p *peers) await(ctx context.Context, epoch, seq uint64) bool {
	for {
		p.mu.Lock()
		expires, ok := p.behind(epoch, seq, time.Now())
		if !ok {
			p.mu.Unlock()
			return true
		}
		if p.moved == nil {
			p.moved = make(chan struct{})
		}
		moved := p.moved
		p.mu.Unlock()
		gone := time.NewTimer(time.Until(expires))
		select {
		case <-moved:
		case <-gone.C:
		case <-ctx.Done():
			gone.Stop()
			return false
		}
		gone.Stop()
	}
}

// progressMsg is a report: "<id> <epoch> <seq>", or "<id> bye".
func progressMsg(id string, fed history.ID) []byte {
	return fmt.Appendf(nil, "%s %d %d", id, fed.Epoch, fed.Seq)
}

// parseProgress parses a report; ok is false for anything else.
func parseProgress(data []byte) (id string, fed history.ID, bye, ok bool) {
	f := strings.Fields(string(data))
	switch {
	case len(f) == 2 && f[1] == "bye":
		return f[0], history.ID{}, true, true
	case len(f) != 3:
		return "", history.ID{}, false, false
	}
	epoch, err1 := strconv.ParseUint(f[1], 10, 64)
	seq, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return "", history.ID{}, false, false
	}
	return f[0], history.ID{Epoch: epoch, Seq: seq}, false, true
}

// progressSubject is the subject of the reports.
func (b *Bus) progressSubject() string { return b.cfg.Stream + "_FEED.progress" }

// listenPeers subscribes to the other instances' reports.
func (b *Bus) listenPeers() (*nats.Subscription, error) {
	return b.nc.Subscribe(b.progressSubject(), func(m *nats.Msg) {
		id, fed, bye, ok := parseProgress(m.Data)
		if !ok || id == b.id {
			return
		}
		b.peers.report(id, fed, bye, time.Now())
	})
}

// reportStep is how far the feed moves between reports by count: a
// quarter of the hold's slack, and no less than minReportStep, so that a
// small HISTORY_SIZE does not make a report of every event.
func (b *Bus) reportStep() uint64 {
	return max(uint64(max(b.cfg.Limits.Size, 0))/8, minReportStep)
}

const minReportStep = 16

// fedTo is called by the feed after it fed the hub seq: it wakes the
// reporter when the feed has moved reportStep since the last report.
func (b *Bus) fedTo(seq uint64) {
	if seq >= b.reported.Load()+b.step {
		select {
		case b.progressed <- struct{}{}:
		default:
		}
	}
}

// reportFeed says how far this instance's feed is until ctx ends, then
// says bye.
func (b *Bus) reportFeed(ctx context.Context) {
	every := b.cfg.reportEvery
	if every == 0 {
		every = reportMoving
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var last history.ID
	var lastAt time.Time
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			_ = b.nc.Publish(b.progressSubject(), []byte(b.id+" bye"))
			return
		case now = <-t.C:
		case <-b.progressed:
			now = time.Now()
		}
		if !b.caughtUp.Load() {
			continue // reading the stream's history: it holds nobody
		}
		fed := b.hub.Fed()
		if fed == last && now.Sub(lastAt) < reportIdle {
			continue
		}
		if b.nc.Publish(b.progressSubject(), progressMsg(b.id, fed)) == nil {
			last, lastAt = fed, now
			b.reported.Store(fed.Seq)
		}
	}
}
