package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clientEnvOf is the environment of pub, sub and tail for s.
func clientEnvOf(s *server, token string) map[string]string {
	return map[string]string{"EVENTSRV_URL": s.listenURL, "EVENTSRV_BROADCAST_URL": s.wsURL, "EVENTSRV_TOKEN": token}
}

// runClientCLI runs a client command in-process with stdin and returns
// its stdout, stderr and error.
func runClientCLI(t *testing.T, ctx context.Context, env map[string]string, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := cli{getenv: mapEnv(env), stdout: &out, stderr: &errOut}
	var err error
	if args[0] == "pub" {
		err = c.pubFrom(ctx, args[1:], strings.NewReader(stdin))
	} else {
		err = run(ctx, append([]string{"eventsrv"}, args...), mapEnv(env), &out, &errOut)
	}
	return out.String(), errOut.String(), err
}

var cliID = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// pub and sub in-process: pub's IDs, sub's JSON lines and plain form,
// -since, -count.
func TestCLIPubAndSub(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, nil)
	env := clientEnvOf(s, testToken)

	out, errOut, err := runClientCLI(t, t.Context(), env, "", "pub", "order.created", `{"id":0}`)
	require.NoError(t, err, errOut)
	first := strings.TrimSpace(out)
	require.Regexp(t, cliID, first)

	// sub from the first event on: what pub sends next arrives, replayed
	// or live, whenever sub connects.
	type result struct {
		out, errOut string
		err         error
	}
	subbed := make(chan result, 2)
	for _, format := range []string{"json", "plain"} {
		go func() {
			out, errOut, err := runClientCLI(t, t.Context(), env, "", "sub", "-since", first, "-format", format, "order.created", "-count", "3")
			subbed <- result{out, errOut, err}
		}()
	}
	out, errOut, err = runClientCLI(t, t.Context(), env, "{\"id\":1}\n\n  [1, 2]  \n{\n", "pub", "order.created")
	require.Error(t, err, "line 4 is not JSON")
	assert.Equal(t, "pub: stdin line 4 is not JSON; the events before it were published", err.Error())
	assert.Equal(t, 1, exitCode(err))
	ids := strings.Fields(out)
	require.Len(t, ids, 2, errOut)
	_, _, err = runClientCLI(t, t.Context(), env, "", "pub", "-timeout", "5s", "order.created", `"last"`)
	require.NoError(t, err)

	for range 2 {
		r := <-subbed
		require.NoError(t, r.err, r.errOut)
		assert.Contains(t, r.errOut, "eventsrv sub: subscribed to order.created at "+s.wsURL)
		lines := strings.Split(strings.TrimSuffix(r.out, "\n"), "\n")
		require.Len(t, lines, 3, r.out)
		if strings.HasPrefix(lines[0], "{") {
			assert.Equal(t, `{"type":"event","id":"`+ids[0]+`","event":"order.created","data":{"id":1}}`, lines[0])
			assert.Equal(t, `{"type":"event","id":"`+ids[1]+`","event":"order.created","data":[1, 2]}`, lines[1])
			for _, l := range lines {
				assert.True(t, json.Valid([]byte(l)), l)
			}
		} else {
			assert.Equal(t, []string{`order.created {"id":1}`, `order.created [1, 2]`, `order.created "last"`}, lines)
		}
	}
}

// tail follows every event a token may see: "*" for a token from the
// tokens file, the subscribe claim of a JWT; a token limited to some names
// is told why "*" was refused.
func TestCLITail(t *testing.T) {
	clNoLeaks(t)
	const limited = "limited-token-0123456789abcdef"
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret, "TOKENS_RELOAD_INTERVAL": "20ms"})
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+limited+" subscribe=order.*\n"))
	s.waitLog(`msg="tokens file reloaded"`)
	first := s.publish("x", "0")

	done := make(chan string, 2)
	go func() {
		out, errOut, err := runClientCLI(t, t.Context(), clientEnvOf(s, testToken), "", "tail", "-since", first, "-count", "2", "-format", "plain")
		assert.NoError(t, err, errOut)
		assert.Contains(t, errOut, "subscribed to *")
		done <- out
	}()
	jwt := mint(t, "-subscribe", "order.*", "-ttl", "1m")
	go func() {
		out, errOut, err := runClientCLI(t, t.Context(), clientEnvOf(s, jwt), "", "tail", "-since", first, "-count", "1", "-format", "plain", "-quiet")
		assert.NoError(t, err, errOut)
		assert.Empty(t, errOut)
		done <- out
	}()
	s.publish("y", "1")
	s.publish("order.paid", "2")
	got := []string{<-done, <-done}
	assert.ElementsMatch(t, []string{"y 1\norder.paid 2\n", "order.paid 2\n"}, got)

	_, _, err := runClientCLI(t, t.Context(), clientEnvOf(s, limited), "", "tail")
	require.Error(t, err)
	assert.Equal(t, exitAuth, exitCode(err))
	assert.Contains(t, err.Error(), `tail: the server refused * (FORBIDDEN: this token may not subscribe to "*"`)
	assert.Contains(t, err.Error(), "or the server has no wildcard subscriptions; name the events: eventsrv sub NAME")
	_, _, err = runClientCLI(t, t.Context(), clientEnvOf(s, mint(t, "-publish", "a", "-ttl", "1m")), "", "tail")
	assert.Equal(t, exitAuth, exitCode(err))
	assert.ErrorContains(t, err, "subscribe claim names no event")
}

