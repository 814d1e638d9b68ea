package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runCLI runs eventsrv with args and the settings in env, and returns its
// stdout, stderr and error.
func runCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), append([]string{"eventsrv"}, args...), mapEnv(env), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestCLIHelpListsCommandsAndEverySetting(t *testing.T) {
	var first string
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-help"}, {"help", "serve"}, {"serve", "-h"}} {
		out, errOut, err := runCLI(t, nil, args...)
		require.NoError(t, err, args)
		assert.Empty(t, errOut)
		assert.Equal(t, 0, exitCode(err))
		if first == "" {
			first = out
		}
		assert.Equal(t, first, out, "%v prints another text", args)
	}
	assert.True(t, strings.HasPrefix(first, "usage: eventsrv [command] [-h]\n"), first)
	for _, cmd := range commands() {
		assert.Regexp(t, `(?m)^  `+cmd.name+` +\S`, first, "command %s", cmd.name)
	}
	// Every field of config, with its default and the start of its help.
	for _, s := range settings() {
		line := "  " + s.name + " (unset by default"
		if s.hasDef {
			line = "  " + s.name + " (default " + s.def
		}
		assert.Contains(t, first, line, s.name)
		assert.Contains(t, first, "      "+strings.Fields(s.help)[0], s.name)
	}
	for _, want := range []string{
		"  PING_INTERVAL (default 25s, at least 10ms)\n      how often subscribers are pinged",
		"  MAX_BODY_BYTES (default 1048576 = 1MiB)\n",
		"  SHUTDOWN_DELAY (default 0s)\n",
		"  JWT_SECRET (unset by default)\n",
		"yes/no or on/off",
		"KiB, MiB, GiB ×1024",
	} {
		assert.Contains(t, first, want)
	}
	for _, line := range strings.Split(first, "\n") {
		assert.LessOrEqual(t, len([]rune(line)), 80, "line too long: %q", line)
	}
}

func TestCLISubcommandHelp(t *testing.T) {
	for _, cmd := range commands() {
		if cmd.run == nil || cmd.name == "help" {
			continue
		}
		for _, args := range [][]string{{cmd.name, "-h"}, {cmd.name, "--help"}, {"help", cmd.name}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				out, errOut, err := runCLI(t, nil, args...)
				require.NoError(t, err)
				assert.Empty(t, errOut)
				assert.True(t, strings.HasPrefix(out, "usage: eventsrv "+cmd.name), out)
			})
		}
	}
	out, _, err := runCLI(t, nil, "jwt", "-h")
	require.NoError(t, err)
	for _, flag := range []string{"-sub", "-subscribe", "-publish", "-ttl duration"} {
		assert.Contains(t, out, "  "+flag)
	}
	out, _, err = runCLI(t, nil, "secret", "-h")
	require.NoError(t, err)
	assert.Contains(t, out, "must run with the same JWT_SECRET")
	assert.Contains(t, out, "openssl rand -hex 32")
}

func TestCLIUsageMistakesExitTwo(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"nonsense"}, `unknown command "nonsense"; eventsrv help lists the commands`},
		{[]string{"verison"}, `unknown command "verison" (did you mean version?); eventsrv help lists the commands`},
		{[]string{"tokn"}, `unknown command "tokn" (did you mean token?); eventsrv help lists the commands`},
		{[]string{"-port", "9000"}, `unknown flag -port: settings are environment variables, e.g. LISTEN_PORT=9000 eventsrv; eventsrv help lists them`},
		{[]string{"serve", "now"}, `serve takes no arguments (got "now"): settings are environment variables; eventsrv help lists them`},
		{[]string{"help", "nonsense"}, `unknown command "nonsense"; eventsrv help lists the commands`},
		{[]string{"jwt", "-x"}, `jwt: flag provided but not defined: -x; eventsrv jwt -h shows the usage`},
		{[]string{"jwt", "extra"}, `jwt: unexpected argument "extra"; eventsrv jwt -h shows the usage`},
		{[]string{"jwt", "-ttl", "2"}, `jwt: invalid value "2" for flag -ttl: not a duration: the unit is missing (2s? 2ms?); eventsrv jwt -h shows the usage`},
		{[]string{"jwt", "-ttl", "0s"}, `jwt: -ttl 0s is not positive; e.g. -ttl 15m`},
		{[]string{"token", "extra"}, `token: unexpected argument "extra"; eventsrv token -h shows the usage`},
		{[]string{"version", "-v"}, `version: flag provided but not defined: -v; eventsrv version -h shows the usage`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			out, errOut, err := runCLI(t, map[string]string{"JWT_SECRET": jwtSecret}, c.args...)
			require.Error(t, err)
			assert.Equal(t, c.want, err.Error())
			assert.Equal(t, 2, exitCode(err))
			assert.Empty(t, out)
			assert.Empty(t, errOut)
		})
	}
	// Other failures exit 1.
	_, _, err := runCLI(t, nil, "jwt", "-subscribe", "a")
	require.Error(t, err)
	assert.Equal(t, 1, exitCode(err))
	assert.Equal(t, 1, exitCode(errors.New("x")))
	assert.Equal(t, 0, exitCode(nil))
}

func TestCLIVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-version"} {
		out, _, err := runCLI(t, nil, arg)
		require.NoError(t, err)
		assert.Equal(t, "eventsrv "+version()+"\n", out)
	}
	cases := []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"none", nil, "devel (commit unknown, go version unknown)"},
		{"go run", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}},
			"devel (commit unknown, go1.26.0)"},
		{"release", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.modified", Value: "false"}}},
			"v1.2.3 (commit 0123abcd, go1.26.0)"},
		{"dirty checkout", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.0.0-20261123150632-0123abcd0123+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd0123"}, {Key: "vcs.modified", Value: "true"}}},
			"v0.0.0-20261123150632-0123abcd0123+dirty (commit 0123abcd0123-dirty, go1.26.0)"},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, formatVersion(c.bi), c.name)
	}
}

// TestCLIStatusReportsTheVersion: /admin/status says what eventsrv
// version does.
func TestCLIStatusReportsTheVersion(t *testing.T) {
	s := startAdminServer(t)
	status, body := s.do("GET", "/admin/status", "Basic "+adminToken, "")
	require.Equal(t, 200, status, body)
	var st struct{ Version string }
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	out, _, err := runCLI(t, nil, "version")
	require.NoError(t, err)
	assert.Equal(t, "eventsrv "+st.Version+"\n", out)
}

func TestCLISecret(t *testing.T) {
	out1, _, err := runCLI(t, nil, "secret")
	require.NoError(t, err)
	out2, _, err := runCLI(t, nil, "secret")
	require.NoError(t, err)
	secret := strings.TrimSuffix(out1, "\n")
	b, err := hex.DecodeString(secret)
	require.NoError(t, err)
	assert.Len(t, b, 32)
	assert.NotEqual(t, out1, out2)
	// It is a valid JWT_SECRET, and a token minted with it is accepted.
	token, _, err := runCLI(t, map[string]string{"JWT_SECRET": secret}, "jwt", "-subscribe", "a")
	require.NoError(t, err)
	s := startServer(t, map[string]string{"JWT_SECRET": secret})
	c := s.dial()
	require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Bearer "+strings.TrimSpace(token), "a")))
}

// jwtClaims decodes a token's claims without checking it.
func jwtClaims(t *testing.T, token string) (iat, exp int64) {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(token), ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var c struct{ Iat, Exp int64 }
	require.NoError(t, json.Unmarshal(payload, &c))
	return c.Iat, c.Exp
}

// TestCLIJWTExpiryIsRoundedUp: a token lasts at least its -ttl; exp, in
// whole seconds, is rounded up, not down.
func TestCLIJWTExpiryIsRoundedUp(t *testing.T) {
	for _, ttl := range []time.Duration{time.Second, 2 * time.Second, 1500 * time.Millisecond, time.Hour} {
		t.Run(ttl.String(), func(t *testing.T) {
			before := time.Now()
			token := mint(t, "-subscribe", "a", "-ttl", ttl.String())
			after := time.Now()
			_, exp := jwtClaims(t, token)
			expires := time.Unix(exp, 0)
			assert.False(t, expires.Before(before.Add(ttl)), "exp %s is before now+ttl %s", expires, before.Add(ttl))
			assert.False(t, expires.After(after.Add(ttl).Add(time.Second)), "exp %s is more than a second late", expires)
		})
	}
	// The rounding itself: MintHMAC floors now+ttl to the second.
	for _, now := range []time.Time{time.Unix(100, 0), time.Unix(100, 1), time.Unix(100, 999_999_999), time.Unix(100, 360_000_000)} {
		for _, ttl := range []time.Duration{time.Second, 2 * time.Second, 1500 * time.Millisecond} {
			floored := now.Add(ceilTTL(ttl)).Truncate(time.Second)
			ceiled := now.Add(ttl)
			if ceiled.Truncate(time.Second) != ceiled {
				ceiled = ceiled.Truncate(time.Second).Add(time.Second)
			}
			assert.Equal(t, ceiled, floored, "now %v ttl %s", now, ttl)
		}
	}
}

