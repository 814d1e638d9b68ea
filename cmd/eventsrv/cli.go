package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"eventsrv/auth"
)

// usageError is a mistake on the command line: an unknown command, flag
// or argument. main exits 2 for it, as the flag package and most Unix
// tools do, and 1 for every other failure.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exitCode is the exit status main gives for run's error.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var u *usageError
	if errors.As(err, &u) {
		return 2
	}
	var x *exitError // pub, sub and tail's 3 and 4 (see clientcmd.go)
	if errors.As(err, &x) {
		return x.code
	}
	return 1
}

// cli is what a subcommand may use of run's arguments.
type cli struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// command is one of eventsrv's subcommands.
type command struct {
	name    string
	summary string // its line in eventsrv help
	run     func(c cli, ctx context.Context, args []string) error
}

// commands lists the subcommands in the order eventsrv help shows them.
// serve has no run: run serves when runCommand reports no command.
func commands() []command {
	return []command{
		{"serve", "run the listen and broadcast servers; the default command", nil},
		{"token", "print a new random token to add to the tokens file", cli.token},
		{"jwt", "print a JWT signed with JWT_SECRET (eventsrv jwt -h: its flags)", cli.jwt},
		{"secret", "print a new random secret to set as JWT_SECRET", cli.secret},
		{"healthcheck", "GET /healthz on the local listen server; exit 0 when healthy", cli.healthcheck},
		{"pub", "publish an event, or JSON lines from stdin, to EVENTSRV_URL", cli.pub},
		{"sub", "print events as they arrive; reconnects and resumes by itself", cli.sub},
		{"tail", "print every event the token may see (sub to *)", cli.tail},
		{"version", "print the version, commit and Go version (also --version)", cli.version},
		{"help", "print this text; eventsrv help COMMAND describes one", cli.help},
	}
}

// runCommand runs the subcommand args[1] names. done is false when there
// is none, or it is serve without arguments: run then serves.
func runCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (done bool, err error) {
	if len(args) < 2 {
		return false, nil
	}
	c := cli{getenv: getenv, stdout: stdout, stderr: stderr}
	name, rest := args[1], args[2:]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	case "-version", "--version":
		name = "version"
	case "serve":
		if len(rest) == 0 {
			return false, nil
		}
		return true, c.serveArgs(rest)
	}
	for _, cmd := range commands() {
		if cmd.name == name && cmd.run != nil {
			return true, cmd.run(c, ctx, rest)
		}
	}
	return true, unknownCommand(name)
}

// unknownCommand says what to do instead. A flag is likely a setting
// given the way other servers take them.
func unknownCommand(name string) error {
	if strings.HasPrefix(name, "-") {
		return usageErrorf("unknown flag %s: settings are environment variables, e.g. LISTEN_PORT=9000 eventsrv; eventsrv help lists them", name)
	}
	names := make([]string, 0, len(commands()))
	for _, cmd := range commands() {
		names = append(names, cmd.name)
	}
	if near := closest(name, names); near != "" {
		return usageErrorf("unknown command %q (did you mean %s?); eventsrv help lists the commands", name, near)
	}
	return usageErrorf("unknown command %q; eventsrv help lists the commands", name)
}

// serveArgs answers `eventsrv serve ARGS`: serve takes no arguments but
// -h.
func (c cli) serveArgs(args []string) error {
	if isHelpFlag(args[0]) {
		return writeUsage(c.stdout)
	}
	return usageErrorf("serve takes no arguments (got %q): settings are environment variables; eventsrv help lists them", args[0])
}

