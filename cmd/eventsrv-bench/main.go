// Command eventsrv-bench is the project's load tool. Pointed at a running
// eventsrv, it opens many WebSocket subscribers on the broadcast server,
// publishes events through the listen server, and checks that every
// subscriber received every acknowledged event exactly once and in the same
// order as every other subscriber, reporting throughput and delivery latency
// percentiles. Given the server's pid it also reports the server's CPU time
// and memory.
//
// It is meant to be honest: every frame is counted, a frame that is not a
// well-formed delivery is counted as malformed, and the exit status is 0
// only when every subscriber connected and stayed connected, every event
// was published, and nothing was lost, duplicated, unexpected, reordered or
// malformed.
//
// A run has four phases: open all subscribers and wait for every init
// answer; publish; wait until every subscriber has every acknowledged event
// or -timeout passes; close every connection with a close frame and report.
//
// Usage:
//
//	eventsrv-bench [flags]
//
// Flags:
//
//	-listen URL          listen server base URL; events are POSTed to URL/event
//	                     (default http://127.0.0.1:8080). Several, for the
//	                     instances of a cluster: repeat the flag or separate
//	                     them with commas; publisher i posts to URL i mod L
//	-broadcast URL       broadcast server WebSocket URL (default
//	                     ws://127.0.0.1:8081/). Several: repeat or separate
//	                     with commas; subscriber i connects to URL i mod B
//	-token TOKEN         token sent as "Basic TOKEN"; overrides -token-file
//	-token-file FILE     the token is the file's first line that is neither
//	                     blank nor a # comment (default tokens/tokens)
//	-insecure            skip TLS certificate verification for https and wss
//	-subs N              subscribers (default 1000); 0 only publishes, for
//	                     the publish rate alone (posts/s answered OK)
//	-events M            events to publish (default 2000)
//	-publishers C        concurrent publishers, each with its own keep-alive
//	                     HTTP client (default 4)
//	-size B              approximate bytes of each event's data (default 100)
//	-rate R              total events/s; 0, the default, publishes as fast as
//	                     the publishers can. Latency is measured from each
//	                     event's actual send time either way.
//	-event NAME          event name published and subscribed to (default bench)
//	-sources LIST        local addresses to dial subscribers from, round-robin:
//	                     comma-separated addresses and a-b ranges, such as
//	                     127.0.0.1-127.0.0.9. "auto" (the default) uses that
//	                     range when the broadcast host is IPv4 loopback and no
//	                     spreading otherwise; "none" never spreads. One source
//	                     address gives about 28k ephemeral ports.
//	-pid P               the server's pid: report its CPU seconds (utime+stime
//	                     from /proc/P/stat, before publishing and after the
//	                     deliveries), CPU µs per delivery, and RSS (VmRSS).
//	                     Several (repeat or separate with commas), such as
//	                     every eventsrv and nats-server of a cluster: their
//	                     CPU times and RSS are added up
//	-idle                with -pid: open the subscribers, wait for the server's
//	                     RSS to settle, report RSS per subscriber, and exit
//	                     without publishing
//	-dial-concurrency D  dials and inits in flight at once (default 100)
//	-timeout T           bound for connecting all subscribers, and for waiting
//	                     for deliveries after the last publish (default 60s).
//	                     A publish that times out stops the publishing.
//	-json                print the report as JSON
//	-jetstream URLS      publish straight to NATS JetStream instead (see below)
//	-replicas R          the baseline's stream replicas (default 1)
//	-js-connections C    the baseline's publishing connections (default 1)
//	-js-max-pending P    the baseline's unacknowledged publishes per
//	                     connection (default 4096, as eventsrv's bus)
//	-js-waiters W        the baseline publishes from W goroutines that each
//	                     wait for their ack, as eventsrv's POSTs do
//	-js-consumers K      the baseline also feeds K ordered consumers
//	-compare             alternate the baseline with the eventsrv run
//	-rounds R            rounds of -compare or -versus (default 1)
//	-batch N             events per request (default 1, to /event); more are
//	                     POSTed as a JSON array to /events, answered
//	                     {"code":"OK","ids":[...]}, each event still counted
//	                     and timed on its own
//	-versus minimal      run eventsrv against the built-in minimal server
//	                     (see below)
//	-eventsrv-bin PATH   with -versus: the eventsrv binary to start
//
// # JetStream baseline
//
// With -jetstream nats://host:port[,...] the tool measures what eventsrv's
// cluster mode is built on: it creates a scratch stream (BENCH_<pid>_<ns>,
// the limits of eventsrv's stream with the default HISTORY_ settings, -replicas
// replicas, file storage), publishes -events events of the same payload with
// nats.go's jetstream PublishAsync on -js-connections connections, waits for
// every acknowledgement, reports acknowledgements per second and the
// acknowledgement latency, and deletes the stream. With -js-consumers K it
// also feeds K ordered consumers, as K instances follow their stream, and
// counts what they got.
//
// With -compare as well, each of -rounds rounds runs that baseline and then
// the eventsrv run the other flags describe (usually -subs 0 and enough
// -publishers to saturate), and the report gives the ratio of eventsrv's
// publish rate to the baseline's, per round and the median.
//
// # Against a minimal server
//
// With -versus minimal -eventsrv-bin PATH the tool starts, for each run, a
// fresh server on free loopback ports with a temporary tokens file
// (TOKENS_FILE, BIND_ADDRESS=127.0.0.1, LISTEN_PORT, BROADCAST_PORT,
// METRICS_ADDRESS, LOG_LEVEL=warn; the rest of its environment is this
// tool's, so other eventsrv settings can be set on it), waits for both
// servers' /readyz, runs the load the other flags describe with -pid set to
// it, stops it with SIGTERM and waits for it to exit. It alternates the
// minimal server and eventsrv, -rounds times, and reports every run's full
// report, then each server's p50, p99, deliveries/s and CPU per delivery per
// round and as medians over the rounds in which both runs passed, and the
// ratios eventsrv/minimal (per round, and the median of those). The p99
// ratio is issue #16's headline: its target is at most 0.85 at -subs 1000
// -rate 20 -size 100. A run that lost anything, or a server that did not
// start or stop cleanly, fails the invocation and leaves its round out of
// the medians.
//
// The minimal server (minimal.go) is this binary started again with
// EVENTSRV_BENCH_SERVE=minimal: a gorilla/websocket relay with one reader
// and one writer goroutine per connection, whose writer writes every frame
// already queued into a buffered connection and flushes them in one write
// system call. It speaks eventsrv's contract as far as this tool uses it:
// init, POST /event, POST /events and the event frames.
//
// # Payload
//
// Each event's data is {"p":<publisher>,"s":<sequence>,"t":<send time, Unix
// ns>,"x":"<padding>"}. The server must relay it byte for byte.
//
// # Report
//
// expected is connected subscribers × events acknowledged with 200 OK.
// received counts every well-formed delivery, duplicates included. lost
// counts acknowledged events a subscriber never received; unexpected,
// events a subscriber received that were never acknowledged; duplicates,
// repeated deliveries; order violations, deliveries that came after a later
// event of the same publisher (each publisher posts sequentially); order
// mismatches, subscribers whose arrival order differs from the most common
// one, among subscribers that received exactly the acknowledged set. With
// several URLs a line per URL gives the same counts for the publishers or
// subscribers it had; they add up to the totals.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Thresholds for warnings before a run.
const (
	// fdHeadroom is files the tool needs besides subscriber sockets.
	fdHeadroom = 50
	// portsPerSource is a safe number of connections from one source
	// address to one server address (Linux's default ephemeral range
	// holds about 28k).
	portsPerSource = 20000
	// slabWarnBytes is the latency storage size worth warning about.
	slabWarnBytes = 1 << 30
)

