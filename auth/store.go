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

// ErrNoUsableToken is wrapped by a reload refused because the new file
// holds no usable token while the tokens in force are not none, and the
// file does not say it is empty on purpose (see FileStore).
var ErrNoUsableToken = errors.New("tokens file holds no usable token")

// utf8BOM is the byte order mark some Windows editors put at the start of
// a UTF-8 file. Left in, it would become part of the first token.
var utf8BOM = []byte("\xef\xbb\xbf")

// FileStore is the set of accepted tokens as read from a tokens file. It is
// safe for concurrent use: readers see one complete set, swapped atomically
// on reload, so a reload never drops a connection or refuses a request
// half-way.
//
// A file may be read while it is being written (an editor saving in place,
// `>` in a shell, a copy), so a reload never applies what may be a partial
// write:
//
//   - A last line without a newline may be cut short: "<token>
//     publish=order.*" cut after the token would be a bare token with full
//     access. Such a line is left out (and logged by its line number, never
//     its content) until the file has stayed the same for two polls of
//     Watch; then it is taken as written by an editor that does not end
//     files with a newline, and applied.
//   - Watch applies a changed file only once two polls in a row have read
//     the same content, so a file truncated and then rewritten between
//     polls is never applied half-way.
//   - Reload (SIGHUP: an operator asked for it) applies at once, but still
//     leaves out an unterminated last line, which the polls apply later.
//   - A new file without a usable token is refused while the tokens in
//     force are not none, unless it says so: every line blank or a
//     comment, at least one comment, and a newline at the end. The
//     previous tokens stay, and the error (ErrNoUsableToken) says why.
//   - A UTF-8 byte order mark at the start is dropped, with a log line.
type FileStore struct {
	path string // absolute, so that logs say where the file is
	log  *slog.Logger

	set atomic.Pointer[TokenSet]

	mu       sync.Mutex        // serialises reloads; guards the fields below
	applied  [sha256.Size]byte // digest of the content the set was built from
	complete bool              // the set was built from all of it: no line left out as unterminated
	seen     [sha256.Size]byte // digest of what the previous poll read
	refused  [sha256.Size]byte // digest of the content last refused
	refusal  error             // why it was refused
	metrics  ReloadCounter
	onChange []func()
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

// OnChange makes s call f after every reload that changed the set of
// tokens or their permissions (not after the first load, nor after a
// reload that changed only comments). It is for revocation: f should have
// every open connection re-checked with Authenticator.Recheck. f runs on
// the goroutine that reloaded (Watch's, or Reload's caller), after the new
// set is in force and without s's lock held; two reloads close together
// may run f concurrently, so f should read the current set rather than
// rely on the order of calls. Register before Watch.
func (s *FileStore) OnChange(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onChange = append(s.onChange, f)
}

func (s *FileStore) countReload(ok bool) {
	if s.metrics != nil {
		s.metrics.TokensReloaded(ok)
	}
}

// OpenFileStore reads the tokens file at path. If the file does not exist it
// is created (mode 0600) holding one new random token, so that a fresh
// checkout runs without setup; its folder is created too (mode 0700) when
// that folder's own parent exists, as for the default tokens/tokens, but a
// deeper missing path is an error: it is more likely a mistyped
// TOKENS_FILE than a place meant for a secret. The absolute path, never
// the token, is logged.
func OpenFileStore(path string, log *slog.Logger) (*FileStore, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	if err := createIfMissing(abs, log); err != nil {
		return nil, err
	}
	s := &FileStore{path: abs, log: log}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

func createIfMissing(path string, log *slog.Logger) error {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return nil // exists, or a real error that Reload will report
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Dir(dir)); err != nil {
			return fmt.Errorf("tokens file %s: its folder %s does not exist, nor does the folder above it; create it, or check TOKENS_FILE: %w",
				path, dir, err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("create tokens folder for %s: %w", path, err)
		}
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

// lookupDigest returns the current permissions of the token with digest d.
func (s *FileStore) lookupDigest(d [sha256.Size]byte) (Permissions, bool) {
	return s.set.Load().lookupDigest(d)
}

// Reload re-reads the file and applies it at once (an operator asked for
// it), except an unterminated last line, which Watch applies once the file
// has stayed the same for two polls. When the file cannot be read or
// parsed, or is refused as empty, the previous set stays in force and the
// error is returned for logging. An unchanged file is logged as such.
func (s *FileStore) Reload() error { return s.reload(false) }

// poll is Watch's reload: quiet when the file is unchanged, and a changed
// file is applied only when the previous poll read the same content.
func (s *FileStore) poll() error { return s.reload(true) }

func (s *FileStore) reload(polling bool) error {
	s.mu.Lock()
	changed, err := s.reloadLocked(polling)
	var notify []func()
	if changed {
		notify = append(notify, s.onChange...)
	}
	s.mu.Unlock()
	for _, f := range notify {
		f()
	}
	return err
}

func (s *FileStore) reloadLocked(polling bool) (changed bool, err error) {
	data, err := os.ReadFile(s.path)
	if err != nil {
		s.countReload(false)
		return false, fmt.Errorf("read tokens file %s: %w", s.path, err)
	}
	sum := sha256.Sum256(data)
	// applied is all zeros until the first load: no digest is.
	if sum == s.applied && (s.complete || !polling) {
		if !polling {
			s.log.Info("tokens file unchanged", "path", s.path)
		}
		return false, nil
	}
	if polling {
		settled := sum == s.seen
		s.seen = sum
		if !settled {
			s.log.Debug("tokens file changed; applying it once the next poll reads the same", "path", s.path)
			return false, nil
		}
		if sum == s.refused {
			return false, s.refusal // refused already, and logged then
		}
	}
	changed, err = s.apply(data, sum, polling)
	if err != nil {
		s.countReload(false)
		if errors.Is(err, ErrNoUsableToken) {
			s.refused, s.refusal = sum, err
		}
		return false, err
	}
	return changed, nil
}

// apply parses data and puts it in force. settled means the file has
// stayed the same for two polls, so an unterminated last line is complete.
func (s *FileStore) apply(data []byte, sum [sha256.Size]byte, settled bool) (changed bool, err error) {
	body, bom := bytes.CutPrefix(data, utf8BOM)
	cutLine := 0 // the unterminated last line left out, if any
	if !settled {
		// Everything after the last newline (nothing, in a complete file)
		// is left out. Blank and comment tails change nothing, but are
		// dropped too, so that only a terminated file can say it is empty
		// on purpose.
		end := bytes.LastIndexByte(body, '\n') + 1
		if f := bytes.Fields(body[end:]); len(f) > 0 && f[0][0] != '#' {
			cutLine = bytes.Count(body, []byte{'\n'}) + 1
		}
		body = body[:end]
	}
	set, ignored, err := ParseTokens(bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("tokens file %s: %w", s.path, err)
	}
	for _, l := range ignored {
		s.log.Warn("tokens file: line ignored", "path", s.path, "line", l.Line, "reason", l.Reason)
	}
	if cutLine > 0 {
		s.log.Warn("tokens file: line ignored until the file stops changing", "path", s.path, "line", cutLine,
			"reason", "last line has no newline at its end: it may be cut short")
	}
	old := s.set.Load()
	if set.Len() == 0 {
		// Empty on purpose: every line a comment or blank, at least one
		// comment, and the last line ended, so not a file cut short.
		onPurpose := len(ignored) == 0 && cutLine == 0 && len(bytes.TrimSpace(body)) > 0 && body[len(body)-1] == '\n'
		if old.Len() > 0 && !onPurpose {
			return false, fmt.Errorf("%s: %w; keeping the previous %d tokens (to refuse every token on purpose, leave only comment lines, the last ending in a newline)",
				s.path, ErrNoUsableToken, old.Len())
		}
		s.log.Warn("tokens file holds no usable token: every request will be refused", "path", s.path)
	}
	if bom {
		s.log.Warn("tokens file starts with a UTF-8 byte order mark; ignored it", "path", s.path)
	}
	if info, err := os.Stat(s.path); err == nil && info.Mode().Perm()&0o077 != 0 {
		s.log.Warn("tokens file is readable by group or others; chmod 600 it", "path", s.path, "mode", info.Mode().Perm().String())
	}
	s.set.Store(set)
	s.applied, s.complete = sum, cutLine == 0
	s.refused, s.refusal = [sha256.Size]byte{}, nil
	if old == nil {
		s.log.Info("tokens file loaded", "path", s.path, "tokens", set.Len())
		return false, nil
	}
	s.countReload(true)
	s.log.Info("tokens file reloaded", "path", s.path, "tokens", set.Len())
	return !set.equal(old), nil
}

// Watch reloads the file every interval until ctx ends. Polling (rather than
// inotify) also sees files replaced through symlink swaps and bind mounts,
// as Kubernetes secrets and Docker volumes do, and costs one small read.
// A changed file is applied once two polls in a row read the same content
// (see FileStore), so a change takes effect one to two intervals later.
func (s *FileStore) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false // log a failure once, not at every poll
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := s.poll()
			if err != nil && !failing {
				s.log.Error("tokens file reload failed; keeping the previous tokens", "err", err)
			}
			failing = err != nil
		}
	}
}