func isHelpFlag(s string) bool {
	switch s {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// newFlags makes the flag set of `eventsrv NAME`. Its usage is the
// synopsis, what the command does (about), and the flags if it has any.
func newFlags(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet("eventsrv "+name, flag.ContinueOnError)
	// The flag package prints its own error and usage on failure; parse
	// returns one error instead and prints the usage only when asked.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: eventsrv %s%s\n\n%s", name, synopsis, about)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// errHelpShown ends a command whose usage -h printed; the command then
// succeeds.
var errHelpShown = errors.New("help shown")

// parse parses a command's arguments. With -h it prints the usage on
// stdout and returns errHelpShown; a bad flag or a stray argument is a
// usageError that says where the usage is.
func (c cli) parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(c.stdout)
		fs.Usage()
		return errHelpShown
	case err != nil:
		return usageErrorf("%s: %w; %s -h shows the usage", strings.TrimPrefix(fs.Name(), "eventsrv "), err, fs.Name())
	case fs.NArg() > 0:
		return usageErrorf("%s: unexpected argument %q; %s -h shows the usage", strings.TrimPrefix(fs.Name(), "eventsrv "), fs.Arg(0), fs.Name())
	}
	return nil
}

// okIfHelp turns errHelpShown into success.
func okIfHelp(err error) error {
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return err
}

// help is `eventsrv help [COMMAND]`.
func (c cli) help(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "serve" || isHelpFlag(args[0]) {
		return writeUsage(c.stdout)
	}
	for _, cmd := range commands() {
		if cmd.name == args[0] && cmd.run != nil {
			return cmd.run(c, ctx, []string{"-h"})
		}
	}
	return unknownCommand(args[0])
}

// token is `eventsrv token`.
func (c cli) token(_ context.Context, args []string) error {
	fs := newFlags("token", "", `Print a new random token (32 random bytes, base64url). Add it to the tokens
file (TOKENS_FILE), one a line, optionally followed by what it may do:
  TOKEN                          publish and subscribe to every event
  TOKEN  publish=order.*,invoice publish these events only
  TOKEN  subscribe=user.*        subscribe to these events only
  TOKEN  admin                   the /admin/ endpoints only
The server rereads the file when it changes and on SIGHUP.
`)
	if err := c.parse(fs, args); err != nil {
		return okIfHelp(err)
	}
	_, err := fmt.Fprintln(c.stdout, auth.NewToken())
	return err
}

// secret is `eventsrv secret`.
func (c cli) secret(_ context.Context, args []string) error {
	fs := newFlags("secret", "", `Print a new random secret for JWT_SECRET: 32 random bytes in hex, as
openssl rand -hex 32 does. The server, which checks JWTs, and eventsrv jwt,
which mints them, must run with the same JWT_SECRET. Anyone who has it can
mint tokens: keep it like a password.

  export JWT_SECRET=$(eventsrv secret)
  eventsrv &
  eventsrv jwt -sub browser-1 -subscribe 'news.*'
`)
	if err := c.parse(fs, args); err != nil {
		return okIfHelp(err)
	}
	var b [32]byte
	// crypto/rand.Read never returns an error on supported platforms.
	_, _ = rand.Read(b[:])
	_, err := fmt.Fprintln(c.stdout, hex.EncodeToString(b[:]))
	return err
}

// jwt is `eventsrv jwt`: it prints an HS256 token signed with JWT_SECRET,
// for tests and for trying the service out.
func (c cli) jwt(_ context.Context, args []string) error {
	fs := newFlags("jwt", " [-sub NAME] [-subscribe PATTERNS] [-publish PATTERNS] [-ttl DURATION]",
		`Print a JWT signed HS256 with JWT_SECRET, for a browser or a client that
should not hold a long-lived token. The server must run with the same
JWT_SECRET (eventsrv secret makes one). A token with neither -subscribe nor
-publish may do nothing.

  JWT_SECRET=... eventsrv jwt -sub browser-1 -subscribe 'news.*,alerts' -ttl 1h
`)
	sub := fs.String("sub", "", "subject: who the token is for; logged by the server")
	subscribe := fs.String("subscribe", "", "comma-separated event `patterns` the bearer may subscribe to (a, b*, *)")
	publish := fs.String("publish", "", "comma-separated event `patterns` the bearer may publish")
	ttl := durationFlag(15 * time.Minute)
	fs.Var(&ttl, "ttl", "how long the token is valid: a `duration` such as 90s, 15m or 24h (exp is rounded up to the second)")
	if err := c.parse(fs, args); err != nil {
		return okIfHelp(err)
	}
	if ttl <= 0 {
		return usageErrorf("jwt: -ttl %s is not positive; e.g. -ttl 15m", time.Duration(ttl))
	}
	cfg, err := loadConfig(c.getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if cfg.JWTSecret == "" {
		return errors.New("jwt: JWT_SECRET is not set; eventsrv jwt signs with it, and the server must have the same (eventsrv secret makes one)")
	}
	lists := [2][]string{}
	for i, list := range []string{*subscribe, *publish} {
		p, err := auth.ParsePatterns(list)
		if err != nil {
			return err
		}
		lists[i] = p
	}
	if len(lists[0]) == 0 && len(lists[1]) == 0 {
		fmt.Fprintln(c.stderr, "eventsrv jwt: warning: neither -subscribe nor -publish is given: the token may do nothing")
	}
	// The server's JWT_AUDIENCE and JWT_ISSUER, when set, go into the
	// token, so that what this mints the server accepts.
	token, err := auth.MintHMAC([]byte(cfg.JWTSecret), *sub, lists[0], lists[1], ceilTTL(time.Duration(ttl)),
		auth.MintAudience(cfg.JWTAudience), auth.MintIssuer(cfg.JWTIssuer))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.stdout, token)
	return err
}

// durationFlag is a duration flag whose error says what a duration looks
// like, where the flag package says only "parse error".
type durationFlag time.Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }

