//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestREADME runs the README's runnable shell blocks, in order, in one
// bash session, against a binary built from this checkout, and checks
// the output they show. A README example that stops working fails CI.
//
// Which blocks run: a fenced sh block right after a line `<!-- test -->`
// (GitHub does not show the comment). `<!-- test: second terminal -->`
// marks a block the reader runs beside the others, such as a subscriber
// that prints events as later blocks publish them: it runs in the
// background, the next block starts once it has printed its first line,
// and its output is checked at the end, after the blocks have stopped the
// server (which ends its stream).
//
// What is checked: every command exits 0 (bash -e -u -o pipefail), and a
// whole-line comment in a block is output the block must print, in that
// order, not necessarily on a line of its own (JSON answers need not end
// with a newline). In a comment, "…" stands for any text on the line and
// every run of digits for any run of digits, so IDs, times and versions
// may differ. Notes for the reader go at the end of a command's line.
// Whatever the comments say, some block must get {"code":"OK","id":…}
// from POST /event.
//
// Ports: the server listens on free ports, not on 8080, 8081 and 8082,
// which another program (or another test run) may hold; a test that skips
// when they are taken would be skipped where it matters. The README keeps
// the ports a reader uses: the test sets LISTEN_PORT, BROADCAST_PORT and
// METRICS_ADDRESS in the session's environment, which the server and
// eventsrv healthcheck read, and rewrites ":8080", ":8081" and ":8082" in
// the blocks to the free ports. Other settings from the environment
// running the test are removed.
//
// Waiting: the harness adds two waits a reader does without noticing.
// After a line that starts eventsrv in the background it polls
// `eventsrv healthcheck` until the server answers; after `kill -HUP` it
// waits for the server to log that it re-read the tokens file.
//
// It runs in a fresh folder holding the binary, so `./eventsrv` and
// `eventsrv` both work and the first start creates tokens/tokens there.
// The README's own build command is not run: it would write into the
// checkout; the test builds the same package instead. The blocks take
// about two seconds; the build, once its packages are cached, a few more.
func TestREADME(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH to build eventsrv with")
	}
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			// .ci/run installs them: in CI a skip would hide a README
			// that no longer works.
			if os.Getenv("CI") != "" {
				t.Fatalf("the README's examples need %s, which is not on PATH (.ci/run installs it)", tool)
			}
			t.Skipf("the README's examples need %s, which is not on PATH", tool)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	blocks, err := readmeBlocks(string(readme))
	require.NoError(t, err)
	require.NotEmpty(t, blocks, "README.md marks no shell block with <!-- test -->")

	work, out := t.TempDir(), t.TempDir()
	ctx := t.Context()
	// Built as the Dockerfile builds it, CGO_ENABLED=0 and without -race
	// even under go test -race: a race-instrumented binary starts ten times
	// slower, and the blocks start it a dozen times. CI's next step,
	// CGO_ENABLED=0 go test, reuses the packages compiled here.
	args := append([]string{"build", "-o", filepath.Join(work, "eventsrv")}, buildTags()...)
	build := exec.CommandContext(ctx, goTool, append(args, ".")...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, msg)
	}

	ports := freePorts(t, 3)
	rewrite := strings.NewReplacer(":8080", ":"+ports[0], ":8081", ":"+ports[1], ":8082", ":"+ports[2])
	script := readmeScript(blocks, rewrite)
	scriptPath := filepath.Join(out, "readme.sh")
	require.NoError(t, os.WriteFile(scriptPath, []byte(script), 0o600))

	env := []string{
		"PATH=" + work + string(os.PathListSeparator) + os.Getenv("PATH"),
		"LISTEN_PORT=" + ports[0],
		"BROADCAST_PORT=" + ports[1],
		"METRICS_ADDRESS=127.0.0.1:" + ports[2],
		"README_OUT=" + out,
	}
	env = append(env, environWithout(settingNames())...)
	logPath := filepath.Join(out, "stderr.log")
	stderr, err := os.Create(logPath)
	require.NoError(t, err)
	defer stderr.Close()
	stdout, err := os.Create(filepath.Join(out, "stdout.log"))
	require.NoError(t, err)
	defer stdout.Close()

	// Files, not buffers, for output: exec then starts no copying
	// goroutines, and nothing waits on a pipe that a server left running
	// would hold open.
	runCtx, stop := context.WithTimeout(ctx, 60*time.Second)
	defer stop()
	cmd := exec.CommandContext(runCtx, "bash", scriptPath)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = work, env, stdout, stderr
	// Its own process group, so that the servers and subscribers the blocks
	// start in the background are stopped with it, whatever happens.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	require.NoError(t, cmd.Start())
	runErr := cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything left behind; ESRCH when nothing is
	t.Logf("README blocks ran in %v", time.Since(start).Round(time.Millisecond))

	if runErr != nil {
		current, _ := os.ReadFile(filepath.Join(out, "current"))
		n, err := strconv.Atoi(strings.TrimSpace(string(current)))
		if err != nil {
			n = -1 // before the first block, or after the last
		}
		what := "failed"
		if errors.Is(runCtx.Err(), context.DeadlineExceeded) {
			what = "was still running after 60 s"
		}
		if n >= 0 && n < len(blocks) {
			b := blocks[n]
			blockOut, _ := os.ReadFile(filepath.Join(out, fmt.Sprintf("out-%d", n)))
			log, _ := os.ReadFile(logPath)
			t.Fatalf("README.md:%d: this block %s (%v):\n%s\nits output:\n%s\nstderr of the session (the server's log too):\n%s",
				b.line, what, runErr, b.text, blockOut, log)
		}
		log, _ := os.ReadFile(logPath)
		t.Fatalf("the README session %s (%v):\n%s", what, runErr, log)
	}

	published := regexp.MustCompile(`\{"code":"OK","id":"[0-9]+-[0-9]+"\}`)
	var sawPublish bool
	for i, b := range blocks {
		got, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("out-%d", i)))
		require.NoError(t, err)
		sawPublish = sawPublish || published.Match(got)
		if err := matchExpected(string(got), b.expected); err != nil {
			t.Errorf("README.md:%d: %v\nthe block:\n%s\nits output:\n%s", b.line, err, b.text, got)
		}
	}
	require.True(t, sawPublish, `no README block got {"code":"OK","id":"…"} from POST /event`)
}

