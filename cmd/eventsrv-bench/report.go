package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
)

const (
	modeLoad      = "load"
	modeIdle      = "idle"
	modeJetStream = "jetstream"
	modeCompare   = "compare"
	modeVersus    = "versus"
	mib           = 1 << 20
)

// report is everything a run found. It is printed as text or, with -json,
// as this structure.
type report struct {
	Mode         string   `json:"mode"`
	Subscribers  int      `json:"subscribers"`
	Connected    int      `json:"connected"`
	DialFailures int      `json:"dial_failures"`
	DialErrors   []string `json:"dial_errors,omitempty"`
	// Disconnected counts subscribers whose connection ended before the
	// tool closed it.
	Disconnected     int64          `json:"disconnected"`
	DisconnectErrors []string       `json:"disconnect_errors,omitempty"`
	Load             *loadReport    `json:"load,omitempty"`
	Server           *serverReport  `json:"server,omitempty"`
	Idle             *idleReport    `json:"idle,omitempty"`
	Stalled          *stalledReport `json:"stalled,omitempty"`
	Interrupted      bool           `json:"interrupted,omitempty"`
	Pass             bool           `json:"pass"`
	Failures         []string       `json:"failures,omitempty"`
}

// loadReport is the publish and delivery part of a load run.
type loadReport struct {
	Events           int            `json:"events"`
	Publishers       int            `json:"publishers"`
	SizeBytes        int            `json:"size_bytes"`
	Rate             float64        `json:"rate"`
	Published        int            `json:"published"`
	PublishFailed    int            `json:"publish_failed"`
	NotAttempted     int            `json:"not_attempted"`
	PublishFailures  map[string]int `json:"publish_failures,omitempty"`
	PublishAborted   string         `json:"publish_aborted,omitempty"`
	PublishSeconds   float64        `json:"publish_seconds"`
	PublishPerSecond float64        `json:"publish_per_second"`
	PublishLatency   latencyReport  `json:"publish_latency_ms"` // POST to its OK

	DeliverySeconds     float64       `json:"delivery_seconds"`
	DeliveriesPerSecond float64       `json:"deliveries_per_second"`
	Expected            int64         `json:"expected"`
	Received            int64         `json:"received"`
	Lost                int64         `json:"lost"`
	Duplicates          int64         `json:"duplicates"`
	Unexpected          int64         `json:"unexpected"`
	OrderViolations     int64         `json:"order_violations"`
	OrderMismatches     int64         `json:"order_mismatches"`
	Malformed           int64         `json:"malformed"`
	MalformedSamples    []string      `json:"malformed_samples,omitempty"`
	TimedOut            bool          `json:"timed_out"`
	TimeoutSeconds      float64       `json:"timeout_seconds"`
	Latency             latencyReport `json:"latency_ms"`
	// Listen and Broadcast break the figures down by URL when there are
	// several.
	Listen    []listenTarget    `json:"listen,omitempty"`
	Broadcast []broadcastTarget `json:"broadcast,omitempty"`
}

// latencyReport holds latency percentiles in milliseconds.
type latencyReport struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
	P999    float64 `json:"p999"`
	Max     float64 `json:"max"`
}