// The exit statuses tell a usage error (2), a refused token (3) and an
// unreachable server (4) from other failures (1).
func TestCLIClientExitCodes(t *testing.T) {
	clNoLeaks(t)
	s := startServer(t, map[string]string{"MAX_EVENT_NAME_BYTES": "8"})
	good := clientEnvOf(s, testToken)
	bad := clientEnvOf(s, "unknown-token-0123456789")
	down := map[string]string{"EVENTSRV_URL": "http://" + reservePort(t), "EVENTSRV_TOKEN": testToken}
	for _, tc := range []struct {
		env  map[string]string
		args []string
		code int
		want string
	}{
		{good, []string{"pub"}, 2, `pub: give EVENT and optionally JSON`},
		{good, []string{"pub", "a", "1", "2"}, 2, `pub: give EVENT and optionally JSON`},
		{good, []string{"pub", "a", "{"}, 2, `pub: "{" is not JSON`},
		{good, []string{"pub", "-x", "a"}, 2, `pub: flag provided but not defined: -x; eventsrv pub -h shows the usage`},
		{map[string]string{}, []string{"pub", "a", "1"}, 2, `pub: no token: set EVENTSRV_TOKEN`},
		{good, []string{"pub", "-url", "ftp://x", "a", "1"}, 2, `the scheme must be http or https`},
		{good, []string{"sub"}, 2, `sub: name at least one event`},
		{good, []string{"sub", "-format", "xml", "a"}, 2, `sub: -format "xml": json or plain`},
		{good, []string{"tail", "a"}, 2, `tail: unexpected argument "a"`},
		{good, []string{"sub", "-cacert", "/nonexistent", "a"}, 2, `sub: -cacert`},
		{bad, []string{"pub", "a", "1"}, 3, `UNAUTHENTICATED`},
		{bad, []string{"sub", "a"}, 3, `UNAUTHENTICATED`},
		{good, []string{"pub", "a-long-name", "1"}, 1, `EVENT_NAME_TOO_LONG`},
		{down, []string{"pub", "-timeout", "300ms", "a", "1"}, 4, `server unreachable`},
		{down, []string{"sub", "a"}, 4, `server unreachable`},
		{down, []string{"tail"}, 4, `server unreachable`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, _, err := runClientCLI(t, t.Context(), tc.env, "", tc.args...)
			require.Error(t, err)
			assert.Equal(t, tc.code, exitCode(err), "%v", err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Empty(t, out)
		})
	}
	// A flag after the event, and "--" before a name that starts with "-".
	out, _, err := runClientCLI(t, t.Context(), good, "", "pub", "a", "1", "-timeout", "5s")
	require.NoError(t, err)
	assert.Regexp(t, cliID, strings.TrimSpace(out))
	out, _, err = runClientCLI(t, t.Context(), good, "", "pub", "--", "-a", "1")
	require.NoError(t, err)
	assert.Regexp(t, cliID, strings.TrimSpace(out))
	// EVENTSRV_TOKEN may say its scheme.
	_, _, err = runClientCLI(t, t.Context(), clientEnvOf(s, "Basic "+testToken), "", "pub", "a", "1")
	require.NoError(t, err)
}

func TestCLIClientHelp(t *testing.T) {
	for _, cmd := range []string{"pub", "sub", "tail"} {
		out, errOut, err := runCLI(t, nil, cmd, "-h")
		require.NoError(t, err)
		assert.Empty(t, errOut)
		for _, want := range []string{"usage: eventsrv " + cmd, "EVENTSRV_URL", "EVENTSRV_BROADCAST_URL", "EVENTSRV_TOKEN",
			"Exit status: 0 done, 1 another failure", "3 the token was refused", "4 the server is unreachable", "  -token token"} {
			assert.Contains(t, out, want, cmd)
		}
		for _, line := range strings.Split(out, "\n") {
			assert.LessOrEqual(t, len([]rune(line)), 100, "%s: line too long: %q", cmd, line)
		}
	}
	out, _, _ := runCLI(t, nil, "sub", "-h")
	for _, want := range []string{"-since ID", "-format format", "-count", `{"type":"reset"}`, "resumes"} {
		assert.Contains(t, out, want)
	}
	out, _, _ = runCLI(t, nil, "help")
	assert.Contains(t, out, "exit 3 when\nthe token is refused and 4 when the server is unreachable")
	for _, line := range parseCredentialCases {
		assert.Equal(t, line.want, parseCredential(line.in), line.in)
	}
}