// buildTags returns the -tags this test binary was built with (such as
// pprof), so that the binary the README runs is built from the same files.
func buildTags() []string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	for _, s := range bi.Settings {
		if s.Key == "-tags" && s.Value != "" {
			return []string{"-tags=" + s.Value}
		}
	}
	return nil
}

// readmeBlock is one runnable shell block of the README.
type readmeBlock struct {
	line       int      // of its opening fence, 1-based
	text       string   // the commands, as written
	background bool     // run beside the others (a second terminal)
	expected   []string // its whole-line comments, without "# "
}

var (
	testMarker = regexp.MustCompile(`^<!--\s*test(:\s*second terminal)?\s*-->\s*$`)
	shFence    = regexp.MustCompile("^```(sh|bash|shell)\\b")
)

// readmeBlocks returns the README's marked blocks, in order. A marker not
// followed by a shell fence is an error, so that a marked example cannot
// silently drop out.
func readmeBlocks(readme string) ([]readmeBlock, error) {
	lines := strings.Split(readme, "\n")
	var blocks []readmeBlock
	for i := 0; i < len(lines); i++ {
		m := testMarker.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		if i+1 >= len(lines) || !shFence.MatchString(lines[i+1]) {
			return nil, fmt.Errorf("README.md:%d: %s is not followed by a ```sh block", i+1, lines[i])
		}
		b := readmeBlock{line: i + 2, background: m[1] != ""}
		var body []string
		j := i + 2
		for ; j < len(lines) && !strings.HasPrefix(lines[j], "```"); j++ {
			body = append(body, lines[j])
			if c, ok := strings.CutPrefix(lines[j], "#"); ok {
				if c = strings.TrimSpace(c); c != "" {
					b.expected = append(b.expected, c)
				}
			}
		}
		if j == len(lines) {
			return nil, fmt.Errorf("README.md:%d: the block never ends", b.line)
		}
		b.text = strings.Join(body, "\n")
		blocks = append(blocks, b)
		i = j
	}
	return blocks, nil
}

var (
	// startsServer matches a line that starts eventsrv in the background.
	startsServer = regexp.MustCompile(`(?:^|\s)(?:\S*/)?eventsrv(?:\s[^&#]*)?&(?:\s|$)`)
	sendsHUP     = regexp.MustCompile(`\bkill\s+-(?:s\s+)?(?:SIG)?HUP\b`)
)