func main() {
	if mode := os.Getenv(serveEnv); mode != "" {
		os.Exit(serve(mode, os.Getenv, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "eventsrv-bench:", err)
		os.Exit(1)
	}
}

// run is the whole program: it parses args, runs the benchmark, prints the
// report on stdout (warnings go to stderr), and returns an error when the
// run failed or found a problem.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := prepare(cfg, stderr); err != nil {
		return err
	}
	var out interface {
		write(w io.Writer, asJSON bool) error
		failures() []string
	}
	switch {
	case cfg.versus != "":
		out = runVersus(ctx, cfg, stderr)
	case cfg.compare:
		out = runCompare(ctx, cfg, stderr)
	case cfg.jetstream != "":
		out = runJetStream(ctx, cfg)
	case cfg.idle:
		rep, err := runIdle(ctx, cfg)
		if err != nil {
			return err
		}
		out = rep
	default:
		out = runLoad(ctx, cfg)
	}
	if err := out.write(stdout, cfg.jsonOut); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if failures := out.failures(); len(failures) > 0 {
		return fmt.Errorf("FAIL: %s", strings.Join(failures, "; "))
	}
	return nil
}

// serve runs the server that mode (serveEnv's value) names, and returns the
// exit status.
func serve(mode string, getenv func(string) string, stderr io.Writer) int {
	if mode != versusMinimal {
		fmt.Fprintf(stderr, "eventsrv-bench: %s=%q: the only server is %q\n", serveEnv, mode, versusMinimal)
		return 2
	}
	return serveMinimal(getenv, stderr)
}