func (d *durationFlag) Set(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("not %w", err)
	}
	*d = durationFlag(v)
	return nil
}

// ceilTTL is the ttl to give auth.MintHMAC so that the token lasts at
// least ttl. MintHMAC sets exp to now+ttl rounded down to the second (JWT
// dates are whole seconds), which made -ttl 2s a token of 1.36 s. Time
// has nanosecond resolution, so floor(t + 1s - 1ns) is ceil(t) to the
// second: exp is now+ttl rounded up.
func ceilTTL(ttl time.Duration) time.Duration {
	return ttl + time.Second - time.Nanosecond
}

// version is `eventsrv version` (and --version).
func (c cli) version(_ context.Context, args []string) error {
	fs := newFlags("version", "", `Print the version, the commit and the Go version the binary was built with,
as GET /admin/status reports them. A binary built outside a git checkout, or
with -buildvcs=false, does not know its commit.
`)
	if err := c.parse(fs, args); err != nil {
		return okIfHelp(err)
	}
	_, err := fmt.Fprintln(c.stdout, "eventsrv", version())
	return err
}

// version is the version, commit and Go version the binary was built
// from, as far as the build recorded them: one line, for eventsrv version
// and /admin/status.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return stamped(formatVersion(bi), buildVersion, buildCommit)
}

// buildVersion and buildCommit are set by the linker where the build has
// no VCS information of its own, as in the container image, whose build
// context leaves .git out: go build -ldflags "-X main.buildVersion=v1.2.0
// -X main.buildCommit=0123abc" (the Dockerfile's VERSION and COMMIT
// build arguments). Empty otherwise.
var buildVersion, buildCommit string

// stamped puts the linker's version and commit, when given, in place of
// what formatVersion could not know ("devel", "unknown").
func stamped(line, version, commit string) string {
	if version != "" {
		line = strings.Replace(line, "devel (", version+" (", 1)
	}
	if commit != "" {
		line = strings.Replace(line, "(commit unknown,", "(commit "+commit+",", 1)
	}
	return line
}

