package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Flag defaults: a bare run against a local eventsrv is a meaningful load
// test that finishes in seconds.
const (
	defaultListen          = "http://127.0.0.1:8080"
	defaultBroadcast       = "ws://127.0.0.1:8081/"
	defaultTokenFile       = "tokens/tokens"
	defaultSubs            = 1000
	defaultEvents          = 2000
	defaultPublishers      = 4
	defaultSize            = 100
	defaultEvent           = "bench"
	defaultDialConcurrency = 100
	defaultTimeout         = 60 * time.Second

	// sourcesAuto spreads dials over loopbackSources when the broadcast
	// host is an IPv4 loopback address; sourcesNone never spreads.
	sourcesAuto     = "auto"
	sourcesNone     = "none"
	loopbackSources = "127.0.0.1-127.0.0.9"

	// maxSources bounds -sources ranges: more addresses than this cannot
	// help (each already gives ~28k ephemeral ports) and a typo such as
	// 10.0.0.1-10.9.0.0 should fail instead of allocating millions.
	maxSources = 4096

	// JetStream baseline defaults (-jetstream): the bus in cluster/bus.go
	// allows 4096 publishes in flight per connection; the scratch stream
	// gets eventsrv's default history limits (HISTORY_SIZE, HISTORY_TTL,
	// HISTORY_MAX_BYTES, NATS_DUPLICATE_WINDOW).
	defaultJSMaxPending = 4096
	defaultJSReplicas   = 1
	defaultRounds       = 1

	// -reader: who reads the subscribers' sockets.
	readerEpoll   = "epoll"
	readerGorilla = "gorilla"
)

// usageHeader is printed by -h above the flag list.
const usageHeader = `eventsrv-bench: load-test a running eventsrv.

Opens -subs WebSocket subscribers on the broadcast server (and waits until
every init is answered OK), publishes -events events through the listen
server with -publishers concurrent clients, waits until every subscriber has
every event or -timeout passes, then reports deliveries, losses, duplicates,
order problems and latency percentiles. Exit status 0 means every subscriber
connected and received every published event exactly once, in one order.

-listen and -broadcast take several URLs (repeat the flag or separate them
with commas), for several instances of a cluster: publisher i posts to
listen URL i mod L, subscriber i connects to broadcast URL i mod B, and the
report adds a line per URL. -subs 0 only publishes, for the publish rate.

With -idle and -pid it measures instead the server's memory per idle
subscriber.

With -jetstream it publishes instead straight to NATS JetStream with
asynchronous publishing (a scratch stream, deleted afterwards), as a
baseline for eventsrv's cluster mode; with -compare too it alternates that
baseline with the eventsrv run for -rounds rounds and reports the ratio of
the publish rates.

With -versus minimal -eventsrv-bin PATH it runs the same load alternately on
a minimal gorilla/websocket relay built into this tool (started as a
process of its own) and on eventsrv, each fresh on free loopback ports for
each run, -rounds times, and reports both servers' p50, p99, deliveries/s
and CPU per delivery, per round and as medians, with the ratios
eventsrv/minimal; issue #16's target is a p99 ratio of at most 0.85 at
-subs 1000 -rate 20 -size 100:

  eventsrv-bench -versus minimal -eventsrv-bin /tmp/eventsrv -rounds 3 \
    -subs 1000 -rate 20 -events 600 -size 100

-batch N publishes N events per request, as a JSON array, to /events.

On Linux the subscribers' sockets are read by one epoll loop per core
(-reader epoll) rather than a goroutine each through gorilla/websocket
(-reader gorilla): the tool shares the cores with the server it measures,
and this costs it about a fifth less CPU per delivery. wss:// subscribers
are always read through gorilla.

Flags:
`

// config is one run's settings, parsed from the flags and checked.
type config struct {
	publishURLs     []string // the listen servers' POST /event URLs
	broadcastURLs   []string
	token           string
	insecure        bool
	subs            int
	stall           int
	events          int
	publishers      int
	size            int
	rate            float64 // events per second in total; 0 means unlimited
	event           string
	sources         []netip.Addr // local addresses to dial from; nil means the system's choice
	pids            []int
	idle            bool
	hold            time.Duration
	dialConcurrency int
	reader          string // readerEpoll or readerGorilla
	timeout         time.Duration
	jsonOut         bool

	// The JetStream baseline (-jetstream) and the comparison (-compare).
	jetstream    string // NATS server URLs, comma-separated; "" runs no baseline
	replicas     int
	jsConns      int
	jsWaiters    int
	jsMaxPending int
	jsConsumers  int
	compare      bool
	rounds       int

	// -batch: events per POST to /events; 1 posts each to /event.
	batch int

	// -versus: the reference server to run eventsrv against, alternately.
	versus      string // "" or "minimal"
	eventsrvBin string
}

