package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"eventsrv/client"
)

// The exit statuses of pub, sub and tail, beside 0 (success), 1 (any other
// failure: a refused event, bad input) and 2 (a usage error), so that a
// script can tell a credential to fix from a server to wait for.
const (
	exitAuth        = 3 // the server refused the token: UNAUTHENTICATED, FORBIDDEN, 4001, 4003
	exitUnreachable = 4 // the server could not be reached, or answered 503, until the retries ran out
)

// exitError is an error with its own exit status (see exitCode) and its
// own text.
type exitError struct {
	code int
	msg  string
	err  error
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) Unwrap() error { return e.err }

// clientExit gives a client error its exit status, and its text after
// what (when not empty), without the client's "eventsrv: ", which main
// prints itself.
func clientExit(what string, err error) error {
	if err == nil {
		return nil
	}
	msg := strings.TrimPrefix(err.Error(), "eventsrv: ")
	if what != "" {
		msg = what + ": " + msg
	}
	code := 1
	switch {
	case errors.Is(err, client.ErrUnauthenticated), errors.Is(err, client.ErrUnrecognizedScheme),
		errors.Is(err, client.ErrForbidden), errors.Is(err, client.ErrForbiddenOrigin),
		errors.Is(err, client.ErrTokenExpired), errors.Is(err, client.ErrTokenRevoked),
		errors.Is(err, client.ErrPermissionsChanged):
		code = exitAuth
	case errors.Is(err, client.ErrUnreachable), errors.Is(err, client.ErrUnavailable):
		code = exitUnreachable
	}
	return &exitError{code, msg, err}
}

// clientEnv is the part of each client command's help about where the
// server is, the token, and the exit statuses.
const clientEnv = `
Environment (flags override it):
  EVENTSRV_URL            the listen server (default http://localhost:8080)
  EVENTSRV_BROADCAST_URL  the broadcast server; by default the listen
                          URL's host, port 8081 beside 8080 (or none),
                          the next port otherwise, ws/wss as http/https
  EVENTSRV_TOKEN          a token from the tokens file, or a JWT (one is
                          recognised as such; "Basic " or "Bearer " in
                          front says which)

Exit status: 0 done, 1 another failure (a refused event, bad input),
2 a usage error, 3 the token was refused (UNAUTHENTICATED, FORBIDDEN,
expired, revoked), 4 the server is unreachable or unavailable.
`

// clientFlags are the connection flags of pub, sub and tail.
type clientFlags struct {
	url, broadcastURL, token, cacert string
	insecure                         bool
}

func addClientFlags(fs *flag.FlagSet, subscriber bool) *clientFlags {
	f := &clientFlags{}
	fs.StringVar(&f.url, "url", "", "the listen server's `URL` (default $EVENTSRV_URL, else http://localhost:8080)")
	if subscriber {
		fs.StringVar(&f.broadcastURL, "broadcast-url", "", "the broadcast server's `URL` (default $EVENTSRV_BROADCAST_URL, else derived from -url)")
	}
	fs.StringVar(&f.token, "token", "", "the `token` or JWT (default $EVENTSRV_TOKEN; prefer it: flags show in ps)")
	fs.StringVar(&f.cacert, "cacert", "", "a PEM `file` of CA certificates to trust, for a server with a private certificate")
	fs.BoolVar(&f.insecure, "insecure", false, "skip TLS certificate checks (for a self-signed certificate in development)")
	return f
}

// credential is a parsed EVENTSRV_TOKEN.
type credential struct {
	token string
	jwt   bool
}

// parseCredential reads a token: "Bearer X" and "Basic X" say what X is;
// a bare token is a JWT when it looks like one (three base64url parts
// whose first is a JSON header naming an algorithm).
func parseCredential(s string) credential {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "Bearer "); ok {
		return credential{strings.TrimSpace(rest), true}
	}
	if rest, ok := strings.CutPrefix(s, "Basic "); ok {
		return credential{strings.TrimSpace(rest), false}
	}
	return credential{s, looksLikeJWT(s)}
}

func looksLikeJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var header struct {
		Alg string `json:"alg"`
	}
	return json.Unmarshal(b, &header) == nil && header.Alg != ""
}

// subscribeClaim is a JWT's subscribe claim, read without verifying it
// (the server verifies): what tail subscribes to with a JWT.
func subscribeClaim(jwt string) []string {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil
	}
	var claims struct {
		Subscribe []string `json:"subscribe"`
	}
	_ = json.Unmarshal(b, &claims)
	return claims.Subscribe
}

// newClient makes the command's client from its flags and the
// environment.
func (c cli) newClient(name string, f *clientFlags) (*client.Client, credential, error) {
	pick := func(flagValue, env, def string) string {
		if flagValue != "" {
			return flagValue
		}
		if v := c.getenv(env); v != "" {
			return v
		}
		return def
	}
	cred := parseCredential(pick(f.token, "EVENTSRV_TOKEN", ""))
	if cred.token == "" {
		return nil, cred, usageErrorf("%s: no token: set EVENTSRV_TOKEN (or -token) to a token from the tokens file or a JWT", name)
	}
	opts := []client.Option{client.WithUserAgent("eventsrv-cli " + name)}
	if cred.jwt {
		opts = append(opts, client.WithJWT(cred.token, nil))
	} else {
		opts = append(opts, client.WithToken(cred.token))
	}
	if b := pick(f.broadcastURL, "EVENTSRV_BROADCAST_URL", ""); b != "" {
		opts = append(opts, client.WithBroadcastURL(b))
	}
	if f.cacert != "" || f.insecure {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.insecure} //nolint:gosec // asked for with -insecure
		if f.cacert != "" {
			pem, err := os.ReadFile(f.cacert)
			if err != nil {
				return nil, cred, usageErrorf("%s: -cacert: %w", name, err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, cred, usageErrorf("%s: -cacert %s holds no PEM certificate", name, f.cacert)
			}
		}
		opts = append(opts, client.WithTLSConfig(cfg))
	}
	cl, err := client.New(pick(f.url, "EVENTSRV_URL", "http://localhost:8080"), opts...)
	if err != nil {
		return nil, cred, usageErrorf("%s: %w", name, err)
	}
	return cl, cred, nil
}