// serverReport is what /proc said about the server during the run.
type serverReport struct {
	PID                  int     `json:"pid"`
	PIDs                 []int   `json:"pids,omitempty"` // all of them, when several were given
	CPUSeconds           float64 `json:"cpu_seconds"`
	CPUMicrosPerDelivery float64 `json:"cpu_us_per_delivery"`
	CPUMicrosPerPublish  float64 `json:"cpu_us_per_publish"`
	RSSBeforeMiB         float64 `json:"rss_before_mib"`
	RSSAfterMiB          float64 `json:"rss_after_mib"`
	// Machine is the whole machine over the same window, so that a run
	// that shared the CPUs with something else shows it.
	Machine *machineReport `json:"machine,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// machineReport is CPU time per second of the window, in cores: the busy
// total, and of it the servers (-pid), this tool, and everything else
// (other processes, the kernel's own threads, the hypervisor's steal).
type machineReport struct {
	CPUs        int     `json:"cpus"`
	BusyCores   float64 `json:"busy_cores"`
	ServerCores float64 `json:"server_cores"`
	ToolCores   float64 `json:"tool_cores"`
	OtherCores  float64 `json:"other_cores"`
}

// idleReport is the server's memory cost per idle subscriber.
type idleReport struct {
	RSSBeforeBytes     int64   `json:"rss_before_bytes"`
	RSSAfterBytes      int64   `json:"rss_after_bytes"`
	BytesPerSubscriber float64 `json:"bytes_per_subscriber"`
	KiBPerSubscriber   float64 `json:"kib_per_subscriber"`
	Stable             bool    `json:"stable"`
}

// newLatencyReport summarizes sorted latencies in nanoseconds.
func newLatencyReport(sorted []int64) latencyReport {
	ms := func(q float64) float64 { return round2(float64(percentile(sorted, q)) / 1e6) }
	return latencyReport{
		Samples: len(sorted),
		P50:     ms(0.50),
		P90:     ms(0.90),
		P99:     ms(0.99),
		P999:    ms(0.999),
		Max:     ms(1),
	}
}

// judge decides the result: every subscriber connected and stayed
// connected, every event was published and reached every subscriber
// exactly once, in one order, and every frame was well formed.
func (r *report) judge() {
	r.Failures = nil
	r.fail(r.DialFailures > 0, "%d of %d subscribers failed to connect", r.DialFailures, r.Subscribers)
	r.fail(r.Disconnected > 0, "%d subscribers disconnected early", r.Disconnected)
	r.fail(r.Interrupted, "interrupted before the run finished")
	if l := r.Load; l != nil {
		r.fail(l.PublishFailed > 0, "%d publishes failed", l.PublishFailed)
		r.fail(l.NotAttempted > 0, "%d events never published (%s)", l.NotAttempted, l.PublishAborted)
		r.fail(l.Lost > 0, "lost %d", l.Lost)
		r.fail(l.Duplicates > 0, "duplicates %d", l.Duplicates)
		r.fail(l.Unexpected > 0, "unexpected %d (delivered but not acknowledged)", l.Unexpected)
		r.fail(l.OrderViolations > 0, "order violations %d", l.OrderViolations)
		r.fail(l.OrderMismatches > 0, "order mismatches %d", l.OrderMismatches)
		r.fail(l.Malformed > 0, "malformed %d", l.Malformed)
	}
	r.Pass = len(r.Failures) == 0
}

// failures returns why the run failed; none when it passed.
func (r *report) failures() []string {
	if r.Pass {
		return nil
	}
	return r.Failures
}

// fail records a failure when cond holds.
func (r *report) fail(cond bool, format string, args ...any) {
	if cond {
		r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
	}
}

// write prints the report as JSON or as text.
func (r *report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	var b strings.Builder
	r.writeText(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeText formats the report as aligned "label  value" lines.
func (r *report) writeText(b *strings.Builder) {
	line := func(label, format string, args ...any) {
		fmt.Fprintf(b, "%-18s %s\n", label, fmt.Sprintf(format, args...))
	}
	line("subscribers", "%d connected, %d failed, %d disconnected early", r.Connected, r.DialFailures, r.Disconnected)
	listLines(b, r.DialErrors)
	listLines(b, r.DisconnectErrors)
	if r.Load != nil {
		r.Load.writeText(line, b, r.Connected)
	}
	if r.Idle != nil {
		r.Idle.writeText(line, r.Connected)
	}
	if r.Server != nil {
		r.Server.writeText(line)
	}
	if r.Stalled != nil {
		r.Stalled.writeText(line)
	}
	if r.Pass {
		line("result", "PASS")
		return
	}
	line("result", "FAIL: %s", strings.Join(r.Failures, "; "))
}

// writeText prints the load part.
func (l *loadReport) writeText(line func(string, string, ...any), b *strings.Builder, connected int) {
	rate := "unlimited"
	if l.Rate > 0 {
		rate = fmt.Sprintf("%g/s", l.Rate)
	}
	line("load", "%d events of ~%d B, %d publishers, rate %s", l.Events, l.SizeBytes, l.Publishers, rate)
	line("published", "%d ok, %d failed, %d not attempted in %.3fs (%.1f/s)",
		l.Published, l.PublishFailed, l.NotAttempted, l.PublishSeconds, l.PublishPerSecond)
	for _, kind := range slices.Sorted(maps.Keys(l.PublishFailures)) {
		fmt.Fprintf(b, "  %6d × %s\n", l.PublishFailures[kind], kind)
	}
	if pl := l.PublishLatency; pl.Samples > 0 {
		line("publish ms", "p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (POST to OK)", pl.P50, pl.P90, pl.P99, pl.P999, pl.Max)
	}
	for _, t := range l.Listen {
		line("  listen", "%s: %d publishers, %d ok, %d failed (%.1f/s)", t.URL, t.Publishers, t.Published, t.PublishFailed, t.PublishPerSecond)
	}
	if l.PublishAborted != "" {
		line("publish aborted", "%s", l.PublishAborted)
	}
	line("delivery window", "%.3fs, %.1f deliveries/s", l.DeliverySeconds, l.DeliveriesPerSecond)
	line("expected", "%d (%d subscribers × %d published)", l.Expected, connected, l.Published)
	line("received", "%d", l.Received)
	line("lost", "%d", l.Lost)
	line("duplicates", "%d", l.Duplicates)
	line("unexpected", "%d", l.Unexpected)
	line("order violations", "%d", l.OrderViolations)
	line("order mismatches", "%d", l.OrderMismatches)
	line("malformed", "%d", l.Malformed)
	listLines(b, l.MalformedSamples)
	if l.TimedOut {
		line("timed out", "after waiting %gs for deliveries", l.TimeoutSeconds)
	}
	lat := l.Latency
	line("latency ms", "p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (%d samples)",
		lat.P50, lat.P90, lat.P99, lat.P999, lat.Max, lat.Samples)
	for _, t := range l.Broadcast {
		line("  broadcast", "%s: %d of %d connected, %d disconnected early; received %d of %d expected, lost %d, duplicates %d, unexpected %d, malformed %d; latency ms p50 %.2f p99 %.2f max %.2f",
			t.URL, t.Connected, t.Subscribers, t.Disconnected, t.Received, t.Expected, t.Lost, t.Duplicates, t.Unexpected, t.Malformed,
			t.Latency.P50, t.Latency.P99, t.Latency.Max)
	}
}

// writeText prints the idle part.
func (i *idleReport) writeText(line func(string, string, ...any), connected int) {
	stable := "stable"
	if !i.Stable {
		stable = "NOT stable by the timeout"
	}
	line("server rss", "%.1f MiB before, %.1f MiB with %d idle subscribers (%s)",
		float64(i.RSSBeforeBytes)/mib, float64(i.RSSAfterBytes)/mib, connected, stable)
	line("per subscriber", "%.0f B (%.2f KiB)", i.BytesPerSubscriber, i.KiBPerSubscriber)
}

// writeText prints the server part.
func (s *serverReport) writeText(line func(string, string, ...any)) {
	if s.Error != "" {
		line("server", "pid %d: %s", s.PID, s.Error)
		return
	}
	pids := fmt.Sprintf("pid %d", s.PID)
	if len(s.PIDs) > 1 {
		pids = "pids " + strings.Trim(strings.Join(strings.Fields(fmt.Sprint(s.PIDs)), ","), "[]") + ", added up"
	}
	if s.CPUMicrosPerDelivery > 0 || s.CPUMicrosPerPublish == 0 {
		line("server cpu", "%.2f s, %.2f µs per delivery (%s)", s.CPUSeconds, s.CPUMicrosPerDelivery, pids)
	} else {
		line("server cpu", "%.2f s, %.2f µs per publish (%s)", s.CPUSeconds, s.CPUMicrosPerPublish, pids)
	}
	line("server rss", "%.1f MiB before publishing, %.1f MiB after deliveries", s.RSSBeforeMiB, s.RSSAfterMiB)
	if m := s.Machine; m != nil {
		line("machine cpu", "%.2f of %d cores busy: servers %.2f, this tool %.2f, other processes %.2f",
			m.BusyCores, m.CPUs, m.ServerCores, m.ToolCores, m.OtherCores)
	}
}

// listLines prints indented example lines under the line above.
func listLines(b *strings.Builder, items []string) {
	for _, item := range items {
		fmt.Fprintf(b, "  %s\n", item)
	}
}

// round2 rounds to two decimals, as the report prints them.
func round2(x float64) float64 { return math.Round(x*100) / 100 }

// perSecond returns n per second over ns nanoseconds, or 0 for no time.
func perSecond(n int64, ns int64) float64 {
	if ns <= 0 {
		return 0
	}
	return round2(float64(n) / (float64(ns) / 1e9))
}
