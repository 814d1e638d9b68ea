// Package metrics owns eventsrv's Prometheus metrics: their names, help
// texts and registry, and the handler that serves them. The packages that
// count things declare, each in its own terms, the few methods they call;
// *Metrics implements all of them.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"eventsrv/queue"
)

// Metrics is the set of eventsrv's metrics in one registry.
type Metrics struct {
	reg *prometheus.Registry

	published    *prometheus.CounterVec
	closed       *prometheus.CounterVec
	writeWait    prometheus.Histogram
	authFailures *prometheus.CounterVec
	tokenReloads *prometheus.CounterVec
	natsPublish  prometheus.Histogram
}

// New returns the metrics, with Go runtime and process metrics included.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventsrv_events_published_total",
			Help: "Events published (code OK: one per event, a POST /events batch counting each of its events) and refused requests by the code answered (INVALID_BODY, UNAUTHENTICATED, ...).",
		}, []string{"code"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventsrv_subscribers_closed_total",
			Help: "Subscriber connections ended, by reason (slow consumer, ping timeout, closed by peer, ...).",
		}, []string{"reason"}),
		writeWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eventsrv_write_wait_seconds",
			Help: "Per write to a subscriber: time from the oldest frame in it being queued (at publish) to the write.",
			// From well under a millisecond (a quiet server) to seconds (a
			// subscriber about to be cut off).
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventsrv_auth_failures_total",
			Help: "Refused credentials, by reason (unauthenticated, unrecognized scheme) and transport.",
		}, []string{"reason", "via"}),
		tokenReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventsrv_tokens_reloads_total",
			Help: "Tokens file loads after a change or SIGHUP, by result (ok, error).",
		}, []string{"result"}),
		natsPublish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eventsrv_nats_publish_seconds",
			Help: "Cluster mode: time from a publish to JetStream's acknowledgement.",
			// From a local embedded server's tens of microseconds to
			// NATS_PUBLISH_TIMEOUT's seconds.
			Buckets: prometheus.ExponentialBuckets(0.00005, 3, 11),
		}),
	}
	m.reg.MustRegister(m.published, m.closed, m.writeWait, m.natsPublish,
		m.authFailures, m.tokenReloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// HubStats is what the metrics read from the broadcast hub at each scrape.
// The hub counts for its admin status anyway; reading its counts, rather
// than counting again, keeps the publish path to one count.
type HubStats interface {
	// SubscribersByTransport counts open connections by transport.
	SubscribersByTransport() map[string]int
	// QueuedBytes sums the bytes waiting in every subscriber's queue.
	QueuedBytes() int
	// Totals are the connections accepted and the deliveries queued.
	Totals() (connections, deliveries uint64)
}

// WatchHub adds the metrics read from hub when scraped.
func (m *Metrics) WatchHub(hub HubStats) {
	m.reg.MustRegister(&hubCollector{hub: hub,
		subscribers: prometheus.NewDesc("eventsrv_subscribers",
			"Open subscriber connections, by transport.", []string{"transport"}, nil),
		queued: prometheus.NewDesc("eventsrv_queued_bytes",
			"Bytes waiting in subscribers' queues.", nil, nil),
		connections: prometheus.NewDesc("eventsrv_connections_total",
			"Subscriber connections accepted.", nil, nil),
		deliveries: prometheus.NewDesc("eventsrv_deliveries_total",
			"Events queued to subscribers (one per event and subscriber).", nil, nil),
	})
}

type hubCollector struct {
	hub                     HubStats
	subscribers, queued     *prometheus.Desc
	connections, deliveries *prometheus.Desc
}

func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.subscribers
	ch <- c.queued
	ch <- c.connections
	ch <- c.deliveries
}

func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	for transport, n := range c.hub.SubscribersByTransport() {
		ch <- prometheus.MustNewConstMetric(c.subscribers, prometheus.GaugeValue, float64(n), transport)
	}
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(c.hub.QueuedBytes()))
	connections, deliveries := c.hub.Totals()
	ch <- prometheus.MustNewConstMetric(c.connections, prometheus.CounterValue, float64(connections))
	ch <- prometheus.MustNewConstMetric(c.deliveries, prometheus.CounterValue, float64(deliveries))
}

// HistoryStats is what the metrics read from the event history.
type HistoryStats interface {
	// Stats reports the events and bytes kept.
	Stats() (events, bytes int)
}