// jetstreamOnly reports whether the run is the JetStream baseline alone,
// which needs no eventsrv and no token.
func (c *config) jetstreamOnly() bool { return c.jetstream != "" && !c.compare }

// rawFlags are the flags that become config fields only after checking.
type rawFlags struct {
	listen    listFlag
	broadcast listFlag
	pids      listFlag
	tokenFile string
	sources   string
}

// parseConfig parses args (without the program name). It returns
// flag.ErrHelp after printing the usage for -h.
func parseConfig(args []string, stderr io.Writer) (config, error) {
	var cfg config
	raw := rawFlags{
		listen:    listFlag{values: []string{defaultListen}},
		broadcast: listFlag{values: []string{defaultBroadcast}},
	}
	fs := newFlagSet(&cfg, &raw, stderr)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q: every setting is a flag (see -h)", fs.Args())
	}
	pids, err := parsePIDs(raw.pids.values)
	if err != nil {
		return config{}, err
	}
	cfg.pids = pids
	if err := errors.Join(cfg.check(), cfg.checkVersus(raw.listen.set || raw.broadcast.set)); err != nil {
		return config{}, err
	}
	if err := cfg.resolve(raw); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// newFlagSet declares every flag; the package comment documents the same set.
func newFlagSet(cfg *config, raw *rawFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("eventsrv-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	fs.Var(&raw.listen, "listen", "listen server base `URL`; events are POSTed to URL/event. Several (repeat the flag or\n"+
		"separate with commas): publisher i posts to URL i mod their number")
	fs.Var(&raw.broadcast, "broadcast", "broadcast server WebSocket `URL` (ws:// or wss://). Several (repeat the flag or\n"+
		"separate with commas): subscriber i connects to URL i mod their number")
	fs.StringVar(&cfg.token, "token", "", "`token` sent as \"Basic <token>\" by publishers and subscribers; overrides -token-file")
	fs.StringVar(&raw.tokenFile, "token-file", defaultTokenFile, "`file` whose first non-blank line not starting with # is the token")
	fs.BoolVar(&cfg.insecure, "insecure", false, "skip TLS certificate verification for https:// and wss://")
	fs.IntVar(&cfg.subs, "subs", defaultSubs, "number of subscribers `N`; 0 only publishes (the publish rate alone)")
	fs.IntVar(&cfg.stall, "stall", 0, "also open `K` subscribers that never read after init, and report how the server ended them")
	fs.IntVar(&cfg.events, "events", defaultEvents, "number of events `M` to publish")
	fs.IntVar(&cfg.publishers, "publishers", defaultPublishers, "`C` concurrent publishers, each with its own keep-alive HTTP client")
	fs.IntVar(&cfg.size, "size", defaultSize, "approximate size of each event's data in `bytes`")
	fs.Float64Var(&cfg.rate, "rate", 0, "total publish `rate` in events/s; 0 publishes as fast as the publishers can")
	fs.StringVar(&cfg.event, "event", defaultEvent, "event `name` to publish and subscribe to")
	fs.StringVar(&raw.sources, "sources", sourcesAuto, "local `addresses` to dial subscribers from, round-robin: a-b ranges and/or single addresses, comma-separated;\n"+
		"\"auto\" uses "+loopbackSources+" when the broadcast host is IPv4 loopback, \"none\" never spreads")
	fs.Var(&raw.pids, "pid", "the server's `pid`, to report its CPU time and RSS (reads /proc; Linux only). Several (repeat\n"+
		"the flag or separate with commas): their CPU times and RSS are added up")
	fs.BoolVar(&cfg.idle, "idle", false, "measure the server's RSS per idle subscriber instead of publishing (needs -pid)")
	fs.DurationVar(&cfg.hold, "hold", 0, "with -idle: hold the subscribers this long before measuring, so that the server's\n"+
		"periodic garbage collection (every 2 minutes in Go) and memory return have run; 150s measures\n"+
		"what the subscribers keep, 0 also counts what connecting them left behind")
	fs.StringVar(&cfg.reader, "reader", defaultReader, "who reads the subscribers: epoll (one loop per core, Linux only; wss subscribers still use gorilla) or gorilla (a goroutine per subscriber)")
	fs.IntVar(&cfg.dialConcurrency, "dial-concurrency", defaultDialConcurrency, "maximum subscriber dials and inits in flight")
	fs.DurationVar(&cfg.timeout, "timeout", defaultTimeout, "bound for each phase: connecting all subscribers, and waiting for deliveries after the last publish")
	fs.BoolVar(&cfg.jsonOut, "json", false, "print the report as JSON")
	fs.StringVar(&cfg.jetstream, "jetstream", "", "NATS server `URLs` (comma-separated): publish -events events of -size bytes straight to JetStream\n"+
		"with asynchronous publishing, on -js-connections connections, to a scratch stream (deleted afterwards),\n"+
		"as a baseline for eventsrv's cluster mode; no eventsrv is involved unless -compare")
	fs.IntVar(&cfg.replicas, "replicas", defaultJSReplicas, "with -jetstream: the scratch stream's replicas `R` (use NATS_REPLICAS's value)")
	fs.IntVar(&cfg.jsConns, "js-connections", 1, "with -jetstream: connections `C` publishing at once, each with its own window; one per eventsrv\n"+
		"instance (3 for 3) publishes as the instances do")
	fs.IntVar(&cfg.jsWaiters, "js-waiters", 0, "with -jetstream: publish from `W` goroutines spread over the connections, each waiting for its\n"+
		"ack before the next, as eventsrv's bus does for each POST; 0 publishes as fast as the window allows")
	fs.IntVar(&cfg.jsMaxPending, "js-max-pending", defaultJSMaxPending, "with -jetstream: most unacknowledged publishes per connection `P` (eventsrv's bus allows 4096)")
	fs.IntVar(&cfg.jsConsumers, "js-consumers", 0, "with -jetstream: also feed `K` ordered consumers from the scratch stream while publishing,\n"+
		"as K eventsrv instances in cluster mode each follow their stream")
	fs.BoolVar(&cfg.compare, "compare", false, "with -jetstream: run the JetStream baseline and then the eventsrv run (the other flags; -subs 0\n"+
		"for the publish rate alone), -rounds times alternately, and report the ratio of their publish rates")
	fs.IntVar(&cfg.rounds, "rounds", defaultRounds, "with -compare or -versus: rounds `R` of baseline then eventsrv")
	fs.IntVar(&cfg.batch, "batch", 1, "events `N` per request: 1 posts each to /event; more post them as a JSON array to /events\n"+
		"(answered {\"code\":\"OK\",\"ids\":[...]}); each event is still counted and timed on its own")
	fs.StringVar(&cfg.versus, "versus", "", "`server` to run eventsrv against: \"minimal\", a minimal gorilla/websocket relay built into this\n"+
		"tool (one reader and one writer goroutine per connection, queued frames coalesced into one write).\n"+
		"Starts each server fresh on free loopback ports for each run, alternately, -rounds times, with the\n"+
		"other flags' load, and reports p50, p99, deliveries/s and CPU per delivery of both, and their ratios")
	fs.StringVar(&cfg.eventsrvBin, "eventsrv-bin", "", "with -versus: the eventsrv `binary` to start (go build -o /tmp/eventsrv ./cmd/eventsrv)")
	return fs
}

// check rejects values that would make the run meaningless.
func (c *config) check() error {
	var errs []error
	if c.subs < 0 || c.subs < 1 && c.idle {
		errs = append(errs, fmt.Errorf("-subs %d: need at least 1 subscriber (0 only to publish)", c.subs))
	}
	if c.events < 1 && !c.idle {
		errs = append(errs, fmt.Errorf("-events %d: need at least 1 event", c.events))
	}
	if c.publishers < 1 {
		errs = append(errs, fmt.Errorf("-publishers %d: need at least 1 publisher", c.publishers))
	}
	if c.size < 0 {
		errs = append(errs, fmt.Errorf("-size %d: must not be negative", c.size))
	}
	if c.rate < 0 {
		errs = append(errs, fmt.Errorf("-rate %g: must not be negative", c.rate))
	}
	if c.event == "" {
		errs = append(errs, errors.New("-event: the event name must not be empty"))
	}
	if c.reader != readerGorilla && (c.reader != readerEpoll || defaultReader != readerEpoll) {
		errs = append(errs, fmt.Errorf("-reader %q: want %s or gorilla (epoll needs Linux)", c.reader, defaultReader))
	}
	if c.dialConcurrency < 1 {
		errs = append(errs, fmt.Errorf("-dial-concurrency %d: need at least 1", c.dialConcurrency))
	}
	if c.timeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout %s: must be positive", c.timeout))
	}
	if c.idle && len(c.pids) == 0 {
		errs = append(errs, errors.New("-idle needs -pid: idle mode measures the server's RSS"))
	}
	if c.batch < 1 {
		errs = append(errs, fmt.Errorf("-batch %d: need at least 1 event per request", c.batch))
	}
	errs = append(errs, c.checkJetStream()...)
	return errors.Join(errs...)
}

