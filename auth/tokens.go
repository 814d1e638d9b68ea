package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"
)

// MinTokenLength is the shortest token accepted, as in the old service:
// shorter lines in the tokens file are ignored, shorter presented tokens are
// refused.
const MinTokenLength = 16

// maxTokensFileBytes bounds how much of a tokens file is read, so that a
// wrong TOKENS_FILE (a log, a disk image) cannot exhaust memory.
const maxTokensFileBytes = 16 << 20

// TokenSet is an immutable set of accepted tokens with their permissions.
// It holds SHA-256 digests rather than the tokens themselves, so that
// lookups compare fixed-size values in constant time and a heap dump shows
// no usable secret.
type TokenSet struct {
	digests [][sha256.Size]byte
	perms   []Permissions // by the index of the digest
}

// Len reports how many tokens the set holds (none for a nil set).
func (s *TokenSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.digests)
}

// Contains reports whether token is in the set.
func (s *TokenSet) Contains(token string) bool {
	_, ok := s.Lookup(token)
	return ok
}

// Lookup returns token's permissions. It compares the token's digest with
// every stored digest and never returns early, so the time taken depends on
// the number of tokens only, not on how much of a token matched.
func (s *TokenSet) Lookup(token string) (Permissions, bool) {
	if len(token) < MinTokenLength {
		return Permissions{}, false
	}
	return s.lookupDigest(sha256.Sum256([]byte(token)))
}

// lookupDigest returns the permissions of the token whose SHA-256 digest is
// d, in constant time as Lookup. It lets Authenticator.Recheck find a token
// again without the token itself.
func (s *TokenSet) lookupDigest(d [sha256.Size]byte) (Permissions, bool) {
	if s == nil {
		return Permissions{}, false
	}
	match := -1
	for i := range s.digests {
		eq := subtle.ConstantTimeCompare(d[:], s.digests[i][:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return Permissions{}, false
	}
	return s.perms[match], true
}

// equal reports whether s and o hold the same tokens, in the same order,
// with the same permissions.
func (s *TokenSet) equal(o *TokenSet) bool {
	return slices.Equal(s.digests, o.digests) && slices.EqualFunc(s.perms, o.perms, Permissions.equal)
}

// IgnoredLine records a line of the tokens file that was left out, and
// why. It carries the line number only: the token must never reach a log.
type IgnoredLine struct {
	Line   int
	Reason string
}

// reasonShort is the reason of a line whose token is too short.
const reasonShort = "token shorter than 16 characters"

// ParseTokens reads a tokens file: one token per line, optionally followed
// by permission fields (see parsePermissions; a bare token has FullAccess),
// separated by white space. A UTF-8 byte order mark at the start is
// dropped. Surrounding white space (CR included) is
// trimmed; blank lines and lines starting with '#' are skipped. Lines with
// a token shorter than MinTokenLength, or with fields that do not parse,
// are left out and reported. A token listed twice keeps its first line.
func ParseTokens(r io.Reader) (*TokenSet, []IgnoredLine, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxTokensFileBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read tokens: %w", err)
	}
	if len(data) > maxTokensFileBytes {
		return nil, nil, fmt.Errorf("tokens file is larger than %d bytes", maxTokensFileBytes)
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	set := &TokenSet{}
	var ignored []IgnoredLine
	seen := make(map[[sha256.Size]byte]struct{})
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxTokensFileBytes)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		token := fields[0]
		if len(token) < MinTokenLength {
			ignored = append(ignored, IgnoredLine{Line: n, Reason: reasonShort})
			continue
		}
		perms := FullAccess
		if len(fields) > 1 {
			if perms, err = parsePermissions(fields[1:]); err != nil {
				ignored = append(ignored, IgnoredLine{Line: n, Reason: err.Error()})
				continue
			}
		}
		d := sha256.Sum256([]byte(token))
		if _, dup := seen[d]; dup {
			continue
		}
		seen[d] = struct{}{}
		perms.key = d
		perms.Subject = fmt.Sprintf("token:%x", d[:4])
		set.digests = append(set.digests, d)
		set.perms = append(set.perms, perms)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read tokens: %w", err)
	}
	return set, ignored, nil
}

// NewToken returns a random token of 43 URL-safe characters (256 bits from
// crypto/rand), well above MinTokenLength.
func NewToken() string {
	var b [32]byte
	// crypto/rand.Read never returns an error on supported platforms and
	// crashes the program itself if the kernel's source fails.
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