// WatchHistory adds the history's size, read when scraped.
func (m *Metrics) WatchHistory(h HistoryStats) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "eventsrv_history_events", Help: "Events kept for subscribers that resume.",
		}, func() float64 { n, _ := h.Stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "eventsrv_history_bytes", Help: "Bytes of the events kept for subscribers that resume.",
		}, func() float64 { _, b := h.Stats(); return float64(b) }),
	)
}

// ClusterStats is what the metrics read from the cluster bus.
type ClusterStats interface {
	// Connected reports whether the NATS connection is up.
	Connected() bool
	// Lag is how many events of the stream this instance has not yet
	// fed to its subscribers.
	Lag() uint64
	// Ready is nil while the instance follows its stream.
	Ready() error
}

// WatchCluster adds the cluster bus's state, read when scraped.
func (m *Metrics) WatchCluster(c ClusterStats) {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	m.reg.MustRegister(
		gauge("eventsrv_nats_connected", "Cluster mode: 1 while the NATS connection is up.",
			func() float64 { return flag(c.Connected()) }),
		gauge("eventsrv_nats_ready", "Cluster mode: 1 while this instance follows its JetStream stream (as /readyz).",
			func() float64 { return flag(c.Ready() == nil) }),
		gauge("eventsrv_nats_feed_lag_events", "Cluster mode: events in the stream not yet fed to this instance's subscribers.",
			func() float64 { return float64(c.Lag()) }),
	)
}

// NATSPublished records the time JetStream took to acknowledge a publish.
func (m *Metrics) NATSPublished(d time.Duration) { m.natsPublish.Observe(d.Seconds()) }

// Published counts a POST /event answer by its code.
func (m *Metrics) Published(code string) { m.published.WithLabelValues(code).Inc() }

// Closed counts a subscriber connection that ended for reason.
func (m *Metrics) Closed(reason string) { m.closed.WithLabelValues(reason).Inc() }

// WriteWaited records how long the oldest frame of a write waited.
func (m *Metrics) WriteWaited(d time.Duration) { m.writeWait.Observe(d.Seconds()) }

// AuthFailed counts a refused credential.
func (m *Metrics) AuthFailed(reason, via string) { m.authFailures.WithLabelValues(reason, via).Inc() }

// TokensReloaded counts a tokens file load.
func (m *Metrics) TokensReloaded(ok bool) {
	result := "ok"
	if !ok {
		result = "error"
	}
	m.tokenReloads.WithLabelValues(result).Inc()
}

// WatchQueues adds the work queues' state, read when scraped.
func (m *Metrics) WatchQueues(stats func() []queue.QueueStats) {
	m.reg.MustRegister(&queueCollector{stats: stats,
		depth: prometheus.NewDesc("eventsrv_queue_depth",
			"Work queue tasks waiting for an offer.", []string{"queue"}, nil),
		workers: prometheus.NewDesc("eventsrv_queue_workers",
			"Workers connected to a work queue.", []string{"queue"}, nil),
		oldest: prometheus.NewDesc("eventsrv_queue_oldest_waiting_seconds",
			"Age of a work queue's oldest waiting task; 0 when none waits.", []string{"queue"}, nil),
		tasks: prometheus.NewDesc("eventsrv_queue_tasks_total",
			"Work queue task events: added, refused_full, offered, reoffered, assigned, taken, rejected, timed_out, task_timed_out, abandoned, done.",
			[]string{"queue", "event"}, nil),
	})
}

type queueCollector struct {
	stats                         func() []queue.QueueStats
	depth, workers, oldest, tasks *prometheus.Desc
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.workers
	ch <- c.oldest
	ch <- c.tasks
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	for _, q := range c.stats() {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(q.Depth), q.Name)
		ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(q.Workers), q.Name)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, q.OldestWaiting.Seconds(), q.Name)
		for event, n := range map[string]uint64{
			"added": q.Added, "refused_full": q.Full, "offered": q.Offered, "reoffered": q.Reoffered,
			"assigned": q.Assigned, "taken": q.Taken, "rejected": q.Rejected, "timed_out": q.TimedOut,
			"task_timed_out": q.TaskTimedOut, "abandoned": q.Abandoned, "done": q.Done,
		} {
			ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.CounterValue, float64(n), q.Name, event)
		}
	}
}
