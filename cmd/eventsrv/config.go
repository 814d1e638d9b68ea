package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"

	"eventsrv/internal/cors"
)

// config is every setting. Each is an environment variable; the README's
// configuration table lists the same names and defaults.
type config struct {
	BindAddress   string `env:"BIND_ADDRESS"`
	ListenPort    int    `env:"LISTEN_PORT" envDefault:"8080"`
	BroadcastPort int    `env:"BROADCAST_PORT" envDefault:"8081"`

	MetricsAddress     string `env:"METRICS_ADDRESS" envDefault:"127.0.0.1:8082"`
	CORSAllowedOrigins string `env:"CORS_ALLOWED_ORIGINS"`

	ListenSocket     string `env:"LISTEN_SOCKET"`
	ListenSocketMode string `env:"LISTEN_SOCKET_MODE" envDefault:"0660"`

	TokensFile           string        `env:"TOKENS_FILE" envDefault:"tokens/tokens"`
	JWTSecret            string        `env:"JWT_SECRET" secret:"true"`
	JWTPublicKeyFile     string        `env:"JWT_PUBLIC_KEY_FILE"`
	TokensReloadInterval time.Duration `env:"TOKENS_RELOAD_INTERVAL" envDefault:"2s"`

	HTTPSEnable bool   `env:"HTTPS_ENABLE" envDefault:"false"`
	TLSCertFile string `env:"TLS_CERT_FILE" envDefault:"certs/cert.crt"`
	TLSKeyFile  string `env:"TLS_KEY_FILE" envDefault:"certs/cert.key"`

	MaxBodyBytes     int64 `env:"MAX_BODY_BYTES" envDefault:"1048576"`
	MaxMessageBytes  int64 `env:"MAX_MESSAGE_BYTES" envDefault:"65536"`
	MaxSubscriptions int   `env:"MAX_SUBSCRIPTIONS" envDefault:"1000"`
	QueueMaxBytes    int   `env:"QUEUE_MAX_BYTES" envDefault:"4194304"`

	HistorySize     int           `env:"HISTORY_SIZE" envDefault:"1000"`
	HistoryTTL      time.Duration `env:"HISTORY_TTL" envDefault:"5m"`
	HistoryMaxBytes int           `env:"HISTORY_MAX_BYTES" envDefault:"67108864"`

	PingInterval      time.Duration `env:"PING_INTERVAL" envDefault:"25s"`
	WriteTimeout      time.Duration `env:"WRITE_TIMEOUT" envDefault:"10s"`
	InitTimeout       time.Duration `env:"INIT_TIMEOUT" envDefault:"30s"`
	ReadHeaderTimeout time.Duration `env:"READ_HEADER_TIMEOUT" envDefault:"5s"`
	ReadTimeout       time.Duration `env:"READ_TIMEOUT" envDefault:"30s"`
	IdleTimeout       time.Duration `env:"IDLE_TIMEOUT" envDefault:"120s"`
	ShutdownTimeout   time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s"`
	ShutdownDelay     time.Duration `env:"SHUTDOWN_DELAY" envDefault:"0s"`

	LogFormat string     `env:"LOG_FORMAT" envDefault:"text"`
	LogLevel  slog.Level `env:"LOG_LEVEL" envDefault:"info"`
}

// loadConfig reads the settings through getenv. An empty variable counts as
// unset, so that `FOO= eventsrv` means the default, as in most tools.
func loadConfig(getenv func(string) string) (config, error) {
	var cfg config
	params, err := env.GetFieldParams(&cfg)
	if err != nil {
		return cfg, err
	}
	vars := make(map[string]string)
	for _, p := range params {
		if v := getenv(p.Key); v != "" {
			vars[p.Key] = v
		}
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: vars}); err != nil {
		return cfg, namedEnvError(err)
	}
	return cfg, cfg.validate()
}

// namedEnvError rewrites the library's parse errors, which name the Go
// field, to name the environment variable a user actually set.
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
	check(c.ListenPort == 0 || c.ListenPort != c.BroadcastPort, "BROADCAST_PORT", "must differ from LISTEN_PORT")
	check(c.BindAddress == "" || net.ParseIP(strings.Trim(c.BindAddress, "[]")) != nil || !strings.ContainsAny(c.BindAddress, ":/ "),
		"BIND_ADDRESS", "%q is not an IP address or host name", c.BindAddress)
	check(c.TokensFile != "", "TOKENS_FILE", "must not be empty")
	check(c.JWTSecret == "" || c.JWTPublicKeyFile == "", "JWT_SECRET", "set JWT_SECRET or JWT_PUBLIC_KEY_FILE, not both")
	check(c.JWTSecret == "" || len(c.JWTSecret) >= 32, "JWT_SECRET", "must be at least 32 bytes")
	check(c.TokensReloadInterval > 0, "TOKENS_RELOAD_INTERVAL", "must be positive")
	check(c.MaxBodyBytes > 0, "MAX_BODY_BYTES", "must be positive")
	check(c.MaxMessageBytes >= 256, "MAX_MESSAGE_BYTES", "must be at least 256")
	check(c.MaxSubscriptions > 0, "MAX_SUBSCRIPTIONS", "must be positive")
	// A queue must hold at least one frame of the largest event, or every
	// large event would cut its subscribers off.
	check(int64(c.QueueMaxBytes) >= c.MaxBodyBytes+64, "QUEUE_MAX_BYTES", "must be larger than MAX_BODY_BYTES (%d)", c.MaxBodyBytes)
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"PING_INTERVAL", c.PingInterval}, {"WRITE_TIMEOUT", c.WriteTimeout}, {"INIT_TIMEOUT", c.InitTimeout},
		{"READ_HEADER_TIMEOUT", c.ReadHeaderTimeout}, {"READ_TIMEOUT", c.ReadTimeout},
		{"IDLE_TIMEOUT", c.IdleTimeout}, {"SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
	} {
		check(d.d > 0, d.name, "must be positive")
	}
	if c.MetricsAddress != "off" {
		_, port, err := net.SplitHostPort(c.MetricsAddress)
		check(err == nil && port != "", "METRICS_ADDRESS", "%q is not host:port (or off)", c.MetricsAddress)
	}
	_, err := cors.Parse(c.CORSAllowedOrigins)
	check(err == nil, "CORS_ALLOWED_ORIGINS", "%v", err)
	check(c.ShutdownDelay >= 0, "SHUTDOWN_DELAY", "must not be negative")
	check(c.HistorySize >= 0, "HISTORY_SIZE", "must not be negative (0 keeps no history)")
	check(c.HistoryTTL >= 0, "HISTORY_TTL", "must not be negative (0: no age limit)")
	check(c.HistoryMaxBytes >= 0, "HISTORY_MAX_BYTES", "must not be negative (0: no byte limit)")
	mode, err2 := strconv.ParseUint(c.ListenSocketMode, 8, 32)
	check(err2 == nil && mode <= 0o777, "LISTEN_SOCKET_MODE", "%q is not an octal file mode like 0660", c.ListenSocketMode)
	check(c.LogFormat == "text" || c.LogFormat == "json", "LOG_FORMAT", "%q is neither text nor json", c.LogFormat)
	return errors.Join(errs...)
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
// not read.
func (c config) logValue() []any {
	v := reflect.ValueOf(c)
	t := v.Type()
	out := make([]any, 0, 2*t.NumField())
	for i := range t.NumField() {
		value := fmt.Sprint(v.Field(i).Interface())
		if t.Field(i).Tag.Get("secret") == "true" && value != "" {
			value = "(set)"
		}
		out = append(out, t.Field(i).Tag.Get("env"), value)
	}
	return out
}