// readmeHelpers are the harness's shell functions; README_OUT is the
// folder for its files, outside the blocks' working folder.
const readmeHelpers = `set -euo pipefail
_fail() { echo "README test: $*" >&2; exit 1; }
_await_server() { # pid: poll until the server started in the background answers /healthz
	for _ in $(seq 400); do
		if eventsrv healthcheck 2>/dev/null; then return 0; fi
		kill -0 "$1" 2>/dev/null || _fail "eventsrv (pid $1) exited before it served"
		sleep 0.025
	done
	_fail "eventsrv (pid $1) did not answer /healthz within 10 s"
}
_reloads() { grep -cE 'tokens file (reloaded|unchanged)|reload on SIGHUP failed' "$README_OUT/stderr.log" || true; }
_await_reload() { # count before the SIGHUP: poll until the server logs one more
	for _ in $(seq 400); do
		[ "$(_reloads)" -gt "$1" ] && return 0
		sleep 0.025
	done
	_fail "eventsrv did not re-read the tokens file within 10 s of SIGHUP"
}
_await_output() { # file pid: poll until the background block printed something
	for _ in $(seq 400); do
		[ -s "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || _fail "the background block ended without output"
		sleep 0.025
	done
	_fail "the background block printed nothing within 10 s"
}
_on_exit() {
	local rc=$? pids
	trap - EXIT
	set +e
	if [ "$rc" -eq 0 ]; then
		# Background blocks end when the blocks stop the server: give them
		# time to print the end of their streams.
		for _ in $(seq 200); do
			[ -z "$(jobs -pr)" ] && break
			sleep 0.025
		done
	fi
	pids=$(jobs -pr)
	[ -n "$pids" ] && kill $pids 2>/dev/null
	wait
	exit "$rc"
}
trap _on_exit EXIT
`

// readmeScript turns blocks into one bash script that runs them in order,
// each block's stdout to README_OUT/out-N, with the waits described on
// TestREADME.
func readmeScript(blocks []readmeBlock, rewrite *strings.Replacer) string {
	var s strings.Builder
	s.WriteString(readmeHelpers)
	for i, b := range blocks {
		outFile := fmt.Sprintf(`"$README_OUT/out-%d"`, i)
		fmt.Fprintf(&s, "\n# README.md:%d\necho %d > \"$README_OUT/current\"\n", b.line, i)
		if b.background {
			s.WriteString("(\n")
		} else {
			s.WriteString("{\n")
		}
		for _, line := range strings.Split(rewrite.Replace(b.text), "\n") {
			hup := sendsHUP.MatchString(line)
			if hup {
				s.WriteString("_n=$(_reloads)\n")
			}
			s.WriteString(line + "\n")
			if hup {
				s.WriteString("_await_reload \"$_n\"\n")
			}
			if startsServer.MatchString(line) {
				s.WriteString("_await_server \"$!\"\n")
			}
		}
		if b.background {
			fmt.Fprintf(&s, ") >%s &\n_await_output %s \"$!\"\n", outFile, outFile)
		} else {
			fmt.Fprintf(&s, "} >%s\n", outFile)
		}
	}
	s.WriteString("echo done > \"$README_OUT/current\"\n")
	return s.String()
}

var digits = regexp.MustCompile(`[0-9]+`)

// matchExpected checks that got contains each of expected in order, "…"
// matching any text on a line and a run of digits any run of digits.
func matchExpected(got string, expected []string) error {
	rest := got
	for _, e := range expected {
		parts := strings.Split(e, "…")
		for i, p := range parts {
			parts[i] = digits.ReplaceAllString(regexp.QuoteMeta(p), `[0-9]+`)
		}
		re := regexp.MustCompile(strings.Join(parts, `[^\n]*?`))
		loc := re.FindStringIndex(rest)
		if loc == nil {
			return fmt.Errorf("the output lacks %q (or has it before what the comments above it show)", e)
		}
		rest = rest[loc[1]:]
	}
	return nil
}

// freePorts returns n TCP ports that were free a moment ago.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	for range n {
		ln, err := net.Listen("tcp", ":0")
		require.NoError(t, err)
		defer ln.Close()
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports
}

// settingNames lists every variable eventsrv reads.
func settingNames() map[string]bool {
	names := map[string]bool{}
	for _, s := range settings() {
		names[s.name] = true
	}
	return names
}

// environWithout is the test's environment without the variables in drop.
func environWithout(drop map[string]bool) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] && k != "PATH" {
			env = append(env, kv)
		}
	}
	return env
}
