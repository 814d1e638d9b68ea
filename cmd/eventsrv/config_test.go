package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConfigTags checks what the help and the checks read from config's
// tags: every field has a name and a help text, bounds sit on durations
// only, and every default loads.
func TestConfigTags(t *testing.T) {
	names := map[string]bool{}
	for _, s := range settings() {
		assert.NotEmpty(t, s.name, s.field.Name)
		assert.False(t, names[s.name], "%s twice", s.name)
		names[s.name] = true
		assert.NotEmpty(t, s.help, "%s has no help tag", s.name)
		assert.Equal(t, strings.ToUpper(s.name), s.name)
		_, hasMin := s.field.Tag.Lookup("min")
		_, hasWarn := s.field.Tag.Lookup("warn")
		if hasMin || hasWarn {
			assert.Equal(t, reflect.TypeFor[time.Duration](), s.field.Type, "%s: min and warn are for durations", s.name)
		}
		if s.low > 0 {
			assert.Greater(t, s.low, s.min, s.name)
		}
		if s.field.Type == reflect.TypeFor[time.Duration]() {
			assert.True(t, hasMin, "%s: a duration needs a min tag", s.name)
		}
		if s.field.Tag.Get("bytes") == "true" {
			assert.Contains(t, []reflect.Kind{reflect.Int, reflect.Int64}, s.field.Type.Kind(), s.name)
		}
	}
	cfg, err := loadConfig(mapEnv(nil))
	require.NoError(t, err)
	assert.Empty(t, cfg.warnings(nil), "the defaults warn")
	// Each default, set explicitly, loads to the same configuration.
	defaults := map[string]string{}
	for _, s := range settings() {
		defaults[s.name] = s.def
	}
	explicit, err := loadConfig(mapEnv(defaults))
	require.NoError(t, err)
	assert.Equal(t, cfg, explicit)
}

func TestConfigBooleans(t *testing.T) {
	for value, want := range map[string]bool{
		"true": true, "TRUE": true, "True": true, "1": true, "yes": true, "Yes": true, "on": true, "ON": true,
		"false": false, "FALSE": false, "0": false, "no": false, "NO": false, "off": false, "Off": false,
	} {
		t.Run(value, func(t *testing.T) {
			cfg, err := loadConfig(mapEnv(map[string]string{"HTTPS_ENABLE": value}))
			require.NoError(t, err)
			assert.Equal(t, want, cfg.HTTPSEnable)
		})
	}
	for _, value := range []string{"maybe", "2", "y", "enabled", "truee"} {
		t.Run(value, func(t *testing.T) {
			_, err := loadConfig(mapEnv(map[string]string{"HTTPS_ENABLE": value}))
			require.Error(t, err)
			assert.Equal(t, `HTTPS_ENABLE: "`+value+`" is not a boolean; use true or false (or 1/0, yes/no, on/off)`, err.Error())
		})
	}
}

func TestConfigByteSizes(t *testing.T) {
	good := map[string]int64{
		"0": 0, "1024": 1024, "512B": 512, "512 b": 512,
		"1KB": 1000, "1MB": 1_000_000, "2GB": 2_000_000_000,
		"64KiB": 64 << 10, "1MiB": 1 << 20, "1GiB": 1 << 30,
		"1mb": 1_000_000, "64kib": 64 << 10, "64 KiB": 64 << 10, " 3MiB ": 3 << 20,
	}
	for value, want := range good {
		t.Run(value, func(t *testing.T) {
			n, err := parseByteSize(value)
			require.NoError(t, err)
			assert.Equal(t, want, n)
		})
	}
	plain := "use a whole number of bytes, or one with a unit: KB, MB, GB (×1000) or KiB, MiB, GiB (×1024), e.g. 1MB or 64KiB"
	bad := map[string]string{
		"1M":                   plain + " (M alone is ambiguous: MB is ×1000, MiB ×1024)",
		"64k":                  plain + " (K alone is ambiguous: KB is ×1000, KiB ×1024)",
		"2G":                   plain + " (G alone is ambiguous: GB is ×1000, GiB ×1024)",
		"1.5MB":                plain,
		"-1":                   plain,
		"+1":                   plain,
		"KB":                   plain,
		"lots":                 plain,
		"1TB":                  plain,
		"9999999999GiB":        plain + "; this one is too large",
		"99999999999999999999": plain,
	}
	for value, want := range bad {
		t.Run(value, func(t *testing.T) {
			_, err := parseByteSize(value)
			require.Error(t, err)
			assert.Equal(t, "a size; "+want, err.Error())
		})
	}
	// Every size setting takes units, and keeps meaning bytes.
	cfg, err := loadConfig(mapEnv(map[string]string{
		"MAX_BODY_BYTES": "1MB", "MAX_MESSAGE_BYTES": "64KiB", "QUEUE_MAX_BYTES": "4MiB", "HISTORY_MAX_BYTES": "1GB",
	}))
	require.NoError(t, err)
	assert.Equal(t, int64(1_000_000), cfg.MaxBodyBytes)
	assert.Equal(t, int64(64<<10), cfg.MaxMessageBytes)
	assert.Equal(t, 4<<20, cfg.QueueMaxBytes)
	assert.Equal(t, 1_000_000_000, cfg.HistoryMaxBytes)
	_, err = loadConfig(mapEnv(map[string]string{"QUEUE_MAX_BYTES": "4M"}))
	require.Error(t, err)
	assert.Equal(t, `QUEUE_MAX_BYTES: "4M" is not a size; `+bad["1M"], err.Error())
}

