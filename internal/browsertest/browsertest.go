// Package browsertest finds what the browser tests need (node, Debian's
// Chromium, playwright-core from npm): a test without them skips, and
// under CI (CI set, as .ci/run does) fails, so that a missing tool is never
// a silent pass there.
package browsertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Need skips t, or fails it under CI, saying what is missing.
func Need(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// Node returns the node binary's path.
func Node(t testing.TB) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		Need(t, "this browser test needs node (apt-get install -y nodejs npm)")
	}
	return node
}

// Chromium returns Chromium's path: CHROMIUM, or Debian's /usr/bin/chromium.
func Chromium(t testing.TB) string {
	t.Helper()
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		Need(t, "this browser test needs Chromium at %s (apt-get install -y chromium)", chromium)
	}
	return chromium
}

// Playwright checks that `npm ci` has installed playwright-core in dir
// (console/e2e, whose package-lock.json every browser test shares).
func Playwright(t testing.TB, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err != nil {
		Need(t, "this browser test needs playwright-core: run npm ci --prefix console/e2e")
	}
}
