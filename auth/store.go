package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// FileStore is the set of accepted tokens as read from a tokens file. It is
// safe for concurrent use: readers see one complete set, swapped atomically
// on reload, so a reload never drops a connection or refuses a request
// half-way.
type FileStore struct {
	path string
	log  *slog.Logger

	set atomic.Pointer[TokenSet]

	mu      sync.Mutex // serialises reloads
	lastSum [sha256.Size]byte
	metrics ReloadCounter
}

// ReloadCounter counts reloads of the tokens file, for metrics.
type ReloadCounter interface {
	TokensReloaded(ok bool)
}

// WithMetrics makes s count its reloads in m; call it before Watch.
func (s *FileStore) WithMetrics(m ReloadCounter) *FileStore {
	s.metrics = m
	return s
}

func (s *FileStore) countReload(ok bool) {
	if s.metrics != nil {
		s.metrics.TokensReloaded(ok)
	}
}

// OpenFileStore reads the tokens file at path. If the file does not exist it
// is created (mode 0600, with its folder) holding one new random token, so
// that a fresh checkout runs without setup; the path, never the token, is
// logged.
func OpenFileStore(path string, log *slog.Logger) (*FileStore, error) {
	if err := createIfMissing(path, log); err != nil {
		return nil, err
	}
	s := &FileStore{path: path, log: log}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

func createIfMissing(path string, log *slog.Logger) error {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return nil // exists, or a real error that Reload will report
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create tokens folder for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create tokens file %s: %w", path, err)
	}
	content := "# eventsrv tokens: one per line, at least 16 characters.\n" +
		"# Created at first start; add tokens with `eventsrv token`.\n" +
		NewToken() + "\n"
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("write tokens file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write tokens file %s: %w", path, err)
	}
	log.Warn("tokens file did not exist: created it with one random token; read the token from the file", "path", path)
	return nil
}

// Contains reports whether token is currently accepted.
func (s *FileStore) Contains(token string) bool {
	return s.set.Load().Contains(token)
}

// Lookup returns token's permissions, if it is currently accepted.
func (s *FileStore) Lookup(token string) (Permissions, bool) {
	return s.set.Load().Lookup(token)
}

// Reload re-reads the file. When the file cannot be read or parsed the
// previous set stays in force and the error is returned for logging.
// Reloading an unchanged file is a no-op, so polling is cheap and quiet.
func (s *FileStore) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path)
	if err != nil {
		s.countReload(false)
		return fmt.Errorf("read tokens file %s: %w", s.path, err)
	}
	sum := sha256.Sum256(data)
	if s.set.Load() != nil && sum == s.lastSum {
		return nil
	}
	set, short, err := ParseTokens(bytes.NewReader(data))
	if err != nil {
		s.countReload(false)
		return fmt.Errorf("tokens file %s: %w", s.path, err)
	}
	for _, l := range short {
		s.log.Warn("tokens file: line ignored", "path", s.path, "line", l.Line, "reason", l.Reason)
	}
	if set.Len() == 0 {
		s.log.Warn("tokens file holds no usable token: every request will be refused", "path", s.path)
	}
	if info, err := os.Stat(s.path); err == nil && info.Mode().Perm()&0o077 != 0 {
		s.log.Warn("tokens file is readable by group or others; chmod 600 it", "path", s.path, "mode", info.Mode().Perm().String())
	}
	first := s.set.Load() == nil
	s.set.Store(set)
	s.lastSum = sum
	if !first {
		s.countReload(true)
		s.log.Info("tokens file reloaded", "path", s.path, "tokens", set.Len())
	} else {
		s.log.Info("tokens file loaded", "path", s.path, "tokens", set.Len())
	}
	return nil
}

// Watch reloads the file every interval until ctx ends. Polling (rather than
// inotify) also sees files replaced through symlink swaps and bind mounts,
// as Kubernetes secrets and Docker volumes do, and costs one small read.
func (s *FileStore) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false // log a failure once, not at every poll
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := s.Reload()
			if err != nil && !failing {
				s.log.Error("tokens file reload failed; keeping the previous tokens", "err", err)
			}
			failing = err != nil
		}
	}
}