// TestConfigParseErrors: every error names the variable, the value and
// what is valid, in words, never strconv's.
func TestConfigParseErrors(t *testing.T) {
	cases := []struct{ name, value, want string }{
		{"LISTEN_PORT", "eighty", `LISTEN_PORT: "eighty" is not a whole number`},
		{"LISTEN_PORT", "70000", `LISTEN_PORT: 70000 is not a port (0-65535)`},
		{"MAX_SUBSCRIPTIONS", "1e3", `MAX_SUBSCRIPTIONS: "1e3" is not a whole number`},
		{"MAX_SUBSCRIPTIONS", "0", `MAX_SUBSCRIPTIONS: 0 is not positive`},
		{"HISTORY_SIZE", "-1", `HISTORY_SIZE: -1 is negative (0 keeps no history)`},
		{"PING_INTERVAL", "often", `PING_INTERVAL: "often" is not a duration; use a number with a unit: 500ms, 25s, 2m, 1h`},
		{"PING_INTERVAL", "25", `PING_INTERVAL: "25" is not a duration: the unit is missing (25s? 25ms?)`},
		{"HISTORY_TTL", "1.5", `HISTORY_TTL: "1.5" is not a duration: the unit is missing (1.5s? 1.5ms?)`},
		{"LOG_LEVEL", "loud", `LOG_LEVEL: "loud" is not a log level; use debug, info, warn or error`},
		{"LOG_FORMAT", "xml", `LOG_FORMAT: "xml" is neither text nor json`},
		{"MAX_BODY_BYTES", "0", `MAX_BODY_BYTES: 0 is not a positive size`},
		{"MAX_MESSAGE_BYTES", "100", `MAX_MESSAGE_BYTES: 100 is under the minimum, 256`},
		{"QUEUE_MAX_BYTES", "1000", `QUEUE_MAX_BYTES: 1000 must be larger than MAX_BODY_BYTES (1048576) by at least 64`},
		{"MAX_BATCH_BYTES", "1000", `MAX_BATCH_BYTES: 1000 is smaller than MAX_BODY_BYTES (1048576): a batch must hold at least one event of the largest size; 0 picks the larger of 8 MiB and MAX_BODY_BYTES`},
		{"MAX_BATCH_BYTES", "-1", `MAX_BATCH_BYTES: "-1" is not a size; use a whole number of bytes, or one with a unit: KB, MB, GB (×1000) or KiB, MiB, GiB (×1024), e.g. 1MB or 64KiB`},
		{"JWT_SECRET", "short", `JWT_SECRET: the value is 5 bytes; it must be at least 32 (eventsrv secret makes one)`},
	}
	for _, c := range cases {
		t.Run(c.name+"="+c.value, func(t *testing.T) {
			_, err := loadConfig(mapEnv(map[string]string{c.name: c.value}))
			require.Error(t, err)
			assert.Equal(t, c.want, err.Error())
			assert.NotContains(t, err.Error(), "strconv")
			assert.NotContains(t, err.Error(), "invalid syntax")
		})
	}
	// Several mistakes are reported together, one a line.
	_, err := loadConfig(mapEnv(map[string]string{"LISTEN_PORT": "x", "HTTPS_ENABLE": "x", "LOG_LEVEL": "x"}))
	require.Error(t, err)
	assert.Len(t, strings.Split(err.Error(), "\n"), 3, err.Error())
}