var parseCredentialCases = []struct {
	in   string
	want credential
}{
	{"abc", credential{"abc", false}},
	{"Basic abc", credential{"abc", false}},
	{"Bearer abc", credential{"abc", true}},
	{"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln", credential{"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln", true}},
	{"a.b.c", credential{"a.b.c", false}},
	{" tok \n", credential{"tok", false}},
}

// buildEventsrv builds the binary as the README test does, into a
// temporary folder, and returns its path.
func buildEventsrv(t *testing.T, pkgs ...string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH to build eventsrv with")
	}
	dir := t.TempDir()
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, buildTags()...)
	build := exec.CommandContext(t.Context(), goTool, append(args, pkgs...)...)
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, msg)
	}
	return dir
}

// proc is a process the test started, with its stdout as lines.
type proc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *syncBuffer
	done   chan error
}

// syncBuffer is a buffer that a process's stderr and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// wrote is signalled at every write
	wrote chan struct{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.wrote <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer holds s.
func (b *syncBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for !strings.Contains(b.String(), s) {
		select {
		case <-b.wrote:
		case <-timeout:
			t.Fatalf("never printed %q; printed:\n%s", s, b.String())
		}
	}
}

// startProc starts name with args and env in the background; it is
// killed at cleanup if it is still running.
func startProc(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	p := &proc{cmd: cmd, lines: make(chan string, 1000), stderr: &syncBuffer{wrote: make(chan struct{}, 1)}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for range p.lines {
		}
	})
	return p
}

// line returns the process's next line of output.
func (p *proc) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		require.True(t, ok, "the process ended; stderr:\n%s", p.stderr)
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("no output; stderr:\n%s", p.stderr)
		return ""
	}
}

// wait waits for the process to end and returns its exit status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	for range p.lines {
	}
	select {
	case err := <-p.done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		require.NoError(t, err)
		return 0
	case <-time.After(30 * time.Second):
		t.Fatal("the process did not end")
		return -1
	}
}

// The README's promise, through the built binary: what `echo '{"id":1}' |
// eventsrv pub order.created` sends, `eventsrv sub order.created` shows;
// sub ends with 0 on SIGINT, and the exit statuses reach the shell.
func TestCLIPubFeedsSubThroughTheBinary(t *testing.T) {
	clNoLeaks(t)
	bin := buildEventsrv(t, "./cmd/eventsrv")
	s := startServer(t, nil)
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"EVENTSRV_URL="+s.listenURL, "EVENTSRV_BROADCAST_URL="+s.wsURL, "EVENTSRV_TOKEN="+testToken)

	sub := startProc(t, env, filepath.Join(bin, "eventsrv"), "sub", "order.created")
	sub.stderr.waitFor(t, "eventsrv sub: subscribed to order.created")

	pub := exec.Command("bash", "-c", `echo '{"id":1}' | eventsrv pub order.created && printf '{"id":2}\n{"id":3}\n' | eventsrv pub order.created`)
	pub.Env = env
	out, err := pub.CombinedOutput()
	require.NoError(t, err, "%s", out)
	ids := strings.Fields(string(out))
	require.Len(t, ids, 3, "%s", out)
	for i, id := range ids {
		assert.Equal(t, `{"type":"event","id":"`+id+`","event":"order.created","data":{"id":`+string(rune('1'+i))+`}}`, sub.line(t))
	}
	require.NoError(t, sub.cmd.Process.Signal(syscall.SIGINT))
	assert.Equal(t, 0, sub.wait(t), "interrupted: success")

	for _, tc := range []struct {
		env  []string
		code int
	}{
		{append(slices.Clip(env), "EVENTSRV_TOKEN=unknown-token-0123456789"), exitAuth},
		{append(slices.Clip(env), "EVENTSRV_URL=http://"+reservePort(t)), exitUnreachable},
	} {
		cmd := exec.Command(filepath.Join(bin, "eventsrv"), "pub", "-timeout", "500ms", "a", "1")
		cmd.Env = tc.env
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.True(t, errors.As(err, &exit), "%v %s", err, out)
		assert.Equal(t, tc.code, exit.ExitCode(), "%s", out)
		assert.True(t, strings.HasPrefix(string(out), "eventsrv: publish \"a\": "), "%s", out)
	}
}