// prepare raises the open-file limit, checks that -pid can be read, and
// warns about settings this machine may not sustain.
func prepare(cfg config, stderr io.Writer) error {
	if len(cfg.pids) > 0 {
		if _, err := sampleServers(cfg.pids); err != nil {
			return fmt.Errorf("-pid: %w", err)
		}
	}
	if cfg.jetstreamOnly() {
		return nil // no subscribers, no HTTP
	}
	limit, err := raiseFileLimit()
	if err != nil {
		fmt.Fprintln(stderr, "warning:", err)
	} else if need := uint64(cfg.subs + cfg.publishers + fdHeadroom); need > limit {
		fmt.Fprintf(stderr, "warning: %d subscribers need about %d open files but the limit is %d; dials beyond it will fail\n", cfg.subs, need, limit)
	}
	if perSource := cfg.subs / max(len(cfg.sources), 1) / len(cfg.broadcastURLs); perSource > portsPerSource {
		fmt.Fprintf(stderr, "warning: %d connections per source address may exhaust ephemeral ports; spread them with -sources\n", perSource)
	}
	if slab := int64(cfg.subs) * int64(cfg.events) * 8; !cfg.idle && slab > slabWarnBytes {
		fmt.Fprintf(stderr, "warning: up to %.1f GiB for latency samples (subs × events × 8 bytes)\n", float64(slab)/(1<<30))
	}
	return nil
}

// runLoad opens the subscribers, publishes, waits for the deliveries,
// closes everything and reports.
func runLoad(ctx context.Context, cfg config) *report {
	slab := make([]int64, cfg.subs*cfg.events)
	f := openFleet(ctx, cfg, slab)
	stalled, stallErr := openStalled(ctx, cfg, cfg.stall)
	before, beforeErr := sampleIfPID(cfg.pids)
	pub := publishAll(ctx, cfg)
	finished := f.awaitDeliveries(ctx, pub.succeeded, cfg.timeout)
	after, afterErr := sampleIfPID(cfg.pids)
	f.close(cfg.dialConcurrency)
	var stalledRep *stalledReport
	if cfg.stall > 0 && stallErr == nil {
		stalledRep = stalledOutcome(stalled, 5*time.Second)
	}

	// Per URL first: summarize gathers the latencies in place, over the
	// subscribers' windows.
	broadcastTargets := newBroadcastTargets(cfg, f, pub)
	stats := summarize(f.tallies(), pub.acked, pub.succeeded, slab)
	slices.Sort(stats.latencies)
	rep := newReport(modeLoad, cfg, f)
	rep.Load = newLoadReport(cfg, pub, stats)
	rep.Load.TimedOut = !finished && ctx.Err() == nil
	rep.Load.Listen = newListenTargets(cfg, pub)
	rep.Load.Broadcast = broadcastTargets
	if len(cfg.pids) > 0 {
		rep.Server = newServerReport(cfg.pids, before, after, errors.Join(beforeErr, afterErr), stats.received, int64(pub.succeeded))
	}
	rep.Stalled = stalledRep
	rep.Interrupted = ctx.Err() != nil
	rep.judge()
	if stallErr != nil {
		rep.Failures = append(rep.Failures, stallErr.Error())
		rep.Pass = false
	}
	return rep
}

// runIdle opens the subscribers, waits for the server's RSS to settle,
// closes everything and reports the RSS each subscriber costs.
func runIdle(ctx context.Context, cfg config) (*report, error) {
	before, err := readRSSSum(cfg.pids)
	if err != nil {
		return nil, err
	}
	f := openFleet(ctx, cfg, nil)
	select {
	case <-time.After(cfg.hold):
	case <-ctx.Done():
	}
	after, stable, err := waitStableRSS(ctx, cfg.pids, cfg.timeout)
	f.close(cfg.dialConcurrency)
	if err != nil {
		return nil, err
	}
	rep := newReport(modeIdle, cfg, f)
	rep.Idle = newIdleReport(before, after, stable, len(f.subs))
	rep.Interrupted = ctx.Err() != nil
	rep.judge()
	return rep, nil
}