func TestConfigDurationBounds(t *testing.T) {
	cases := []struct {
		name, value string
		want        string // "" when the value loads
	}{
		{"PING_INTERVAL", "10ms", ""},
		{"PING_INTERVAL", "9ms", "PING_INTERVAL: 9ms is under the minimum, 10ms"},
		{"PING_INTERVAL", "1ms", "PING_INTERVAL: 1ms is under the minimum, 10ms"},
		{"PING_INTERVAL", "0s", "PING_INTERVAL: 0s is under the minimum, 10ms"},
		{"WRITE_TIMEOUT", "-1s", "WRITE_TIMEOUT: -1s is under the minimum, 10ms"},
		{"INIT_TIMEOUT", "5ms", "INIT_TIMEOUT: 5ms is under the minimum, 10ms"},
		{"READ_HEADER_TIMEOUT", "1us", "READ_HEADER_TIMEOUT: 1µs is under the minimum, 10ms"},
		{"READ_TIMEOUT", "10ms", ""},
		{"IDLE_TIMEOUT", "1ns", "IDLE_TIMEOUT: 1ns is under the minimum, 10ms"},
		{"SHUTDOWN_TIMEOUT", "-1s", "SHUTDOWN_TIMEOUT: -1s is under the minimum, 10ms"},
		{"TOKENS_RELOAD_INTERVAL", "20ms", ""},
		{"TOKENS_RELOAD_INTERVAL", "1ms", "TOKENS_RELOAD_INTERVAL: 1ms is under the minimum, 10ms"},
		{"SHUTDOWN_DELAY", "0s", ""},
		{"SHUTDOWN_DELAY", "-1s", "SHUTDOWN_DELAY: -1s must not be negative"},
		{"HISTORY_TTL", "0", ""},
		{"HISTORY_TTL", "50ms", ""},
		{"HISTORY_TTL", "-1m", "HISTORY_TTL: -1m0s must not be negative"},
	}
	for _, c := range cases {
		t.Run(c.name+"="+c.value, func(t *testing.T) {
			_, err := loadConfig(mapEnv(map[string]string{c.name: c.value}))
			if c.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, c.want, err.Error())
		})
	}
}

// TestConfigWarnings: legal but unusually short durations load, with a
// warning that says what the setting does.
func TestConfigWarnings(t *testing.T) {
	cases := map[string]string{
		"PING_INTERVAL=50ms":    "PING_INTERVAL=50ms is unusually short (under 1s; the default is 25s): how often subscribers are pinged; one silent for 1.5 intervals is closed",
		"WRITE_TIMEOUT=100ms":   "WRITE_TIMEOUT=100ms is unusually short (under 1s; the default is 10s): longest a single write to a subscriber may take",
		"INIT_TIMEOUT=100ms":    "INIT_TIMEOUT=100ms is unusually short (under 1s; the default is 30s): time a new WebSocket has to send a successful init",
		"SHUTDOWN_TIMEOUT=20ms": "SHUTDOWN_TIMEOUT=20ms is unusually short (under 1s; the default is 10s): time for a graceful stop, after SHUTDOWN_DELAY, before connections are cut",
		"HISTORY_TTL=50ms":      "HISTORY_TTL=50ms is unusually short (under 1s; the default is 5m): events older than this are not kept for resume; 0: no age limit",
		"HISTORY_TTL=0":         "",
		"PING_INTERVAL=1s":      "",
		"IDLE_TIMEOUT=10ms":     "",
	}
	for kv, want := range cases {
		t.Run(kv, func(t *testing.T) {
			k, v, _ := strings.Cut(kv, "=")
			cfg, err := loadConfig(mapEnv(map[string]string{k: v}))
			require.NoError(t, err)
			if want == "" {
				assert.Empty(t, cfg.warnings(nil))
				return
			}
			assert.Equal(t, []string{want}, cfg.warnings(nil))
		})
	}
}