// checkVersus rejects flags that -versus sets itself or that do not go
// with it. listenOrBroadcast tells whether -listen or -broadcast was given.
func (c *config) checkVersus(listenOrBroadcast bool) error {
	if c.versus == "" {
		if c.eventsrvBin != "" {
			return errors.New("-eventsrv-bin needs -versus")
		}
		return nil
	}
	var errs []error
	if c.versus != versusMinimal {
		errs = append(errs, fmt.Errorf("-versus %q: the only reference server is %q", c.versus, versusMinimal))
	}
	if c.eventsrvBin == "" {
		errs = append(errs, errors.New("-versus needs -eventsrv-bin, the eventsrv binary to start"))
	}
	if listenOrBroadcast || len(c.pids) > 0 || c.token != "" {
		errs = append(errs, fmt.Errorf("%w on free ports with a token of its own: no -listen, -broadcast, -pid or -token", errVersusFlags))
	}
	if c.idle || c.jetstream != "" || c.compare {
		errs = append(errs, fmt.Errorf("%w: not with -idle, -jetstream or -compare", errVersusFlags))
	}
	return errors.Join(errs...)
}

// checkJetStream checks the baseline's flags.
func (c *config) checkJetStream() []error {
	var errs []error
	if c.compare && c.jetstream == "" {
		errs = append(errs, errors.New("-compare needs -jetstream: it compares eventsrv with a JetStream baseline"))
	}
	if c.jetstream != "" && c.idle {
		errs = append(errs, errors.New("-jetstream and -idle do not go together"))
	}
	if c.replicas < 1 || c.replicas > 5 {
		errs = append(errs, fmt.Errorf("-replicas %d: 1 to 5", c.replicas))
	}
	if c.jsConns < 1 {
		errs = append(errs, fmt.Errorf("-js-connections %d: need at least 1", c.jsConns))
	}
	if c.jsWaiters < 0 {
		errs = append(errs, fmt.Errorf("-js-waiters %d: must not be negative", c.jsWaiters))
	}
	if c.jsMaxPending < 1 {
		errs = append(errs, fmt.Errorf("-js-max-pending %d: need at least 1", c.jsMaxPending))
	}
	if c.jsConsumers < 0 {
		errs = append(errs, fmt.Errorf("-js-consumers %d: must not be negative", c.jsConsumers))
	}
	if c.rounds < 1 {
		errs = append(errs, fmt.Errorf("-rounds %d: need at least 1", c.rounds))
	}
	if c.jetstreamOnly() && c.batch > 1 {
		errs = append(errs, errors.New("-batch does not apply to -jetstream alone, which publishes each event on its own"))
	}
	if c.jetstream != "" && c.rate > 0 {
		errs = append(errs, errors.New("-rate does not apply to -jetstream, which publishes as fast as JetStream acknowledges"))
	}
	return errs
}