// parseInterspersed parses args as the flag package does, but lets flags
// come after arguments too (eventsrv sub a -since X); "--" ends the flags.
// -h prints the usage and returns errHelpShown, as parse does.
func (c cli) parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		err := fs.Parse(args)
		switch {
		case errors.Is(err, flag.ErrHelp):
			fs.SetOutput(c.stdout)
			fs.Usage()
			return nil, errHelpShown
		case err != nil:
			return nil, usageErrorf("%s: %w; %s -h shows the usage", strings.TrimPrefix(fs.Name(), "eventsrv "), err, fs.Name())
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// pub is `eventsrv pub`.
func (c cli) pub(ctx context.Context, args []string) error {
	return c.pubFrom(ctx, args, os.Stdin)
}

// pubFrom is pub reading stdin from in.
func (c cli) pubFrom(ctx context.Context, args []string, in io.Reader) error {
	fs := newFlags("pub", " [flags] EVENT [JSON]", `Publish EVENT with JSON as its data, and print the event's ID. Without JSON,
read JSON lines from stdin until EOF, one event's data a line (blank lines
are skipped), publish each as EVENT in order, and print each ID as it is
accepted.

  eventsrv pub order.created '{"id":1}'
  echo '{"id":1}' | eventsrv pub order.created
  tail -f orders.jsonl | eventsrv pub order.created

A publish that fails with 503 or a network error is retried with backoff
(for up to -timeout), with the same Idempotency-Key: it is published once.
`+clientEnv)
	flags := addClientFlags(fs, false)
	timeout := durationFlag(30 * time.Second)
	fs.Var(&timeout, "timeout", "how long one event may take, retries included (a `duration`)")
	positional, err := c.parseInterspersed(fs, args)
	if err != nil {
		return okIfHelp(err)
	}
	if len(positional) == 0 || len(positional) > 2 {
		return usageErrorf(`pub: give EVENT and optionally JSON, e.g. eventsrv pub order.created '{"id":1}'; eventsrv pub -h shows the usage`)
	}
	event := positional[0]
	var data []byte
	if len(positional) == 2 {
		data = []byte(positional[1])
		if !json.Valid(data) {
			return usageErrorf(`pub: %q is not JSON (a string needs its quotes: '"text"'); eventsrv pub -h shows the usage`, positional[1])
		}
	}
	cl, _, err := c.newClient("pub", flags)
	if err != nil {
		return err
	}
	defer cl.Close()
	publish := func(data []byte) error {
		ctx, cancel := context.WithTimeout(ctx, time.Duration(timeout))
		defer cancel()
		id, err := cl.PublishRaw(ctx, event, data)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(c.stdout, id)
		return err
	}
	if data != nil {
		return clientExit("", publish(data))
	}
	if f, ok := in.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(c.stderr, "eventsrv pub: reading %s's data from the terminal, a JSON value a line; Ctrl-D ends\n", event)
		}
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		if !json.Valid(text) {
			return fmt.Errorf("pub: stdin line %d is not JSON; the events before it were published", line)
		}
		if err := publish(text); err != nil {
			return clientExit(fmt.Sprintf("stdin line %d", line), err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("pub: reading stdin: %w", err)
	}
	return nil
}

// subFlags are sub's and tail's own flags.
type subFlags struct {
	since, format string
	count         int
	quiet         bool
}

func addSubFlags(fs *flag.FlagSet) *subFlags {
	f := &subFlags{}
	fs.StringVar(&f.since, "since", "", "start after the event with this `ID` (the server replays what it kept since)")
	fs.StringVar(&f.format, "format", "json", "output `format`: json (one JSON object a line) or plain (NAME DATA a line)")
	fs.IntVar(&f.count, "count", 0, "exit after this many events (0: run until interrupted)")
	fs.BoolVar(&f.quiet, "quiet", false, "print nothing on stderr about connections and reconnects")
	return f
}

const subOutput = `
Output, -format json (the default), one line each:
  {"type":"event","id":"<ID>","event":"<name>","data":<data>}
  {"type":"reset"}   (events were missed: the server could not replay all)
-format plain prints "NAME DATA" lines (a reset goes to stderr only).
Connections, reconnects and resets are told on stderr (-quiet: not).
The command runs until interrupted (or -count events), and exits 3 when
the token is refused, expired or revoked.
`

// sub is `eventsrv sub`.
func (c cli) sub(ctx context.Context, args []string) error {
	fs := newFlags("sub", " [flags] EVENT...", `Subscribe to the events named (a name ending in * matches every name with
that prefix) and print each as it arrives. The connection is kept: it is
remade after a restart or a network failure, with backoff, and resumes
after the last event printed, so that nothing the server still keeps is
missed or printed twice.

  eventsrv sub order.created
  eventsrv sub -format plain 'order.*' job.42
  eventsrv sub -since 1795425601234-7 order.created
`+subOutput+clientEnv)
	flags := addClientFlags(fs, true)
	sf := addSubFlags(fs)
	events, err := c.parseInterspersed(fs, args)
	if err != nil {
		return okIfHelp(err)
	}
	if len(events) == 0 {
		return usageErrorf("sub: name at least one event (eventsrv tail follows all of them); eventsrv sub -h shows the usage")
	}
	return c.follow(ctx, "sub", events, flags, sf)
}

// tail is `eventsrv tail`.
func (c cli) tail(ctx context.Context, args []string) error {
	fs := newFlags("tail", " [flags]", `Print every event the token may see, as eventsrv sub does: a token from
the tokens file subscribes to "*" (all events; refused when its role names
only some), a JWT to the patterns of its subscribe claim.

  eventsrv tail
  eventsrv tail -format plain -since 1795425601234-7
`+subOutput+clientEnv)
	flags := addClientFlags(fs, true)
	sf := addSubFlags(fs)
	if positional, err := c.parseInterspersed(fs, args); err != nil {
		return okIfHelp(err)
	} else if len(positional) > 0 {
		return usageErrorf("tail: unexpected argument %q (eventsrv sub takes event names); eventsrv tail -h shows the usage", positional[0])
	}
	return c.follow(ctx, "tail", nil, flags, sf)
}

// follow subscribes and prints events until ctx ends, -count events have
// been printed, or the subscription ends. events nil is tail's: all the
// token may see.
func (c cli) follow(ctx context.Context, name string, events []string, flags *clientFlags, sf *subFlags) error {
	if sf.format != "json" && sf.format != "plain" {
		return usageErrorf("%s: -format %q: json or plain; eventsrv %s -h shows the usage", name, sf.format, name)
	}
	if sf.count < 0 {
		return usageErrorf("%s: -count %d is negative", name, sf.count)
	}
	cl, cred, err := c.newClient(name, flags)
	if err != nil {
		return err
	}
	defer cl.Close()
	tail := events == nil
	if tail {
		events = []string{"*"}
		if cred.jwt {
			if events = subscribeClaim(cred.token); len(events) == 0 {
				return &exitError{exitAuth, "tail: the JWT's subscribe claim names no event: it may not subscribe to anything", nil}
			}
		}
	}
	stderr := &lockedWriter{w: c.stderr}
	note := func(format string, args ...any) {
		if !sf.quiet {
			fmt.Fprintf(stderr, "eventsrv "+name+": "+format+"\n", args...)
		}
	}
	connects := 0
	sub, err := cl.Subscribe(ctx, events, client.Since(sf.since), client.OnStateChange(func(sc client.StateChange) {
		switch sc.State {
		case client.Connected:
			connects++
			if connects == 1 {
				note("subscribed to %s at %s", strings.Join(events, ", "), sc.URL)
			} else {
				note("reconnected")
			}
		case client.Reconnecting:
			note("connection lost (%v); reconnecting in %v (attempt %d)", sc.Err, sc.Delay.Round(time.Millisecond), sc.Attempt)
		}
	}))
	if err != nil {
		var e *client.Error
		if tail && errors.As(err, &e) && e.Status == 0 && e.Code != "UNAUTHENTICATED" && e.Code != "AUTH_UNRECOGNIZED_SCHEME" {
			return clientExit("", fmt.Errorf("tail: the server refused %s (%w): either the token may not see every event, "+
				"or the server has no wildcard subscriptions; name the events: eventsrv sub NAME", strings.Join(events, ", "), e))
		}
		return clientExit("", err)
	}
	defer sub.Close()
	printed := 0
	var line []byte
	for ev, err := range sub.Events() {
		if errors.Is(err, client.ErrReset) {
			note("reset: the server could not replay every event missed; some may be lost")
			if sf.format == "json" {
				if _, err := io.WriteString(c.stdout, `{"type":"reset"}`+"\n"); err != nil {
					return err
				}
			}
			continue
		}
		if err != nil {
			return clientExit(name, err)
		}
		line = appendEvent(line[:0], ev, sf.format)
		if _, err := c.stdout.Write(line); err != nil {
			return err
		}
		if printed++; sf.count > 0 && printed == sf.count {
			return nil
		}
	}
	return nil // ctx ended: interrupted
}

// appendEvent writes ev as one line of format. Data is relayed as the
// publisher sent it, which may span lines: it is compacted then.
func appendEvent(b []byte, ev client.Event, format string) []byte {
	data := []byte(ev.Data)
	if bytes.ContainsAny(data, "\r\n") {
		var buf bytes.Buffer
		if json.Compact(&buf, data) == nil {
			data = buf.Bytes()
		}
	}
	if format == "plain" {
		b = append(b, ev.Name...)
		b = append(b, ' ')
		return append(append(b, data...), '\n')
	}
	id, _ := json.Marshal(ev.ID)
	name, _ := json.Marshal(ev.Name)
	b = append(b, `{"type":"event","id":`...)
	b = append(append(b, id...), `,"event":`...)
	b = append(append(b, name...), `,"data":`...)
	return append(append(b, data...), "}\n"...)
}

// lockedWriter serializes writes from the subscription's goroutine and
// the command's.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