func TestConfigMisspeltVariables(t *testing.T) {
	cases := []struct {
		environ []string
		want    []string
	}{
		{[]string{"PING_INTERVALL=5s"}, []string{"PING_INTERVALL is not a setting (ignored); did you mean PING_INTERVAL?"}},
		{[]string{"PING_INTERVLA=5s"}, []string{"PING_INTERVLA is not a setting (ignored); did you mean PING_INTERVAL?"}},
		{[]string{"PNG_INTREVAL=5s"}, []string{"PNG_INTREVAL is not a setting (ignored); did you mean PING_INTERVAL?"}},
		{[]string{"LISTENPORT=1"}, []string{"LISTENPORT is not a setting (ignored); did you mean LISTEN_PORT?"}},
		{[]string{"LOG_LEVL=debug"}, []string{"LOG_LEVL is not a setting (ignored); did you mean LOG_LEVEL?"}},
		{[]string{"JWT_SECRETS=x"}, []string{"JWT_SECRETS is not a setting (ignored); did you mean JWT_SECRET?"}},
		{[]string{"MAX_BODY_BYTE=1"}, []string{"MAX_BODY_BYTE is not a setting (ignored); did you mean MAX_BODY_BYTES?"}},
		{[]string{"ping_interval=5s"}, []string{"ping_interval is not a setting (ignored); names are upper case: did you mean PING_INTERVAL?"}},
		{[]string{"EVENTSRV_LISTEN_PORT=1"}, []string{"EVENTSRV_LISTEN_PORT is not a setting (ignored); settings have no prefix: did you mean LISTEN_PORT?"}},
		// Three edits away is another variable, not a typo.
		{[]string{"PONG_INTERVALS_=5s", "LOG_LEVEL_X_Y=1", "PING_INTERVAL_MS=5"}, nil},
		// Settings themselves, the system's variables, other programs'
		// and Kubernetes' service variables are left alone.
		{[]string{
			"PING_INTERVAL=5s", "PATH=/bin", "HOME=/root", "LANG=C", "SSL_CERT_FILE=/etc/ssl/cert.pem", "SSL_CERT_DIR=/etc/ssl",
			"LC_ALL=C", "XDG_RUNTIME_DIR=/run", "EVENTSRV_PORT=tcp://10.0.0.1:8080", "EVENTSRV_SERVICE_HOST=10.0.0.1",
			"HTTP_PROXY=x", "GOFLAGS=-race", "HOSTNAME=h", "TERM=xterm", "USER=root", "_=/usr/bin/env", "NOEQUALS", "=weird",
		}, nil},
		// Each variable once, in order.
		{[]string{"PING_INTERVALL=5s", "LOG_LEVL=debug", "PING_INTERVALL=6s"}, []string{
			"LOG_LEVL is not a setting (ignored); did you mean LOG_LEVEL?",
			"PING_INTERVALL is not a setting (ignored); did you mean PING_INTERVAL?",
		}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.environ, " "), func(t *testing.T) {
			assert.Equal(t, c.want, misspelt(c.environ))
		})
	}
}

func TestConfigEditDistance(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"A", "", 1}, {"", "AB", 2},
		{"PING_INTERVAL", "PING_INTERVAL", 0},
		{"PING_INTERVALL", "PING_INTERVAL", 1}, // insertion
		{"PING_INTERVA", "PING_INTERVAL", 1},   // deletion
		{"PING_INTERVAK", "PING_INTERVAL", 1},  // substitution
		{"PING_INTERVLA", "PING_INTERVAL", 1},  // swap
		{"PNIG_INTERVLA", "PING_INTERVAL", 2},
		{"SSL_CERT_FILE", "TLS_CERT_FILE", 2},
		{"CA", "ABC", 3}, // optimal string alignment, not full Damerau
	}
	for _, c := range cases {
		assert.Equal(t, c.want, editDistance(c.a, c.b), "%s %s", c.a, c.b)
		assert.Equal(t, c.want, editDistance(c.b, c.a), "%s %s", c.b, c.a)
	}
	// Short names allow one edit only.
	assert.Equal(t, "token", closest("tokn", []string{"token", "jwt"}))
	assert.Equal(t, "", closest("tkn", []string{"token", "jwt"}))
	assert.Equal(t, "LOG_LEVEL", closest("LOG_LEVL", []string{"LOG_FORMAT", "LOG_LEVEL"}))
}

// TestConfigLogsAbsolutePaths: the start-up line says where the tokens
// file really is, whatever directory the server started in.
func TestConfigLogsAbsolutePaths(t *testing.T) {
	cfg, err := loadConfig(mapEnv(map[string]string{"LISTEN_SOCKET": "run/eventsrv.sock", "JWT_SECRET": jwtSecret}))
	require.NoError(t, err)
	wd, err := os.Getwd()
	require.NoError(t, err)
	logged := map[string]any{}
	kv := cfg.logValue()
	for i := 0; i < len(kv); i += 2 {
		logged[kv[i].(string)] = kv[i+1]
	}
	assert.Equal(t, filepath.Join(wd, "tokens/tokens"), logged["TOKENS_FILE"])
	assert.Equal(t, filepath.Join(wd, "certs/cert.crt"), logged["TLS_CERT_FILE"])
	assert.Equal(t, filepath.Join(wd, "run/eventsrv.sock"), logged["LISTEN_SOCKET"])
	assert.Equal(t, "", logged["JWT_PUBLIC_KEY_FILE"], "an unset path stays unset")
	assert.Equal(t, "(set)", logged["JWT_SECRET"])
	assert.Len(t, logged, len(settings()))
}
