package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
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
)

// usageHeader is printed by -h above the flag list.
const usageHeader = `eventsrv-bench: load-test a running eventsrv.

Opens -subs WebSocket subscribers on the broadcast server (and waits until
every init is answered OK), publishes -events events through the listen
server with -publishers concurrent clients, waits until every subscriber has
every event or -timeout passes, then reports deliveries, losses, duplicates,
order problems and latency percentiles. Exit status 0 means every subscriber
connected and received every published event exactly once, in one order.

With -idle and -pid it measures instead the server's memory per idle
subscriber.

Flags:
`

// config is one run's settings, parsed from the flags and checked.
type config struct {
	publishURL      string // the listen server's POST /event URL
	broadcastURL    string
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
	pid             int
	idle            bool
	hold            time.Duration
	dialConcurrency int
	timeout         time.Duration
	jsonOut         bool
}

// rawFlags are the flags that become config fields only after checking.
type rawFlags struct {
	listen    string
	tokenFile string
	sources   string
}

// parseConfig parses args (without the program name). It returns
// flag.ErrHelp after printing the usage for -h.
func parseConfig(args []string, stderr io.Writer) (config, error) {
	var cfg config
	var raw rawFlags
	fs := newFlagSet(&cfg, &raw, stderr)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q: every setting is a flag (see -h)", fs.Args())
	}
	if err := cfg.check(); err != nil {
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
	fs.StringVar(&raw.listen, "listen", defaultListen, "listen server base `URL`; events are POSTed to URL/event")
	fs.StringVar(&cfg.broadcastURL, "broadcast", defaultBroadcast, "broadcast server WebSocket `URL` (ws:// or wss://)")
	fs.StringVar(&cfg.token, "token", "", "`token` sent as \"Basic <token>\" by publishers and subscribers; overrides -token-file")
	fs.StringVar(&raw.tokenFile, "token-file", defaultTokenFile, "`file` whose first non-blank line not starting with # is the token")
	fs.BoolVar(&cfg.insecure, "insecure", false, "skip TLS certificate verification for https:// and wss://")
	fs.IntVar(&cfg.subs, "subs", defaultSubs, "number of subscribers `N`")
	fs.IntVar(&cfg.stall, "stall", 0, "also open `K` subscribers that never read after init, and report how the server ended them")
	fs.IntVar(&cfg.events, "events", defaultEvents, "number of events `M` to publish")
	fs.IntVar(&cfg.publishers, "publishers", defaultPublishers, "`C` concurrent publishers, each with its own keep-alive HTTP client")
	fs.IntVar(&cfg.size, "size", defaultSize, "approximate size of each event's data in `bytes`")
	fs.Float64Var(&cfg.rate, "rate", 0, "total publish `rate` in events/s; 0 publishes as fast as the publishers can")
	fs.StringVar(&cfg.event, "event", defaultEvent, "event `name` to publish and subscribe to")
	fs.StringVar(&raw.sources, "sources", sourcesAuto, "local `addresses` to dial subscribers from, round-robin: a-b ranges and/or single addresses, comma-separated;\n"+
		"\"auto\" uses "+loopbackSources+" when the broadcast host is IPv4 loopback, \"none\" never spreads")
	fs.IntVar(&cfg.pid, "pid", 0, "the server's `pid`, to report its CPU time and RSS (reads /proc; Linux only)")
	fs.BoolVar(&cfg.idle, "idle", false, "measure the server's RSS per idle subscriber instead of publishing (needs -pid)")
	fs.DurationVar(&cfg.hold, "hold", 0, "with -idle: hold the subscribers this long before measuring, so that the server's\n"+
		"periodic garbage collection (every 2 minutes in Go) and memory return have run; 150s measures\n"+
		"what the subscribers keep, 0 also counts what connecting them left behind")
	fs.IntVar(&cfg.dialConcurrency, "dial-concurrency", defaultDialConcurrency, "maximum subscriber dials and inits in flight")
	fs.DurationVar(&cfg.timeout, "timeout", defaultTimeout, "bound for each phase: connecting all subscribers, and waiting for deliveries after the last publish")
	fs.BoolVar(&cfg.jsonOut, "json", false, "print the report as JSON")
	return fs
}

// check rejects values that would make the run meaningless.
func (c *config) check() error {
	var errs []error
	if c.subs < 1 {
		errs = append(errs, fmt.Errorf("-subs %d: need at least 1 subscriber", c.subs))
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
	if c.dialConcurrency < 1 {
		errs = append(errs, fmt.Errorf("-dial-concurrency %d: need at least 1", c.dialConcurrency))
	}
	if c.timeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout %s: must be positive", c.timeout))
	}
	if c.idle && c.pid <= 0 {
		errs = append(errs, errors.New("-idle needs -pid: idle mode measures the server's RSS"))
	}
	return errors.Join(errs...)
}

// resolve turns the raw flags into URLs, the token and the source addresses.
func (c *config) resolve(raw rawFlags) error {
	publishURL, err := publishURLFor(raw.listen)
	if err != nil {
		return err
	}
	c.publishURL = publishURL
	host, err := broadcastHost(c.broadcastURL)
	if err != nil {
		return err
	}
	if c.sources, err = parseSources(raw.sources, host); err != nil {
		return err
	}
	if c.token == "" {
		if c.token, err = readTokenFile(raw.tokenFile); err != nil {
			return err
		}
	}
	return nil
}

// publishURLFor returns the POST /event URL of a listen server base URL. A
// URL that already ends in /event is taken as it is.
func publishURLFor(listen string) (string, error) {
	u, err := url.Parse(listen)
	if err != nil {
		return "", fmt.Errorf("-listen %q: %w", listen, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("-listen %q: want an http:// or https:// URL with a host", listen)
	}
	if !strings.HasSuffix(u.Path, "/event") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/event"
	}
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