func TestCLIJWTWithoutClaimsWarns(t *testing.T) {
	env := map[string]string{"JWT_SECRET": jwtSecret}
	out, errOut, err := runCLI(t, env, "jwt", "-sub", "nobody")
	require.NoError(t, err)
	assert.NotEmpty(t, out)
	assert.Equal(t, "eventsrv jwt: warning: neither -subscribe nor -publish is given: the token may do nothing\n", errOut)
	for _, args := range [][]string{{"-subscribe", "a"}, {"-publish", "a"}} {
		_, errOut, err := runCLI(t, env, append([]string{"jwt"}, args...)...)
		require.NoError(t, err)
		assert.Empty(t, errOut, args)
	}
	_, _, err = runCLI(t, nil, "jwt", "-subscribe", "a")
	require.Error(t, err)
	assert.Equal(t, "jwt: JWT_SECRET is not set; eventsrv jwt signs with it, and the server must have the same (eventsrv secret makes one)", err.Error())
}

// TestCLIWarnsAboutMisspeltVariables runs the server as main does, with
// the whole environment: a variable a letter away from a setting is a
// warning at start; with a configuration error, the hint goes with it.
func TestCLIWarnsAboutMisspeltVariables(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{
		"BIND_ADDRESS": "127.0.0.1", "LISTEN_PORT": "0", "BROADCAST_PORT": "0", "METRICS_ADDRESS": "off",
		"TOKENS_FILE": dir + "/tokens", "PING_INTERVAL": "50ms",
	}
	environ := []string{"PING_INTERVALL=5s", "PATH=/bin", "SSL_CERT_FILE=/etc/ssl/cert.pem"}
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	logs := newLogSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"eventsrv"}, mapEnv(vars), io.Discard, logs, environ...) }()
	select {
	case <-logs.ready:
	case err := <-done:
		t.Fatalf("server exited: %v\n%s", err, logs)
	case <-time.After(10 * time.Second):
		t.Fatalf("server did not start\n%s", logs)
	}
	cancel()
	require.NoError(t, <-done)
	assert.Contains(t, logs.String(), `level=WARN msg="PING_INTERVALL is not a setting (ignored); did you mean PING_INTERVAL?"`)
	assert.Contains(t, logs.String(), `level=WARN msg="PING_INTERVAL=50ms is unusually short`)
	assert.NotContains(t, logs.String(), "SSL_CERT_FILE")
	assert.Contains(t, logs.String(), "TOKENS_FILE="+dir+"/tokens")

	vars["PING_INTERVAL"] = "5"
	err := run(context.Background(), []string{"eventsrv"}, mapEnv(vars), io.Discard, io.Discard, environ...)
	require.Error(t, err)
	assert.Equal(t, `configuration: PING_INTERVAL: "5" is not a duration: the unit is missing (5s? 5ms?)`+"\n"+
		"PING_INTERVALL is not a setting (ignored); did you mean PING_INTERVAL?", err.Error())
	assert.Equal(t, 1, exitCode(err))
}

// The linker's version and commit (the container build's) fill in only
// what the build information lacks.
func TestStampedVersion(t *testing.T) {
	for _, c := range []struct{ line, version, commit, want string }{
		{"devel (commit unknown, go1.26.8)", "v1.2.0", "0123abc", "v1.2.0 (commit 0123abc, go1.26.8)"},
		{"devel (commit unknown, go1.26.8)", "", "", "devel (commit unknown, go1.26.8)"},
		{"v1.1.0 (commit 89ab, go1.26.8)", "v1.2.0", "0123abc", "v1.1.0 (commit 89ab, go1.26.8)"},
	} {
		assert.Equal(t, c.want, stamped(c.line, c.version, c.commit))
	}
}
