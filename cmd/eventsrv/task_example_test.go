package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// examples/task-progress.sh, as the README shows it: a job's progress piped
// to the local socket with curl, seen by a subscriber of task.*.
func TestTaskProgressExample(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("the example needs curl, which .ci/run installs")
		}
		t.Skip("the example needs curl")
	}
	socket := filepath.Join(t.TempDir(), "eventsrv.sock")
	s := startServer(t, map[string]string{"LISTEN_SOCKET": socket})
	c := s.subscribe("task.*")
	cmd := exec.Command("sh", "../../examples/task-progress.sh")
	cmd.Env = append(os.Environ(), "EVENTSRV_SOCKET="+socket, "STEP_SECONDS=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Regexp(t, `^\{"code":"OK","id":"[0-9a-f]{12}","event":"task\.[0-9a-f]{12}","state":"done"\}\n\n$`, string(out))

	_, data := readTaskEvent(t, c)
	assert.Equal(t, "Resize 4 images", data["title"])
	for _, want := range []float64{0.25, 0.5, 0.75, 1} {
		_, data = readTaskEvent(t, c)
		assert.Equal(t, want, data["progress"])
	}
	assert.Equal(t, "image 4 of 4 done", data["message"])
	_, data = readTaskEvent(t, c)
	assert.Equal(t, "done", data["state"])
}