// sampleIfPID samples the servers when pids were given.
func sampleIfPID(pids []int) (serverSample, error) {
	if len(pids) == 0 {
		return serverSample{}, nil
	}
	return sampleServers(pids)
}

// newReport starts a report with the subscriber counts. Call it only after
// the fleet is closed.
func newReport(mode string, cfg config, f *fleet) *report {
	rep := &report{
		Mode:         mode,
		Subscribers:  cfg.subs,
		Connected:    len(f.subs),
		DialFailures: f.failures.count,
		DialErrors:   f.failures.first,
	}
	rep.Disconnected, rep.DisconnectErrors = f.disconnects()
	return rep
}

// newLoadReport fills in the publish and delivery numbers.
func newLoadReport(cfg config, pub publishResult, st deliveryStats) *loadReport {
	l := &loadReport{
		Events:           cfg.events,
		Publishers:       cfg.publishers,
		SizeBytes:        cfg.size,
		Rate:             cfg.rate,
		Published:        pub.succeeded,
		PublishFailed:    pub.failed,
		NotAttempted:     cfg.events - pub.attempted,
		PublishFailures:  pub.failures,
		PublishSeconds:   round3(float64(pub.lastDone-pub.firstSend) / 1e9),
		PublishPerSecond: perSecond(int64(pub.succeeded), pub.lastDone-pub.firstSend),
		PublishLatency:   newLatencyReport(pub.latencies),
		Expected:         st.expected,
		Received:         st.received,
		Lost:             st.lost,
		Duplicates:       st.duplicates,
		Unexpected:       st.unexpected,
		OrderViolations:  st.orderViolations,
		OrderMismatches:  st.orderMismatches,
		Malformed:        st.malformed,
		MalformedSamples: st.malformedSample,
		TimeoutSeconds:   cfg.timeout.Seconds(),
		Latency:          newLatencyReport(st.latencies),
	}
	if pub.abort != nil {
		l.PublishAborted = pub.abort.Error()
	}
	if st.lastRecv > 0 && pub.firstSend > 0 {
		window := st.lastRecv - pub.firstSend
		l.DeliverySeconds = round3(float64(window) / 1e9)
		l.DeliveriesPerSecond = perSecond(st.received, window)
	}
	return l
}

// newServerReport computes the servers' CPU and memory over the run.
func newServerReport(pids []int, before, after serverSample, err error, deliveries, publishes int64) *serverReport {
	s := &serverReport{PID: pids[0]}
	if len(pids) > 1 {
		s.PIDs = pids
	}
	if err != nil {
		s.Error = err.Error()
		return s
	}
	cpu := float64(after.cpuTicks-before.cpuTicks) / clockTicksPerSecond
	s.CPUSeconds = round2(cpu)
	if deliveries > 0 {
		s.CPUMicrosPerDelivery = round2(cpu * 1e6 / float64(deliveries))
	}
	if publishes > 0 {
		s.CPUMicrosPerPublish = round2(cpu * 1e6 / float64(publishes))
	}
	s.RSSBeforeMiB = round2(float64(before.rssBytes) / mib)
	s.RSSAfterMiB = round2(float64(after.rssBytes) / mib)
	s.Machine = newMachineReport(before, after)
	return s
}

// newMachineReport computes what the machine did over the window; nil when
// its counters were not read.
func newMachineReport(before, after serverSample) *machineReport {
	window := float64(after.at-before.at) / 1e9
	if before.machineBusy == 0 || after.machineBusy == 0 || window <= 0 {
		return nil
	}
	busy := float64(after.machineBusy-before.machineBusy) / clockTicksPerSecond / window
	servers := float64(after.cpuTicks-before.cpuTicks) / clockTicksPerSecond / window
	tool := float64(after.selfNanos-before.selfNanos) / 1e9 / window
	return &machineReport{
		CPUs:        runtime.NumCPU(),
		BusyCores:   round2(busy),
		ServerCores: round2(servers),
		ToolCores:   round2(tool),
		OtherCores:  round2(max(busy-servers-tool, 0)),
	}
}

// newIdleReport computes the RSS each connected subscriber added.
func newIdleReport(before, after int64, stable bool, connected int) *idleReport {
	i := &idleReport{RSSBeforeBytes: before, RSSAfterBytes: after, Stable: stable}
	if connected > 0 {
		per := float64(after-before) / float64(connected)
		i.BytesPerSubscriber = math.Round(per)
		i.KiBPerSubscriber = round2(per / 1024)
	}
	return i
}

// round3 rounds to three decimals, for seconds.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
