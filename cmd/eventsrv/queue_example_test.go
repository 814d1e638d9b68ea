package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/internal/browsertest"
)

// examples/queue in Chromium (#15): two operators' pages against the real
// server, driven by examples/queue/e2e/queue.test.mjs (node's test runner
// and playwright-core): take-free when a task waits, an offer with its
// countdown, reject and the other page gets it, assign, done, a forced
// task shown assigned, an offer left for OFFER_TIMEOUT (4 s here) re-offered
// to the other page, and the Take button.
//
// It needs node, Chromium (/usr/bin/chromium, or CHROMIUM) and the
// playwright-core that `npm ci --prefix console/e2e` installs; without
// them it skips, and under CI it fails. Screenshots go to
// examples/queue/e2e/screenshots (or QUEUE_SCREENSHOTS).
func TestExampleQueuePage(t *testing.T) {
	if testing.Short() {
		t.Skip("Chromium takes seconds to start; not with -short")
	}
	node, chromium := browsertest.Node(t), browsertest.Chromium(t)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	browsertest.Playwright(t, filepath.Join(root, "console", "e2e"))
	playwright := filepath.Join(root, "console", "e2e", "node_modules", "playwright-core")
	shots := os.Getenv("QUEUE_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(root, "examples", "queue", "e2e", "screenshots")
	}
	clNoLeaks(t)

	const offerTimeout = 4 * time.Second
	bin := buildEventsrv(t, "./examples/queue")
	pageAddr := reservePort(t)
	s := startServer(t, map[string]string{"JWT_SECRET": jwtSecret, "CORS_ALLOWED_ORIGINS": "http://" + pageAddr,
		"OFFER_TIMEOUT": offerTimeout.String()})
	page := startProc(t, append(examplesEnv(s), "EVENTSRV_BROADCAST_URL="+s.wsURL, "JWT_SECRET="+jwtSecret, "ADDR="+pageAddr,
		"QUEUE=tickets", "OFFER_TIMEOUT="+offerTimeout.String(), "TOKEN_TTL=10m"),
		filepath.Join(bin, "queue"))
	assert.Contains(t, page.line(t), "serving http://"+pageAddr+"/")

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "queue.test.mjs")
	cmd.Dir = filepath.Join(root, "examples", "queue", "e2e")
	cmd.Env = append(os.Environ(),
		"PAGE_URL=http://"+pageAddr,
		"EVENTSRV_LISTEN_URL="+s.listenURL,
		"EVENTSRV_TOKEN="+testToken,
		"EVENTSRV_METRICS_URL="+s.metricsURL(),
		"QUEUE=tickets",
		"OFFER_TIMEOUT_MS="+strconv.FormatInt(offerTimeout.Milliseconds(), 10),
		"CHROMIUM="+chromium,
		"PLAYWRIGHT_CORE="+playwright,
		"SCREENSHOTS="+shots,
		"NO_COLOR=1",
	)
	cmd.WaitDelay = 10 * time.Second
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	began := time.Now()
	err = cmd.Run()
	t.Logf("browser test (%s):\n%s", time.Since(began).Round(100*time.Millisecond), output.String())
	if err != nil {
		t.Errorf("browser test failed: %v\nbackend's stderr:\n%s", err, page.stderr)
	}
	assert.NotContains(t, s.logs.String(), "eyJ", "no JWT reached the server's log")
	assert.False(t, strings.Contains(output.String(), testToken), "the backend's token stays out of the output")
}