// formatVersion is version's line for bi (nil when the binary has no
// build information): "v1.2.3 (commit 0123abc…-dirty, go1.26.0)". The
// version is "devel" when the build recorded none, as go run and builds
// with -buildvcs=false do.
func formatVersion(bi *debug.BuildInfo) string {
	if bi == nil {
		return "devel (commit unknown, go version unknown)"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	commit, dirty := "unknown", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && commit != "unknown" {
		commit += "-dirty"
	}
	goVersion := bi.GoVersion
	if goVersion == "" {
		goVersion = "go version unknown"
	}
	return fmt.Sprintf("%s (commit %s, %s)", v, commit, goVersion)
}

// healthcheck is `eventsrv healthcheck`: it probes the local listen
// server, for container health checks (the runtime image has no shell or
// curl).
func (c cli) healthcheck(ctx context.Context, args []string) error {
	fs := newFlags("healthcheck", "", `GET /healthz on the listen server of this machine and exit 0 if it answers
200, 1 otherwise: a container health check. It reads the server's settings
(BIND_ADDRESS, LISTEN_PORT, HTTPS_ENABLE), so run it with the server's
environment.
`)
	if err := c.parse(fs, args); err != nil {
		return okIfHelp(err)
	}
	cfg, err := loadConfig(c.getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	host := cfg.BindAddress
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	client := &http.Client{Timeout: 3 * time.Second}
	if cfg.HTTPSEnable {
		scheme = "https"
		// The probe checks liveness on loopback, not the certificate.
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec
	}
	url := scheme + "://" + net.JoinHostPort(host, fmt.Sprint(cfg.ListenPort)) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}

// writeUsage prints eventsrv help: the commands, then every setting with
// its default and meaning, read from config's struct tags.
func writeUsage(w io.Writer) error {
	var b strings.Builder
	b.WriteString(`usage: eventsrv [command] [-h]

eventsrv relays events: backends POST them to the listen server, and
subscribers receive them from the broadcast server over WebSocket or
Server-Sent Events.

Commands:
`)
	for _, cmd := range commands() {
		fmt.Fprintf(&b, "  %-12s %s\n", cmd.name, cmd.summary)
	}
	b.WriteString(`
pub, sub and tail are clients of a server: they read EVENTSRV_URL (the
listen server), EVENTSRV_BROADCAST_URL and EVENTSRV_TOKEN, and exit 3 when
the token is refused and 4 when the server is unreachable (eventsrv pub -h).

Settings are environment variables, read by serve, jwt and healthcheck; an
empty one counts as unset. Durations take a unit (500ms, 25s, 2m, 1h); sizes
take bytes or a unit (KB, MB, GB are ×1000; KiB, MiB, GiB ×1024: 64KiB, 1MB);
booleans take true/false, 1/0, yes/no or on/off. A variable whose name is a
letter or two away from a setting's is warned about at start.

`)
	for _, s := range settings() {
		var notes []string
		switch {
		case !s.hasDef:
			notes = append(notes, "unset by default")
		case s.field.Tag.Get("bytes") == "true":
			notes = append(notes, "default "+s.def+" = "+binarySize(s.def))
		default:
			notes = append(notes, "default "+s.def)
		}
		if s.hasMin && s.min > 0 {
			notes = append(notes, "at least "+s.min.String())
		}
		fmt.Fprintf(&b, "  %s (%s)\n", s.name, strings.Join(notes, ", "))
		for _, line := range wrap(s.help, 72) {
			fmt.Fprintf(&b, "      %s\n", line)
		}
	}
	b.WriteString("\nThe README describes the protocol, the tokens file and deployment.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// binarySize writes a default size in the largest binary unit that divides
// it: "1048576" is "1MiB".
func binarySize(bytes string) string {
	n, err := strconv.ParseInt(bytes, 10, 64)
	if err != nil {
		return bytes
	}
	for _, u := range []struct {
		name string
		n    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.name
		}
	}
	return bytes + "B"
}

// wrap breaks text into lines of at most width bytes at spaces (a longer
// word gets a line of its own).
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) > width:
			lines = append(lines, line)
			line = word
		default:
			line += " " + word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
