package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"

	"eventsrv/internal/cors"
)

// config is every setting. Each is an environment variable; its help tag
// is its line in eventsrv help, which lists every field with its default,
// so the help cannot drift from the code. Durations may carry min (refused
// below) and warn (logged as a warning below) tags: validate and
// warnConfig read them, and the help prints the minimum. Byte sizes are
// tagged bytes, so that they take units (64KiB, 1MB); paths are tagged
// path, so that the start-up log shows them absolute. The README's
// configuration table lists the same names and defaults.
type config struct {
	BindAddress   string `env:"BIND_ADDRESS" help:"address both servers bind to, e.g. 127.0.0.1; unset: all interfaces"`
	ListenPort    int    `env:"LISTEN_PORT" envDefault:"8080" help:"port of the listen server: POST /event, /admin/ (0: any free port, logged)"`
	BroadcastPort int    `env:"BROADCAST_PORT" envDefault:"8081" help:"port of the broadcast server: WebSocket and Server-Sent Events subscribers"`

	MetricsAddress     string `env:"METRICS_ADDRESS" envDefault:"127.0.0.1:8082" help:"host:port where GET /metrics is served; off: not served"`
	CORSAllowedOrigins string `env:"CORS_ALLOWED_ORIGINS" help:"browser origins that may POST /event and subscribe, comma-separated (https://app.example.com), or *; unset: no CORS headers, so pages from other origins cannot read POST answers or use EventSource, while WebSockets are accepted from any origin"`

	// Work queues (package queue).
	QueueMaxTasks int `env:"QUEUE_MAX_TASKS" envDefault:"10000" help:"most unfinished tasks one work queue holds; past it POST /queue/{name} answers 429 QUEUE_FULL"`
	// Each queue is 13 metric series and a row in /admin/queues and the
	// console: 1,000 keeps a scrape near 13,000 series and the list
	// readable, and is far more names than one team's queues; with
	// QUEUE_MAX_TASKS it bounds the tasks in memory.
	QueueMaxQueues int `env:"QUEUE_MAX_QUEUES" envDefault:"1000" help:"most work queues holding tasks at once; past it POST /queue/{name} to another queue answers 429 TOO_MANY_QUEUES. A queue whose tasks are all finished, with no worker, is forgotten a minute later"`
	// QueueTasks' operators had 40 s; under a second no person answers.
	OfferTimeout time.Duration `env:"OFFER_TIMEOUT" envDefault:"40s" min:"10ms" warn:"1s" help:"how long a worker has to assign or reject an offered task before it goes to the next worker"`
	TaskTimeout  time.Duration `env:"TASK_TIMEOUT" envDefault:"5m" min:"10ms" warn:"1s" help:"how long after its assignment a task added with ?complete=1 has to be marked done before it is offered again"`

	// A job may be quiet for a while; under a second no job reports.
	TaskIdleTimeout time.Duration `env:"TASK_IDLE_TIMEOUT" envDefault:"10m" min:"10ms" warn:"1s" help:"longest silence between two lines of a task stream (POST /task) before the task fails"`

	Console             bool   `env:"CONSOLE" envDefault:"true" help:"serve the web console at /console/ on the listen server (off: 404)"`
	ConsoleBroadcastURL string `env:"CONSOLE_BROADCAST_URL" help:"the broadcast server's WebSocket URL as browsers reach it, for the console behind a reverse proxy (wss://events.example.com/); unset: the console's host on BROADCAST_PORT"`

	ListenSocket     string `env:"LISTEN_SOCKET" path:"true" help:"also serve POST /event on this UNIX socket, without tokens; unset: no socket"`
	ListenSocketMode string `env:"LISTEN_SOCKET_MODE" envDefault:"0660" help:"the socket file's mode (octal): who may publish through it"`

	TokensFile       string `env:"TOKENS_FILE" envDefault:"tokens/tokens" path:"true" help:"tokens file, one token a line (eventsrv token makes one); created with one random token if missing"`
	JWTSecret        string `env:"JWT_SECRET" secret:"true" help:"accept Bearer JWTs signed HS256 with this secret, 32 bytes or more (eventsrv secret makes one; eventsrv jwt needs the same); never logged"`
	JWTPublicKeyFile string `env:"JWT_PUBLIC_KEY_FILE" path:"true" help:"accept Bearer JWTs signed RS256 or ES256/384/512 by this PEM public key's private key (not with JWT_SECRET)"`
	JWTAudience      string `env:"JWT_AUDIENCE" help:"when set, a JWT's aud must contain this (for a signing key shared with other services)"`
	JWTIssuer        string `env:"JWT_ISSUER" help:"when set, a JWT's iss must be exactly this"`
	// A reload is a stat of the file; 10ms is already thousands a minute.
	TokensReloadInterval time.Duration `env:"TOKENS_RELOAD_INTERVAL" envDefault:"2s" min:"10ms" help:"how often the tokens file is checked for changes (SIGHUP rereads it at once)"`

	HTTPSEnable bool   `env:"HTTPS_ENABLE" envDefault:"false" help:"serve the listen and broadcast ports over TLS 1.2+ (true/false, yes/no, on/off, 1/0)"`
	TLSCertFile string `env:"TLS_CERT_FILE" envDefault:"certs/cert.crt" path:"true" help:"PEM certificate (chain) for HTTPS_ENABLE"`
	TLSKeyFile  string `env:"TLS_KEY_FILE" envDefault:"certs/cert.key" path:"true" help:"PEM private key for HTTPS_ENABLE"`

	MaxBodyBytes      int64 `env:"MAX_BODY_BYTES" envDefault:"1048576" bytes:"true" help:"largest POST /event body"`
	MaxBatchBytes     int64 `env:"MAX_BATCH_BYTES" envDefault:"0" bytes:"true" help:"largest POST /events body (a batch of up to 1000 events); 0: the larger of 8 MiB and MAX_BODY_BYTES"`
	MaxMessageBytes   int64 `env:"MAX_MESSAGE_BYTES" envDefault:"65536" bytes:"true" help:"largest message from a subscriber; at least 256"`
	MaxSubscriptions  int   `env:"MAX_SUBSCRIPTIONS" envDefault:"1000" help:"most event names one connection may subscribe to"`
	MaxEventNameBytes int   `env:"MAX_EVENT_NAME_BYTES" envDefault:"255" help:"longest event name, in bytes of UTF-8, to publish or subscribe to"`
	QueueMaxBytes     int   `env:"QUEUE_MAX_BYTES" envDefault:"4194304" bytes:"true" help:"most bytes waiting for one subscriber before it is cut off as a slow consumer; more than MAX_BODY_BYTES"`

	HistorySize int `env:"HISTORY_SIZE" envDefault:"1000" help:"events kept per event name for subscribers that resume; 0 keeps none (events still get IDs)"`
	// A positive TTL under a second outlives no reconnect; 0 means no limit.
	HistoryTTL      time.Duration `env:"HISTORY_TTL" envDefault:"5m" min:"0s" warn:"1s" help:"events older than this are not kept for resume; 0: no age limit"`
	HistoryMaxBytes int           `env:"HISTORY_MAX_BYTES" envDefault:"67108864" bytes:"true" help:"most bytes kept for resume in all, oldest dropped first; 0: no limit"`
	// A replay is queued past QUEUE_MAX_BYTES and, for SSE, encoded for
	// each stream: these bound what one resume may cost.
	ResumeMaxEvents int `env:"RESUME_MAX_EVENTS" envDefault:"1000" help:"most events one resume replays; one that missed more gets the newest, with recovered false"`
	ResumeMaxBytes  int `env:"RESUME_MAX_BYTES" envDefault:"4194304" bytes:"true" help:"most bytes one resume replays; one that missed more gets the newest, with recovered false"`

	// Below 10ms pings, one frame per subscriber each, are most of the
	// work, and a pong has 1.5 intervals to come back: under a second,
	// clients on a slow network are cut off as ping timeouts.
	PingInterval time.Duration `env:"PING_INTERVAL" envDefault:"25s" min:"10ms" warn:"1s" help:"how often subscribers are pinged; one silent for 1.5 intervals is closed"`
	// Under a second a subscriber on a slow network is cut off mid-frame.
	WriteTimeout time.Duration `env:"WRITE_TIMEOUT" envDefault:"10s" min:"10ms" warn:"1s" help:"longest a single write to a subscriber may take"`
	// Off only to rule io_uring out when a kernel misbehaves; where the
	// kernel or a seccomp profile refuses it, the server falls back itself.
	IOURing bool `env:"IO_URING" envDefault:"true" help:"send each burst's writes through io_uring (Linux) where the kernel allows it; false: one send(2) per write"`
	// Under a second a client across the world cannot send its init.
	InitTimeout time.Duration `env:"INIT_TIMEOUT" envDefault:"30s" min:"10ms" warn:"1s" help:"time a new WebSocket has to send a successful init"`
	// The HTTP timeouts: under a second, clients on slow networks are
	// refused; under 10ms no real request gets through.
	ReadHeaderTimeout time.Duration `env:"READ_HEADER_TIMEOUT" envDefault:"5s" min:"10ms" warn:"1s" help:"time to read a request's headers (every server)"`
	ReadTimeout       time.Duration `env:"READ_TIMEOUT" envDefault:"30s" min:"10ms" warn:"1s" help:"time to read a whole request and write its answer; subscribers' connections are exempt"`
	// A short idle timeout only costs publishers new connections.
	IdleTimeout time.Duration `env:"IDLE_TIMEOUT" envDefault:"120s" min:"10ms" help:"how long an idle keep-alive connection is kept"`
	// Under a second, in-flight POSTs are cut at every stop.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" min:"10ms" warn:"1s" help:"time for a graceful stop, after SHUTDOWN_DELAY, before connections are cut"`
	ShutdownDelay   time.Duration `env:"SHUTDOWN_DELAY" envDefault:"0s" min:"0s" help:"time between /readyz turning 503 and the servers stopping, for load balancers to notice"`

	// JetStream's own minimum is 100ms.
	IdempotencyWindow time.Duration `env:"IDEMPOTENCY_WINDOW" envDefault:"2m" min:"100ms" help:"how long an Idempotency-Key is remembered: a POST repeated with it within this window is answered with the first one's ID and not published again (one instance: in memory, up to 100000 keys; cluster mode: by JetStream, on every instance)"`

	// Cluster mode (see the cluster package).
	NATSURL         string `env:"NATS_URL" urls:"true" help:"NATS servers, comma-separated (nats://n1:4222,nats://n2:4222): cluster mode, where instances share one JetStream stream, its IDs and history; unset: one instance, history in memory"`
	NATSEmbed       string `env:"NATS_EMBED" path:"true" help:"run a JetStream server inside the process with its store in this directory, so that history and IDs survive restarts (one instance; not with NATS_URL)"`
	NATSCredsFile   string `env:"NATS_CREDS_FILE" path:"true" help:"NATS credentials file (user JWT and NKey seed) for NATS_URL"`
	NATSTLSCAFile   string `env:"NATS_TLS_CA_FILE" path:"true" help:"PEM CA certificates of the NATS servers' certificates: TLS 1.2+ to NATS"`
	NATSTLSCertFile string `env:"NATS_TLS_CERT_FILE" path:"true" help:"PEM client certificate for NATS servers that verify clients (with NATS_TLS_KEY_FILE)"`
	NATSTLSKeyFile  string `env:"NATS_TLS_KEY_FILE" path:"true" help:"PEM private key of NATS_TLS_CERT_FILE"`
	NATSStream      string `env:"NATS_STREAM" envDefault:"EVENTSRV" help:"the JetStream stream's name, also its subjects' prefix; created if missing, its limits set from the HISTORY_ settings"`
	NATSReplicas    int    `env:"NATS_REPLICAS" envDefault:"1" help:"the stream's replicas (1-5): 3 on a 3-node NATS cluster survives the loss of one node"`
	// Under 10ms no JetStream cluster acknowledges in time.
	NATSPublishTimeout time.Duration `env:"NATS_PUBLISH_TIMEOUT" envDefault:"2s" min:"10ms" warn:"100ms" help:"longest a POST waits for JetStream to acknowledge its event before answering 503 UNAVAILABLE"`

	LogFormat string     `env:"LOG_FORMAT" envDefault:"text" help:"text or json"`
	LogLevel  slog.Level `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
}

// setting is one field of config as the environment sees it.
type setting struct {
	name     string // the variable
	def      string // its default, as written in envDefault
	hasDef   bool
	help     string
	field    reflect.StructField
	min, low time.Duration // min and warn tags of a duration; 0 if none
	hasMin   bool
}

// settings lists config's fields in order, read from their tags.
func settings() []setting {
	t := reflect.TypeFor[config]()
	out := make([]setting, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		s := setting{name: f.Tag.Get("env"), help: f.Tag.Get("help"), field: f}
		s.def, s.hasDef = f.Tag.Lookup("envDefault")
		if v, ok := f.Tag.Lookup("min"); ok {
			s.min, s.hasMin = mustDuration(v), true
		}
		if v, ok := f.Tag.Lookup("warn"); ok {
			s.low = mustDuration(v)
		}
		out = append(out, s)
	}
	return out
}

// mustDuration reads a duration in a struct tag, which the tests check.
func mustDuration(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(fmt.Sprintf("config: bad duration %q in a struct tag", s))
	}
	return d
}

// loadConfig reads the settings through getenv. An empty variable counts as
// unset, so that `FOO= eventsrv` means the default, as in most tools.
// Each value is checked, and brought to the form caarlos0/env parses
// (sizes to bytes, booleans to true or false), before env parses it: every
// error then names the variable, the value and what would be valid.
func loadConfig(getenv func(string) string) (config, error) {
	var cfg config
	vars := make(map[string]string)
	var errs []error
	for _, s := range settings() {
		v := getenv(s.name)
		if v == "" {
			continue
		}
		norm, err := s.normalize(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not %w", s.name, v, err))
			continue
		}
		vars[s.name] = norm
	}
	if len(errs) > 0 {
		return cfg, errors.Join(errs...)
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: vars}); err != nil {
		return cfg, namedEnvError(err)
	}
	return cfg, cfg.validate()
}

// normalize checks a value of s and returns it in the form env parses.
// Its error completes "NAME: "value" is not ...".
func (s setting) normalize(v string) (string, error) {
	switch {
	case s.field.Tag.Get("bytes") == "true":
		n, err := parseByteSize(v)
		if err != nil {
			return "", err
		}
		return strconv.FormatInt(n, 10), nil
	case s.field.Type == reflect.TypeFor[bool]():
		b, err := parseBool(v)
		if err != nil {
			return "", err
		}
		return strconv.FormatBool(b), nil
	case s.field.Type == reflect.TypeFor[time.Duration]():
		if _, err := parseDuration(v); err != nil {
			return "", err
		}
	case s.field.Type == reflect.TypeFor[slog.Level]():
		var l slog.Level
		if l.UnmarshalText([]byte(v)) != nil {
			return "", errors.New("a log level; use debug, info, warn or error")
		}
	case s.field.Type.Kind() == reflect.Int:
		if _, err := strconv.Atoi(v); err != nil {
			return "", errors.New("a whole number")
		}
	}
	return v, nil
}

// parseDuration is time.ParseDuration with an error that completes
// "NAME: "value" is not ..." and says what a duration looks like.
func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err == nil {
		return d, nil
	}
	if _, numErr := strconv.ParseFloat(v, 64); numErr == nil {
		return 0, fmt.Errorf("a duration: the unit is missing (%ss? %sms?)", v, v)
	}
	return 0, errors.New("a duration; use a number with a unit: 500ms, 25s, 2m, 1h")
}

// parseBool reads a boolean setting: true/false, 1/0, yes/no, on/off, in
// any case.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	}
	return false, errors.New("a boolean; use true or false (or 1/0, yes/no, on/off)")
}

// errByteSize completes "NAME: "value" is not ..." for sizes.
var errByteSize = errors.New("a size; use a whole number of bytes, or one with a unit: KB, MB, GB (×1000) or KiB, MiB, GiB (×1024), e.g. 1MB or 64KiB")

// parseByteSize reads a byte size: a whole number of bytes with an
// optional unit, spaces allowed between ("64 KiB").
func parseByteSize(v string) (int64, error) {
	// SI (×1000) and binary (×1024) units, matched in any case; the
	// longer suffixes first, since "b" ends them all.
	units := []struct {
		suffix string
		n      int64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9},
		{"b", 1},
	}
	lower := strings.ToLower(strings.TrimSpace(v))
	if lower == "" {
		return 0, errByteSize
	}
	num, mult := lower, int64(1)
	for _, u := range units {
		if strings.HasSuffix(lower, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(lower, u.suffix)), u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || num[0] == '+' || num[0] == '-' {
		if last := lower[len(lower)-1]; last == 'k' || last == 'm' || last == 'g' {
			u := strings.ToUpper(lower[len(lower)-1:])
			return 0, fmt.Errorf("%w (%s alone is ambiguous: %sB is ×1000, %siB ×1024)", errByteSize, u, u, u)
		}
		return 0, errByteSize
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%w; this one is too large", errByteSize)
	}
	return n * mult, nil
}

// namedEnvError rewrites the library's parse errors, which name the Go
// field, to name the environment variable a user actually set. normalize
// leaves the library little to refuse; this is for what slips through.
func namedEnvError(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	var msgs []string
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			f, _ := reflect.TypeOf(config{}).FieldByName(pe.Name)
			msgs = append(msgs, fmt.Sprintf("%s: invalid value: %v", f.Tag.Get("env"), pe.Err))
			continue
		}
		msgs = append(msgs, e.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}

func (c config) validate() error {
	var errs []error
	check := func(ok bool, name, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
		}
	}
	check(c.ListenPort >= 0 && c.ListenPort <= 65535, "LISTEN_PORT", "%d is not a port (0-65535)", c.ListenPort)
	check(c.BroadcastPort >= 0 && c.BroadcastPort <= 65535, "BROADCAST_PORT", "%d is not a port (0-65535)", c.BroadcastPort)
	check(c.ListenPort == 0 || c.ListenPort != c.BroadcastPort, "BROADCAST_PORT", "%d must differ from LISTEN_PORT", c.BroadcastPort)
	check(c.BindAddress == "" || net.ParseIP(strings.Trim(c.BindAddress, "[]")) != nil || !strings.ContainsAny(c.BindAddress, ":/ "),
		"BIND_ADDRESS", "%q is not an IP address or host name", c.BindAddress)
	check(c.TokensFile != "", "TOKENS_FILE", "must not be empty")
	check(c.JWTSecret == "" || c.JWTPublicKeyFile == "", "JWT_SECRET", "set JWT_SECRET or JWT_PUBLIC_KEY_FILE, not both")
	// The secret is never repeated, not even in an error.
	check(c.JWTSecret == "" || len(c.JWTSecret) >= 32, "JWT_SECRET", "the value is %d bytes; it must be at least 32 (eventsrv secret makes one)", len(c.JWTSecret))
	check(c.MaxBodyBytes > 0, "MAX_BODY_BYTES", "%d is not a positive size", c.MaxBodyBytes)
	check(c.MaxBatchBytes == 0 || c.MaxBatchBytes >= c.MaxBodyBytes, "MAX_BATCH_BYTES",
		"%d is smaller than MAX_BODY_BYTES (%d): a batch must hold at least one event of the largest size; 0 picks the larger of 8 MiB and MAX_BODY_BYTES", c.MaxBatchBytes, c.MaxBodyBytes)
	check(c.MaxMessageBytes >= 256, "MAX_MESSAGE_BYTES", "%d is under the minimum, 256", c.MaxMessageBytes)
	check(c.MaxSubscriptions > 0, "MAX_SUBSCRIPTIONS", "%d is not positive", c.MaxSubscriptions)
	check(c.QueueMaxTasks > 0, "QUEUE_MAX_TASKS", "%d is not positive", c.QueueMaxTasks)
	check(c.QueueMaxQueues > 0, "QUEUE_MAX_QUEUES", "%d is not positive", c.QueueMaxQueues)
	check(c.MaxEventNameBytes > 0, "MAX_EVENT_NAME_BYTES", "%d is not positive", c.MaxEventNameBytes)
	check(c.ResumeMaxEvents >= 0, "RESUME_MAX_EVENTS", "%d is negative (0: no bound)", c.ResumeMaxEvents)
	check(c.ResumeMaxBytes >= 0, "RESUME_MAX_BYTES", "%d is negative (0: no bound)", c.ResumeMaxBytes)
	// A queue must hold at least one frame of the largest event, or every
	// large event would cut its subscribers off.
	check(int64(c.QueueMaxBytes) >= c.MaxBodyBytes+64, "QUEUE_MAX_BYTES", "%d must be larger than MAX_BODY_BYTES (%d) by at least 64", c.QueueMaxBytes, c.MaxBodyBytes)
	v := reflect.ValueOf(c)
	for i, s := range settings() {
		if !s.hasMin {
			continue
		}
		d := time.Duration(v.Field(i).Int())
		switch {
		case s.min == 0:
			check(d >= 0, s.name, "%s must not be negative", d)
		default:
			check(d >= s.min, s.name, "%s is under the minimum, %s", d, s.min)
		}
	}
	if c.MetricsAddress != "off" {
		_, port, err := net.SplitHostPort(c.MetricsAddress)
		check(err == nil && port != "", "METRICS_ADDRESS", "%q is not host:port (or off)", c.MetricsAddress)
	}
	_, err := cors.Parse(c.CORSAllowedOrigins)
	check(err == nil, "CORS_ALLOWED_ORIGINS", "%v", err)
	check(c.HistorySize >= 0, "HISTORY_SIZE", "%d is negative (0 keeps no history)", c.HistorySize)
	check(c.HistoryMaxBytes >= 0, "HISTORY_MAX_BYTES", "%d is negative (0: no byte limit)", c.HistoryMaxBytes)
	mode, err2 := strconv.ParseUint(c.ListenSocketMode, 8, 32)
	check(err2 == nil && mode <= 0o777, "LISTEN_SOCKET_MODE", "%q is not an octal file mode like 0660", c.ListenSocketMode)
	check(c.LogFormat == "text" || c.LogFormat == "json", "LOG_FORMAT", "%q is neither text nor json", c.LogFormat)
	check(c.NATSURL == "" || c.NATSEmbed == "", "NATS_EMBED", "set NATS_URL (a NATS cluster) or NATS_EMBED (one instance with its own), not both")
	check(c.NATSStream != "" && !strings.ContainsAny(c.NATSStream, ".*> \t\r\n/\\"), "NATS_STREAM",
		"%q is not a stream name: no dots, spaces, *, >, / or \\", c.NATSStream)
	check(c.NATSReplicas >= 1 && c.NATSReplicas <= 5, "NATS_REPLICAS", "%d is not 1 to 5", c.NATSReplicas)
	if c.ConsoleBroadcastURL != "" {
		u, err := url.Parse(c.ConsoleBroadcastURL)
		check(err == nil && (u.Scheme == "ws" || u.Scheme == "wss") && u.Host != "", "CONSOLE_BROADCAST_URL", "%q is not a ws:// or wss:// URL", c.ConsoleBroadcastURL)
	}
	check((c.NATSTLSCertFile == "") == (c.NATSTLSKeyFile == ""), "NATS_TLS_CERT_FILE", "set it with NATS_TLS_KEY_FILE, or neither")
	// An event name is one subject token, up to 3 bytes per byte (see
	// cluster/subject.go); NATS refuses lines over 4096 bytes.
	check(!c.clustered() || c.MaxEventNameBytes <= 1024, "MAX_EVENT_NAME_BYTES", "%d is over 1024, the most cluster mode (NATS_URL, NATS_EMBED) allows", c.MaxEventNameBytes)
	return errors.Join(errs...)
}

// clustered reports whether events go through NATS JetStream.
func (c config) clustered() bool { return c.NATSURL != "" || c.NATSEmbed != "" }

// warnings are the settings that are valid but unwise: durations under
// their warn tag (a 25ms meant as 25s, often), and variables that look
// like misspelt settings. environ is os.Environ's form.
func (c config) warnings(environ []string) []string {
	var out []string
	v := reflect.ValueOf(c)
	for i, s := range settings() {
		if s.low == 0 {
			continue
		}
		if d := time.Duration(v.Field(i).Int()); d > 0 && d < s.low {
			out = append(out, fmt.Sprintf("%s=%s is unusually short (under %s; the default is %s): %s", s.name, d, s.low, s.def, s.help))
		}
	}
	if c.ListenSocket != "" && c.socketMode()&0o002 != 0 {
		// The socket takes no token: its mode is the only access control.
		out = append(out, fmt.Sprintf("LISTEN_SOCKET_MODE=%s lets every local user publish through %s without a token; 0660 limits it to the owner and group",
			c.ListenSocketMode, c.ListenSocket))
	}
	return append(out, misspelt(environ)...)
}

// warnConfig logs c's warnings, each once, at start.
func warnConfig(log *slog.Logger, c config, environ []string) {
	for _, w := range c.warnings(environ) {
		log.Warn(w)
	}
}

// configError is the error for settings that do not load. A misspelt
// variable is often why (PING_INTERVAL left at its default while
// PING_INTERVALL holds the value), so the hints go with it: the logger
// that would show them as warnings does not exist yet.
func configError(err error, environ []string) error {
	if hints := misspelt(environ); len(hints) > 0 {
		err = errors.Join(err, errors.New(strings.Join(hints, "\n")))
	}
	return fmt.Errorf("configuration: %w", err)
}

// misspelt names the variables in environ that look like settings but are
// none: "PING_INTERVALL is not a setting (ignored); did you mean
// PING_INTERVAL?". A variable looks like a setting when it is upper case
// (letters, digits, underscores; PATH and HOME are, but no setting is
// near them) and is one edit away from a setting's name, or two when the
// name is 8 characters or longer, where two edits are still a typo. A
// lower-case spelling of a setting and an EVENTSRV_ prefix count too.
// Variables that other programs set near our names are left out.
func misspelt(environ []string) []string {
	var names []string
	known := make(map[string]bool)
	for _, s := range settings() {
		names = append(names, s.name)
		known[s.name] = true
	}
	var out []string
	seen := make(map[string]bool)
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if known[k] || seen[k] {
			continue
		}
		seen[k] = true
		switch up := strings.ToUpper(k); {
		case known[up]:
			out = append(out, fmt.Sprintf("%s is not a setting (ignored); names are upper case: did you mean %s?", k, up))
		case strings.HasPrefix(k, "EVENTSRV_") && known[strings.TrimPrefix(k, "EVENTSRV_")]:
			out = append(out, fmt.Sprintf("%s is not a setting (ignored); settings have no prefix: did you mean %s?", k, strings.TrimPrefix(k, "EVENTSRV_")))
		case looksLikeSetting(k) && !systemVariable(k):
			if near := closest(k, names); near != "" {
				out = append(out, fmt.Sprintf("%s is not a setting (ignored); did you mean %s?", k, near))
			}
		}
	}
	sort.Strings(out)
	return out
}

// systemVariable reports the variables that other programs set, which
// come within a typo of a setting's name: SSL_CERT_FILE (read by Go's
// crypto/x509, like OpenSSL) is two edits from TLS_CERT_FILE.
func systemVariable(k string) bool {
	switch k {
	case "SSL_CERT_FILE", "SSL_CERT_DIR":
		return true
	}
	for _, prefix := range []string{"LC_", "XDG_", "SSH_", "GIT_", "DBUS_", "SUDO_", "KUBERNETES_", "DOCKER_"} {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// looksLikeSetting: upper-case letters, digits and underscores, as every
// setting is; a missing underscore (LISTENPORT) is one of the typos.
func looksLikeSetting(k string) bool {
	if k == "" || k[0] == '_' {
		return false
	}
	for _, r := range k {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

// closest is the candidate nearest to s within the edit distance a typo
// explains (see misspelt), or "" if none is. Ties go to the earlier
// candidate.
func closest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		limit := 2
		if len(c) < 8 {
			limit = 1
		}
		if d := editDistance(s, c); d <= limit && d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of two neighbours each
// count one (PING_INTERVLA is one from PING_INTERVAL).
func editDistance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// socketMode is LISTEN_SOCKET_MODE, which validate has checked.
func (c config) socketMode() os.FileMode {
	mode, _ := strconv.ParseUint(c.ListenSocketMode, 8, 32)
	return os.FileMode(mode)
}

// addr joins BIND_ADDRESS and a port.
func (c config) addr(port int) string {
	return net.JoinHostPort(strings.Trim(c.BindAddress, "[]"), strconv.Itoa(port))
}

// logValue lists the effective settings for the start-up log line. Fields
// tagged secret show only whether they are set; the tokens file is named,
// not read. Paths are made absolute: a relative TOKENS_FILE is relative
// to the directory the server started in, which the log should not leave
// to guessing.
func (c config) logValue() []any {
	v := reflect.ValueOf(c)
	t := v.Type()
	out := make([]any, 0, 2*t.NumField())
	for i := range t.NumField() {
		value := fmt.Sprint(v.Field(i).Interface())
		switch {
		case t.Field(i).Tag.Get("secret") == "true" && value != "":
			value = "(set)"
		case t.Field(i).Tag.Get("urls") == "true":
			value = redactURLs(value)
		case t.Field(i).Tag.Get("path") == "true" && value != "":
			if abs, err := filepath.Abs(value); err == nil {
				value = abs
			}
		}
		out = append(out, t.Field(i).Tag.Get("env"), value)
	}
	return out
}

// redactURLs hides the passwords and tokens in a comma-separated list of
// URLs (nats://user:password@host), for the log.
func redactURLs(list string) string {
	if list == "" {
		return ""
	}
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		switch {
		case err != nil:
			parts[i] = "(unparsable URL)"
		case u.User != nil:
			u.User = url.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