// resolve turns the raw flags into URLs, the token and the source addresses.
func (c *config) resolve(raw rawFlags) error {
	for _, listen := range raw.listen.values {
		publishURL, err := publishURLFor(listen, publishPath(c.batch))
		if err != nil {
			return err
		}
		c.publishURLs = append(c.publishURLs, publishURL)
	}
	var hosts []string
	for _, broadcast := range raw.broadcast.values {
		host, err := broadcastHost(broadcast)
		if err != nil {
			return err
		}
		hosts = append(hosts, host)
		c.broadcastURLs = append(c.broadcastURLs, broadcast)
	}
	var err error
	if c.sources, err = parseSources(raw.sources, sourcesHost(hosts)); err != nil {
		return err
	}
	if c.token == "" && !c.jetstreamOnly() && c.versus == "" {
		if c.token, err = readTokenFile(raw.tokenFile); err != nil {
			return err
		}
	}
	return nil
}

// publishPath is the path events are POSTed to: /event one at a time,
// /events in batches.
func publishPath(batch int) string {
	if batch > 1 {
		return "/events"
	}
	return "/event"
}

// publishURLFor returns the URL of a listen server base URL to POST to at
// path (/event or /events). A URL that already ends in /event or /events
// gets the path asked for in its place.
func publishURLFor(listen, path string) (string, error) {
	u, err := url.Parse(listen)
	if err != nil {
		return "", fmt.Errorf("-listen %q: %w", listen, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("-listen %q: want an http:// or https:// URL with a host", listen)
	}
	base := strings.TrimSuffix(u.Path, "/")
	base = strings.TrimSuffix(strings.TrimSuffix(base, "/events"), "/event")
	u.Path = base + path
	return u.String(), nil
}

// broadcastHost checks the broadcast URL and returns its host name.
func broadcastHost(broadcast string) (string, error) {
	u, err := url.Parse(broadcast)
	if err != nil {
		return "", fmt.Errorf("-broadcast %q: %w", broadcast, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" || u.Host == "" {
		return "", fmt.Errorf("-broadcast %q: want a ws:// or wss:// URL with a host", broadcast)
	}
	return u.Hostname(), nil
}

// sourcesHost is the broadcast host that decides whether "auto" spreads
// dials: the first host when every one is IPv4 loopback, else the first that
// is not.
func sourcesHost(hosts []string) string {
	for _, h := range hosts {
		if !isIPv4Loopback(h) {
			return h
		}
	}
	return hosts[0]
}

// listFlag is a flag that may be repeated and whose values may be
// comma-separated; the first use replaces the default.
type listFlag struct {
	values []string
	set    bool
}

func (l *listFlag) String() string { return strings.Join(l.values, ",") }

func (l *listFlag) Set(s string) error {
	if !l.set {
		l.values, l.set = nil, true
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return fmt.Errorf("empty item in %q", s)
		}
		l.values = append(l.values, item)
	}
	return nil
}

// parsePIDs parses the -pid values.
func parsePIDs(values []string) ([]int, error) {
	var pids []int
	for _, v := range values {
		pid, err := strconv.Atoi(v)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("-pid %q: not a process id", v)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// readTokenFile returns the first line of path that is neither blank nor a
// # comment, trimmed.
func readTokenFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no -token given and the token file cannot be read: %w", err)
	}
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return line, nil
		}
	}
	return "", fmt.Errorf("token file %s has no token: every line is blank or a # comment", path)
}

