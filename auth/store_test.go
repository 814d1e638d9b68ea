package auth

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeFileAtomic replaces path's content in one step (write a temporary
// file, rename it over path), so that a concurrent reader never sees a
// half-written file.
func writeFileAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// tokenLines returns the lines of a tokens file that hold a token.
func tokenLines(content string) []string {
	var toks []string
	for _, line := range strings.Split(content, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			toks = append(toks, line)
		}
	}
	return toks
}

func TestOpenFileStoreCreatesMissingFile(t *testing.T) {
	// One missing folder level is created, as for the default tokens/tokens.
	dir := filepath.Join(t.TempDir(), "eventsrv")
	path := filepath.Join(dir, "tokens")
	log, logs := newTestLogger()

	s, err := OpenFileStore(path, log)
	require.NoError(t, err)

	dirInfo, err := os.Stat(dir)
	require.NoError(t, err)
	assert.True(t, dirInfo.IsDir())
	assert.Equal(t, fs.FileMode(0o700), dirInfo.Mode().Perm(), "folder mode")

	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), info.Mode().Perm(), "file mode")

	content, err := os.ReadFile(path)
	require.NoError(t, err)
	toks := tokenLines(string(content))
	require.Len(t, toks, 1, "exactly one token line in %q", content)
	tok := toks[0]
	assert.GreaterOrEqual(t, len(tok), 32)
	assert.True(t, s.Contains(tok))
	assert.False(t, s.Contains(tok[:len(tok)-1]))

	out := logs.String()
	assert.Contains(t, out, path, "the log names the path")
	assert.Contains(t, out, "created")
	assert.NotContains(t, out, tok, "the log must never hold a token")
	assert.NotContains(t, out, "readable by group", "a created file is private")
}

func TestOpenFileStoreKeepsExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFileAtomic(t, path, tokB+"\n")
	log, logs := newTestLogger()

	s, err := OpenFileStore(path, log)
	require.NoError(t, err)
	assert.True(t, s.Contains(tokB))

	content, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, tokB+"\n", string(content), "an existing file is not rewritten")
	assert.NotContains(t, logs.String(), "created")
}

func TestOpenFileStoreUnreadable(t *testing.T) {
	// A folder where the file should be: it exists, but cannot be read.
	path := t.TempDir()
	log, _ := newTestLogger()
	s, err := OpenFileStore(path, log)
	require.Error(t, err)
	assert.Nil(t, s)
}

func TestFileStoreLogsWithoutTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFileAtomic(t, path, "# c\n"+tok15+"\n"+tokB+"\n")
	require.NoError(t, os.Chmod(path, 0o644))
	log, logs := newTestLogger()

	s, err := OpenFileStore(path, log)
	require.NoError(t, err)
	assert.True(t, s.Contains(tokB))
	assert.False(t, s.Contains(tok15))

	out := logs.String()
	assert.Contains(t, out, "shorter than 16")
	assert.Contains(t, out, "line=2")
	assert.Contains(t, out, "readable by group or others")
	assert.NotContains(t, out, tok15)
	assert.NotContains(t, out, tokB)

	// A file without a usable token is loaded, with a warning.
	writeFileAtomic(t, path, "# nothing here\n")
	require.NoError(t, s.Reload())
	assert.False(t, s.Contains(tokB))
	assert.Contains(t, logs.String(), "no usable token")
}

func TestFileStoreReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFileAtomic(t, path, tokB+"\n")
	log, logs := newTestLogger()
	s, err := OpenFileStore(path, log)
	require.NoError(t, err)
	require.True(t, s.Contains(tokB))
	require.False(t, s.Contains(tokC))

	// An unchanged file changes nothing, and an explicit reload says so;
	// a poll of it is quiet.
	before := logs.String()
	require.NoError(t, s.Reload())
	added := strings.TrimPrefix(logs.String(), before)
	assert.Contains(t, added, `msg="tokens file unchanged" path=`+path)
	assert.Equal(t, 1, strings.Count(added, "\n"), "one line: %s", added)
	before = logs.String()
	require.NoError(t, s.poll())
	require.NoError(t, s.poll())
	assert.Equal(t, before, logs.String(), "polling an unchanged file logs nothing")

	// A changed file replaces the set.
	writeFileAtomic(t, path, tokC+"\n")
	require.NoError(t, s.Reload())
	assert.True(t, s.Contains(tokC))
	assert.False(t, s.Contains(tokB))
	assert.Contains(t, logs.String(), "tokens file reloaded")

	// A deleted file is an error; the previous set stays.
	require.NoError(t, os.Remove(path))
	err = s.Reload()
	require.Error(t, err)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.True(t, s.Contains(tokC))
	assert.False(t, s.Contains(tokB))

	// Once the file is back, it is read again.
	writeFileAtomic(t, path, tokB+"\n"+tokC+"\n")
	require.NoError(t, s.Reload())
	assert.True(t, s.Contains(tokB))
	assert.True(t, s.Contains(tokC))
	assert.NotContains(t, logs.String(), tokB)
	assert.NotContains(t, logs.String(), tokC)
}

func TestFileStoreWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFileAtomic(t, path, tokB+"\n")
	log, logs := newTestLogger()
	s, err := OpenFileStore(path, log)
	require.NoError(t, err)
	counts := &reloadCounts{}
	s.WithMetrics(counts)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, 5*time.Millisecond)
	}()

	writeFileAtomic(t, path, tokC+"\n")
	require.Eventually(t, func() bool { return s.Contains(tokC) }, 5*time.Second, 5*time.Millisecond)
	assert.False(t, s.Contains(tokB))

	// A failing reload is logged once however many polls fail, and the
	// previous set kept.
	require.NoError(t, os.Remove(path))
	require.Eventually(t, func() bool { return counts.failed.Load() >= 3 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, 1, strings.Count(logs.String(), "reload failed"))
	assert.True(t, s.Contains(tokC))

	// Recovery: the next good file is picked up; the next failure is
	// logged again, once.
	writeFileAtomic(t, path, tokB+"\n")
	require.Eventually(t, func() bool { return s.Contains(tokB) }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1, strings.Count(logs.String(), "reload failed"))
	require.NoError(t, os.Remove(path))
	before := counts.failed.Load()
	require.Eventually(t, func() bool { return counts.failed.Load() >= before+3 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, 2, strings.Count(logs.String(), "reload failed"))

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}

// reloadCounts counts reloads, as the metrics do.
type reloadCounts struct{ ok, failed atomic.Int32 }

func (c *reloadCounts) TokensReloaded(ok bool) {
	if ok {
		c.ok.Add(1)
	} else {
		c.failed.Add(1)
	}
}
