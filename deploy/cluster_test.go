package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// walkthroughMarker precedes the README's cluster walk-through: a fenced sh
// block run in a second shell while deploy/cluster.sh runs in the first.
const walkthroughMarker = "<!-- cluster.sh walk-through: deploy/cluster_test.go runs it -->"

// readmeWork is the WORK directory the README starts cluster.sh with; the
// test gives its own.
const readmeWork = "/tmp/cluster"

// TestClusterWalkthrough runs the README's cluster walk-through as a user
// would: deploy/cluster.sh builds nats-server (from go.mod) and eventsrv,
// starts 3 NATS nodes and 3 instances from those binaries, and runs the
// walk-through's commands, which post to instance 1 and 2, read the events
// on instance 3, kill instance 3 and resume on instance 2. The output must
// show what the README's comments in the block say, in that order ("…"
// stands for any text, and any run of digits for any other).
//
// Ports are free ones, not the README's (NATS_PORT and EVENTSRV_PORT); a
// start that loses a port to another program meanwhile is tried again on
// others. The builds reuse Go's build cache: the first run compiles
// nats-server (a minute or two here), later ones only link.
func TestClusterWalkthrough(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("deploy/cluster.sh needs bash")
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block, err := walkthrough(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("cluster.sh")
	if err != nil {
		t.Fatal(err)
	}
	var out string
	for attempt := 1; ; attempt++ {
		var portLost bool
		out, portLost = runWalkthrough(t, bash, script, block)
		if !portLost || attempt == 3 {
			break
		}
		t.Logf("a port was taken meanwhile; trying others\n%s", out)
	}
	if err := matchComments(block, out); err != nil {
		t.Fatalf("%v\noutput:\n%s", err, out)
	}
	t.Logf("output:\n%s", out)
}

// runWalkthrough runs cluster.sh with the block as its command, on free
// ports, and returns everything printed; portLost says that a server could
// not start, most likely because a port was taken meanwhile.
func runWalkthrough(t *testing.T, bash, script, block string) (string, bool) {
	t.Helper()
	work := filepath.Join(t.TempDir(), "cluster")
	dir := t.TempDir()
	natsPort := freePorts(t, []int{0, 1, 2, 2000, 2001, 2002, 4000, 4001, 4002})
	eventsrvPort := freePorts(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, script, bash, "-euo", "pipefail", "-c",
		strings.ReplaceAll(block, readmeWork, work))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WORK="+work, "NATS_PORT="+strconv.Itoa(natsPort),
		"EVENTSRV_PORT="+strconv.Itoa(eventsrvPort), "PATH="+goPath())
	// On timeout, TERM: the script's trap stops what it started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	err := cmd.Run()
	t.Logf("cluster.sh ran for %s", time.Since(start).Round(time.Millisecond))
	out := buf.String()
	if err != nil {
		if strings.Contains(out, "exited (a port in use?)") {
			return out, true
		}
		t.Fatalf("cluster.sh: %v\n%s\nlogs:\n%s", err, out, logs(work))
	}
	// Nothing of the cluster is left running: its pids are gone.
	if env, err := os.ReadFile(filepath.Join(work, "env")); err == nil {
		for _, m := range regexp.MustCompile(`_PID_[0-9]=([0-9]+)`).FindAllStringSubmatch(string(env), -1) {
			pid, _ := strconv.Atoi(m[1])
			if syscall.Kill(pid, 0) == nil {
				t.Errorf("pid %d still runs after cluster.sh exited", pid)
			}
		}
	} else {
		t.Errorf("cluster.sh wrote no env file: %v", err)
	}
	return out, false
}

// walkthrough is the fenced sh block after walkthroughMarker.
func walkthrough(readme string) (string, error) {
	_, after, ok := strings.Cut(readme, walkthroughMarker+"\n")
	if !ok {
		return "", fmt.Errorf("README.md has no line %q", walkthroughMarker)
	}
	body, ok := strings.CutPrefix(after, "```sh\n")
	if !ok {
		return "", fmt.Errorf("no ```sh block right after %q", walkthroughMarker)
	}
	block, _, ok := strings.Cut(body, "```\n")
	if !ok {
		return "", fmt.Errorf("the block after %q does not end", walkthroughMarker)
	}
	return block, nil
}

// matchComments checks that out shows each whole-line comment of block, in
// order: "…" is any text, and a run of digits any run of digits.
func matchComments(block, out string) error {
	digits := regexp.MustCompile(`[0-9]+`)
	rest := out
	for _, line := range strings.Split(block, "\n") {
		want, ok := strings.CutPrefix(strings.TrimSpace(line), "# ")
		if !ok {
			continue
		}
		var re strings.Builder
		for i, part := range strings.Split(want, "…") {
			if i > 0 {
				re.WriteString(`.*`)
			}
			re.WriteString(digits.ReplaceAllString(regexp.QuoteMeta(part), `[0-9]+`))
		}
		loc := regexp.MustCompile(re.String()).FindStringIndex(rest)
		if loc == nil {
			return fmt.Errorf("the output does not show %q (after what came before)", want)
		}
		rest = rest[loc[1]:]
	}
	return nil
}

// freePorts returns a base port such that base+offset is free on 127.0.0.1
// for every offset, chosen below the kernel's ephemeral range (where no
// outgoing connection takes it meanwhile).
func freePorts(t *testing.T, offsets []int) int {
	t.Helper()
	for range 200 {
		base := 10000 + rand.IntN(20000)
		free := true
		for _, o := range offsets {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+o))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free ports found")
	return 0
}

// goPath is PATH with the go tool that runs this test in front, for the
// script's builds.
func goPath() string {
	return filepath.Join(runtime.GOROOT(), "bin") + string(os.PathListSeparator) + os.Getenv("PATH")
}

// logs is the end of every log in the cluster's work directory.
func logs(work string) string {
	files, _ := filepath.Glob(filepath.Join(work, "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "== %s\n%s\n", f, data)
	}
	return b.String()
}
