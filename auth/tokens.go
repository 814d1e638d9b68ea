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
	"strings"
)

// MinTokenLength is the shortest token accepted, as in the old service:
// shorter lines in the tokens file are ignored, shorter presented tokens are
// refused.
const MinTokenLength = 16

// maxTokensFileBytes bounds how much of a tokens file is read, so that a
// wrong TOKENS_FILE (a log, a disk image) cannot exhaust memory.
const maxTokensFileBytes = 16 << 20

// TokenSet is an immutable set of accepted tokens. It holds SHA-256 digests
// rather than the tokens themselves, so that lookups compare fixed-size
// values in constant time and a heap dump shows no usable secret.
type TokenSet struct {
	digests [][sha256.Size]byte
}

// Len reports how many tokens the set holds.
func (s *TokenSet) Len() int { return len(s.digests) }

// Contains reports whether token is in the set. It compares the token's
// digest with every stored digest and never returns early, so the time taken
// depends on the number of tokens only, not on how much of a token matched.
func (s *TokenSet) Contains(token string) bool {
	if s == nil || len(token) < MinTokenLength {
		return false
	}
	d := sha256.Sum256([]byte(token))
	found := 0
	for i := range s.digests {
		found |= subtle.ConstantTimeCompare(d[:], s.digests[i][:])
	}
	return found == 1
}

// ShortLine records a line of the tokens file that was ignored because the
// token on it is shorter than MinTokenLength. It carries the line number
// only: the token itself must never reach a log.
type ShortLine struct {
	Line int
}

// ParseTokens reads a tokens file: one token per line, surrounding white
// space (CR included) trimmed, blank lines and lines starting with '#'
// skipped. Tokens shorter than MinTokenLength are left out and reported.
func ParseTokens(r io.Reader) (*TokenSet, []ShortLine, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxTokensFileBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read tokens: %w", err)
	}
	if len(data) > maxTokensFileBytes {
		return nil, nil, fmt.Errorf("tokens file is larger than %d bytes", maxTokensFileBytes)
	}
	set := &TokenSet{}
	var short []ShortLine
	seen := make(map[[sha256.Size]byte]struct{})
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxTokensFileBytes)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < MinTokenLength {
			short = append(short, ShortLine{Line: n})
			continue
		}
		d := sha256.Sum256([]byte(line))
		if _, dup := seen[d]; dup {
			continue
		}
		seen[d] = struct{}{}
		set.digests = append(set.digests, d)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read tokens: %w", err)
	}
	return set, short, nil
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
