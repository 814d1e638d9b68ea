package main

import "slices"

// With several -listen or -broadcast URLs (the instances of a cluster), the
// report breaks its figures down by URL, so that an instance that lost
// events, refused subscribers or answered slowly stands out, and the lines
// add up to the totals.

// listenTarget is what the publishers of one listen URL did.
type listenTarget struct {
	URL              string  `json:"url"`
	Publishers       int     `json:"publishers"`
	Published        int     `json:"published"`
	PublishFailed    int     `json:"publish_failed"`
	PublishPerSecond float64 `json:"publish_per_second"`
}

// broadcastTarget is what the subscribers of one broadcast URL received.
type broadcastTarget struct {
	URL          string        `json:"url"`
	Subscribers  int           `json:"subscribers"`
	Connected    int           `json:"connected"`
	DialFailures int64         `json:"dial_failures"`
	Disconnected int64         `json:"disconnected"`
	Expected     int64         `json:"expected"`
	Received     int64         `json:"received"`
	Lost         int64         `json:"lost"`
	Duplicates   int64         `json:"duplicates"`
	Unexpected   int64         `json:"unexpected"`
	Malformed    int64         `json:"malformed"`
	Latency      latencyReport `json:"latency_ms"`
}

// newListenTargets breaks the publishing down by listen URL; nil for one.
func newListenTargets(cfg config, pub publishResult) []listenTarget {
	if len(cfg.publishURLs) < 2 {
		return nil
	}
	ts := make([]listenTarget, len(cfg.publishURLs))
	for i, url := range cfg.publishURLs {
		p := pub.targets[i]
		ts[i] = listenTarget{
			URL:              url,
			Publishers:       p.publishers,
			Published:        p.succeeded,
			PublishFailed:    p.failed,
			PublishPerSecond: perSecond(int64(p.succeeded), p.lastDone-p.firstSend),
		}
	}
	return ts
}

// newBroadcastTargets breaks the deliveries down by broadcast URL; nil for
// one, or for no subscribers. Call it after the fleet is closed and before summarize, which
// gathers the latencies over the subscribers' windows.
func newBroadcastTargets(cfg config, f *fleet, pub publishResult) []broadcastTarget {
	n := len(cfg.broadcastURLs)
	if n < 2 || cfg.subs == 0 {
		return nil
	}
	ts := make([]broadcastTarget, n)
	latencies := make([][]int64, n)
	for i := range ts {
		ts[i].URL = cfg.broadcastURLs[i]
		ts[i].Subscribers = cfg.subs / n
		if i < cfg.subs%n {
			ts[i].Subscribers++
		}
		ts[i].DialFailures = f.failedAt[i].Load()
	}
	for _, s := range f.subs {
		t, tl := &ts[s.urlIndex], s.tally
		lost, unexpected := tl.lostAndUnexpected(pub.acked)
		t.Connected++
		if s.exitErr != nil {
			t.Disconnected++
		}
		t.Received += tl.received
		t.Lost += lost
		t.Unexpected += unexpected
		t.Duplicates += tl.duplicates
		t.Malformed += tl.malformed
		latencies[s.urlIndex] = append(latencies[s.urlIndex], tl.latencies...)
	}
	for i := range ts {
		ts[i].Expected = int64(ts[i].Connected) * int64(pub.succeeded)
		slices.Sort(latencies[i])
		ts[i].Latency = newLatencyReport(latencies[i])
	}
	return ts
}
