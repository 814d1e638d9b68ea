package console_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"eventsrv/internal/browsertest"
)

// TestConsoleInBrowser runs the console's browser tests (e2e/console.test.mjs,
// node's test runner driving Debian's Chromium with playwright-core) against
// the real eventsrv binary, built here and started on free loopback ports.
//
// It needs node, Chromium (/usr/bin/chromium, or CHROMIUM) and `npm ci` in
// console/e2e; without them it skips, and under CI it fails. Screenshots go
// to console/e2e/screenshots (or CONSOLE_SCREENSHOTS).
//
// The node script restarts the server through a small control endpoint that
// this test serves (POST /restart?NAME=VALUE…), so that the server's process
// stays this test's to start, stop and clean up.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser tests take a minute; not with -short")
	}
	node, chromium := browsertest.Node(t), browsertest.Chromium(t)
	e2e, err := filepath.Abs("e2e")
	if err != nil {
		t.Fatal(err)
	}
	browsertest.Playwright(t, e2e)
	if _, err := exec.LookPath("curl"); err != nil {
		browsertest.Need(t, "the browser tests post events and stream tasks with curl")
	}
	shots := os.Getenv("CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(e2e, "screenshots")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "eventsrv")
	build := exec.Command(goTool(), "build", "-o", bin, "eventsrv/cmd/eventsrv")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	full, admin := randomToken(t), randomToken(t)
	tokens := full + "\n" + admin + " admin\n"
	tokensFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokensFile, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := randomToken(t) + randomToken(t)
	jwt := exec.Command(bin, "jwt", "-sub", "browser-7", "-subscribe", "order.*", "-publish", "order.*", "-ttl", "30m")
	jwt.Env = append(os.Environ(), "JWT_SECRET="+secret)
	out, err := jwt.Output()
	if err != nil {
		t.Fatalf("eventsrv jwt: %v", err)
	}
	scoped := strings.TrimSpace(string(out))

	srv := &eventsrv{
		t:   t,
		bin: bin,
		dir: dir,
		env: map[string]string{
			"BIND_ADDRESS":    "127.0.0.1",
			"METRICS_ADDRESS": "off",
			"TOKENS_FILE":     tokensFile,
			"JWT_SECRET":      secret,
			"LOG_LEVEL":       "debug",
		},
	}
	t.Cleanup(srv.stop)
	// A port found free may be taken by another test before the server
	// binds it: then try others.
	for attempt := 1; ; attempt++ {
		srv.env["LISTEN_PORT"], srv.env["BROADCAST_PORT"] = strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
		err := srv.startErr(nil)
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		srv.stop()
	}

	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/restart" {
			http.Error(w, "POST /restart?NAME=VALUE", http.StatusNotFound)
			return
		}
		extra := map[string]string{}
		for k, v := range r.URL.Query() {
			extra[k] = v[0]
		}
		srv.stop()
		if err := srv.startErr(extra); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "restarted")
	}))
	defer control.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-concurrency=1", "--test-reporter=spec", "console.test.mjs")
	cmd.Dir = e2e
	cmd.Env = append(os.Environ(),
		"EVENTSRV_LISTEN_URL=http://127.0.0.1:"+srv.env["LISTEN_PORT"],
		"EVENTSRV_BROADCAST_URL=ws://127.0.0.1:"+srv.env["BROADCAST_PORT"]+"/",
		"EVENTSRV_CONTROL_URL="+control.URL,
		"TOKEN_FULL="+full,
		"TOKEN_ADMIN="+admin,
		"TOKEN_SCOPED="+scoped,
		"CHROMIUM="+chromium,
		"SCREENSHOTS="+shots,
		"NO_COLOR=1",
	)
	cmd.WaitDelay = 10 * time.Second
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	began := time.Now()
	err = cmd.Run()
	t.Logf("browser tests (%s):\n%s", time.Since(began).Round(time.Second), output.String())
	if err != nil {
		t.Errorf("browser tests failed: %v\nserver log:\n%s", err, srv.log())
	}
	logText := srv.log()
	for name, secret := range map[string]string{"full": full, "admin": admin, "scoped JWT": scoped} {
		if strings.Contains(logText, secret) {
			t.Errorf("the %s token reached the server's log", name)
		}
	}
}

// eventsrv is the server binary, run as a process.
type eventsrv struct {
	t   *testing.T
	bin string
	dir string
	env map[string]string

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{}

	logMu sync.Mutex
	logs  bytes.Buffer // every run's output
}

// startErr starts the server with its settings and extra, and waits until
// both ports answer /healthz.
func (s *eventsrv) startErr(extra map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir}
	for k, v := range s.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range extra {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	w := &lockedWriter{mu: &s.logMu, b: &s.logs}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for _, port := range []string{s.env["LISTEN_PORT"], s.env["BROADCAST_PORT"]} {
		for {
			resp, err := client.Get("http://127.0.0.1:" + port + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-done:
				return fmt.Errorf("eventsrv exited at start:\n%s", s.log())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("eventsrv did not answer on port %s:\n%s", port, s.log())
			}
		}
	}
	return nil
}

// stop ends the server as an operator would (SIGTERM), and kills it if it
// has not stopped within 15 s.
func (s *eventsrv) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		s.t.Errorf("eventsrv did not stop within 15 s of SIGTERM")
	}
}

func (s *eventsrv) log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// goTool is the go command that runs this test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

func randomToken(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freePort is a loopback port that was free a moment ago: the server is
// restarted on the same ports, so they are chosen here rather than by the
// server (port 0).
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