// parseSources expands a -sources value. Spreading is automatic on IPv4
// loopback, where 127.0.0.0/8 is all local and each source address has its
// own ephemeral port range; elsewhere the addresses must be configured on
// this machine, so only an explicit list is used.
func parseSources(spec, host string) ([]netip.Addr, error) {
	switch strings.TrimSpace(spec) {
	case "", sourcesNone:
		return nil, nil
	case sourcesAuto:
		if !isIPv4Loopback(host) {
			return nil, nil
		}
		spec = loopbackSources
	}
	var addrs []netip.Addr
	for item := range strings.SplitSeq(spec, ",") {
		more, err := expandSourceItem(strings.TrimSpace(item))
		if err != nil {
			return nil, fmt.Errorf("-sources %q: %w", spec, err)
		}
		addrs = append(addrs, more...)
		if len(addrs) > maxSources {
			return nil, fmt.Errorf("-sources %q: more than %d addresses", spec, maxSources)
		}
	}
	return addrs, nil
}

// expandSourceItem expands "a" or the inclusive range "a-b".
func expandSourceItem(item string) ([]netip.Addr, error) {
	firstText, lastText, isRange := strings.Cut(item, "-")
	first, err := netip.ParseAddr(firstText)
	if err != nil {
		return nil, err
	}
	if !isRange {
		return []netip.Addr{first}, nil
	}
	last, err := netip.ParseAddr(lastText)
	if err != nil {
		return nil, err
	}
	if first.BitLen() != last.BitLen() || last.Less(first) {
		return nil, fmt.Errorf("range %s: the last address must not precede the first and both must be the same family", item)
	}
	var addrs []netip.Addr
	for a := first; a.Compare(last) <= 0 && a.IsValid(); a = a.Next() {
		if len(addrs) == maxSources {
			return nil, fmt.Errorf("range %s: more than %d addresses", item, maxSources)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// isIPv4Loopback reports whether host names IPv4 loopback. "localhost" counts:
// a dialer bound to an IPv4 source only tries the name's IPv4 addresses.
func isIPv4Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Is4() && a.IsLoopback()
}
