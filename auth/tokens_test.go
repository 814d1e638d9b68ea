package auth

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	tok15 = "abcdefghijklmno"      // one short of MinTokenLength
	tok16 = "abcdefghijklmnop"     // exactly MinTokenLength
	tokB  = "0123456789ABCDEFGHIJ" // 20 characters
	tokC  = "zyxwvutsrqponmlkjihg" // 20 characters
)

func TestParseTokens(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      []string // tokens Contains must accept
		notWant   []string // strings Contains must refuse
		wantLen   int
		wantShort []IgnoredLine
	}{
		{
			name:    "empty file",
			in:      "",
			wantLen: 0,
		},
		{
			name:    "comments and blank lines",
			in:      "# who uses what\n\n" + tok16 + "\n   \n\t\n#" + tokB + "\n   # " + tokC + "\n",
			want:    []string{tok16},
			notWant: []string{tokB, "#" + tokB, tokC, "# " + tokC},
			wantLen: 1,
		},
		{
			name:    "CRLF line endings",
			in:      "# comment\r\n" + tok16 + "\r\n\r\n" + tokB + "\r\n",
			want:    []string{tok16, tokB},
			notWant: []string{tok16 + "\r", tokB + "\r"},
			wantLen: 2,
		},
		{
			name:    "surrounding whitespace",
			in:      "  \t" + tok16 + " \t\n\v" + tokB + "\f\n",
			want:    []string{tok16, tokB},
			notWant: []string{"  \t" + tok16 + " \t", " " + tokB},
			wantLen: 2,
		},
		{
			name:      "15 characters ignored, 16 kept",
			in:        tok15 + "\n" + tok16 + "\n# " + tok15 + "\n\n  " + tok15 + "  \n" + tokB,
			want:      []string{tok16, tokB},
			notWant:   []string{tok15},
			wantLen:   2,
			wantShort: []IgnoredLine{{Line: 1, Reason: reasonShort}, {Line: 5, Reason: reasonShort}},
		},
		{
			name:      "short line numbers count blank lines and CRLF",
			in:        "\r\n# c\r\nshort\r\n" + tokB + "\r\nx",
			want:      []string{tokB},
			wantLen:   1,
			wantShort: []IgnoredLine{{Line: 3, Reason: reasonShort}, {Line: 5, Reason: reasonShort}},
		},
		{
			name:    "duplicates kept once",
			in:      tokB + "\n" + tok16 + "\n  " + tokB + "\r\n" + tokB,
			want:    []string{tokB, tok16},
			wantLen: 2,
		},
		{
			// A duplicate must skip only itself: every later line still counts.
			name:    "duplicate before other tokens",
			in:      tokB + "\n" + tokB + "\n" + tokC + "\n" + tokB + " admin\n" + tok16 + "\n",
			want:    []string{tokB, tokC, tok16},
			wantLen: 3,
		},
		{
			// Only publish=, subscribe= and a bare admin are fields; anything
			// else (a value on admin, none on publish) leaves the line out.
			name: "unknown or malformed fields",
			in: tokB + "1 foo=bar\n" + tokB + "2 admin=yes\n" + tokB + "3 publish\n" + tokB + "4 subscribe\n" +
				tokB + "5 foo\n" + tokB + "6 =a\n" + tokB + "7 Publish=a\n" + tokC + " subscribe=a\n",
			want:    []string{tokC},
			notWant: []string{tokB + "1", tokB + "2", tokB + "3", tokB + "4", tokB + "5", tokB + "6", tokB + "7"},
			wantLen: 1,
			wantShort: []IgnoredLine{
				{Line: 1, Reason: reasonBadField}, {Line: 2, Reason: reasonBadField}, {Line: 3, Reason: reasonBadField},
				{Line: 4, Reason: reasonBadField}, {Line: 5, Reason: reasonBadField}, {Line: 6, Reason: reasonBadField},
				{Line: 7, Reason: reasonBadField},
			},
		},
		{
			// A UTF-8 byte order mark is dropped at the start of the file
			// only; elsewhere it is part of a token.
			name:    "byte order mark",
			in:      "\ufeff" + tokB + "\n\ufeff" + tokC + "\n",
			want:    []string{tokB, "\ufeff" + tokC},
			notWant: []string{"\ufeff" + tokB, tokC},
			wantLen: 2,
		},
		{
			name:    "only comments",
			in:      "# one\n# two\n#" + tokB + "\n",
			notWant: []string{tokB},
			wantLen: 0,
		},
		{
			name:    "last line without newline",
			in:      tok16 + "\n" + tokB,
			want:    []string{tok16, tokB},
			wantLen: 2,
		},
		{
			name:      "white space ends the token: what follows are permission fields",
			in:        "abcdefgh ijklmnopq\n",
			notWant:   []string{"abcdefgh ijklmnopq", "abcdefgh", "ijklmnopq"},
			wantLen:   0,
			wantShort: []IgnoredLine{{Line: 1, Reason: reasonShort}},
		},
		{
			name:    "lines with bad permission fields are left out",
			in:      tokB + " publish=a admin\n" + tok16 + " subscribe=a*b\n" + tokC + " root\n" + tokB + "x publish=a publish=b\n",
			want:    []string{tokB},
			notWant: []string{tok16, tokC, tokB + "x"},
			wantLen: 1,
			wantShort: []IgnoredLine{
				{Line: 2, Reason: `field 2: bad event pattern: "a*b" has a * before its end`},
				{Line: 3, Reason: "field 2: not publish=..., subscribe=..., enqueue=..., work=... or admin"},
				{Line: 4, Reason: "field 3: publish given twice"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, short, err := ParseTokens(strings.NewReader(tt.in))
			require.NoError(t, err)
			require.NotNil(t, set)
			assert.Equal(t, tt.wantLen, set.Len(), "Len")
			assert.Equal(t, tt.wantShort, short, "short lines")
			for _, tok := range tt.want {
				assert.True(t, set.Contains(tok), "Contains(%q)", tok)
			}
			for _, tok := range tt.notWant {
				assert.False(t, set.Contains(tok), "Contains(%q)", tok)
			}
		})
	}
}

func TestParseTokensErrors(t *testing.T) {
	t.Run("read error", func(t *testing.T) {
		boom := errors.New("boom")
		set, short, err := ParseTokens(iotest.ErrReader(boom))
		require.ErrorIs(t, err, boom)
		assert.Nil(t, set)
		assert.Nil(t, short)
	})
	t.Run("file at the size bound", func(t *testing.T) {
		// 64-byte lines: a token line, then comments up to the bound exactly.
		first := tokB + strings.Repeat(" ", 63-len(tokB)) + "\n"
		full := first + strings.Repeat("#"+strings.Repeat("-", 62)+"\n", maxTokensFileBytes/64-1)
		require.Len(t, full, maxTokensFileBytes)
		set, _, err := ParseTokens(strings.NewReader(full))
		require.NoError(t, err)
		assert.Equal(t, 1, set.Len())
	})
	t.Run("file over the size bound", func(t *testing.T) {
		big := strings.Repeat(tokB+"\n", maxTokensFileBytes/(len(tokB)+1)+1)
		require.Greater(t, len(big), maxTokensFileBytes)
		set, _, err := ParseTokens(strings.NewReader(big))
		require.Error(t, err)
		assert.Nil(t, set)
	})
}

func TestTokenSetContains(t *testing.T) {
	long := tokB + tokC // 40 characters
	set, short, err := ParseTokens(strings.NewReader(tok16 + "\n" + long + "\n"))
	require.NoError(t, err)
	require.Empty(t, short)

	tests := []struct {
		name  string
		token string
		want  bool
	}{
		{"present, minimum length", tok16, true},
		{"present, long", long, true},
		{"absent", "ABSENT-token-0123456789", false},
		{"prefix of a token", long[:len(long)-1], false},
		{"prefix of a token at minimum length", long[:MinTokenLength], false},
		{"token plus suffix", tok16 + "x", false},
		{"token plus space", tok16 + " ", false},
		{"case differs", strings.ToUpper(tok16), false},
		{"shorter than the minimum", tok15, false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, set.Contains(tt.token))
		})
	}

	t.Run("nil set", func(t *testing.T) {
		var nilSet *TokenSet
		assert.False(t, nilSet.Contains(tok16))
		assert.False(t, nilSet.Contains(""))
	})
	t.Run("empty set", func(t *testing.T) {
		empty := &TokenSet{}
		assert.Equal(t, 0, empty.Len())
		assert.False(t, empty.Contains(tok16))
	})
}

var urlSafe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func TestNewToken(t *testing.T) {
	a, b := NewToken(), NewToken()
	for _, tok := range []string{a, b} {
		assert.GreaterOrEqual(t, len(tok), 32)
		assert.Regexp(t, urlSafe, tok)
		assert.Equal(t, strings.TrimSpace(tok), tok)
	}
	assert.NotEqual(t, a, b)

	// A new token is accepted once written to a tokens file.
	set, short, err := ParseTokens(strings.NewReader(a + "\n"))
	require.NoError(t, err)
	assert.Empty(t, short)
	assert.True(t, set.Contains(a))
	assert.False(t, set.Contains(b))
}

func FuzzParseTokens(f *testing.F) {
	for _, s := range []string{
		"",
		"# comment\n" + tok16 + "\n",
		tok15 + "\r\n" + tok16 + "\r\n",
		"  " + tokB + "  \n\n#" + tokC,
		tokB + "\n" + tokB + "\n",
		"\xff\xfe" + tokB + "\r\r\n\x00",
		"\u00a0" + tokB + "\u2028\n",
		"\ufeff" + tokB + "\n\ufeff" + tokC + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, short, err := ParseTokens(strings.NewReader(string(data)))
		if err != nil {
			t.Fatalf("ParseTokens: %v", err) // inputs are far below the size bound
		}
		data = bytes.TrimPrefix(data, utf8BOM) // dropped, once, at the start
		// bufio.Scanner's lines: split at \n, one trailing \r dropped.
		lines := strings.Split(string(data), "\n")
		kept := 0
		for _, line := range lines {
			fields := strings.Fields(line)
			if len(fields) == 0 || strings.HasPrefix(fields[0], "#") || len(fields[0]) < MinTokenLength {
				continue
			}
			kept++
			if len(fields) == 1 && !set.Contains(fields[0]) {
				t.Fatalf("bare token %q not in the set", fields[0])
			}
		}
		if set.Len() > kept {
			t.Fatalf("set holds %d tokens, but only %d lines qualify", set.Len(), kept)
		}
		prev := 0
		for _, s := range short {
			if s.Line < 1 || s.Line > len(lines) || s.Line <= prev {
				t.Fatalf("ignored line %d out of range 1..%d or out of order (previous %d)", s.Line, len(lines), prev)
			}
			prev = s.Line
			fields := strings.Fields(lines[s.Line-1])
			if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
				t.Fatalf("line %d (%q) reported, but it is blank or a comment", s.Line, lines[s.Line-1])
			}
			if (s.Reason == reasonShort) != (len(fields[0]) < MinTokenLength) {
				t.Fatalf("line %d (%q) reported as %q", s.Line, lines[s.Line-1], s.Reason)
			}
		}
	})
}

func TestTokenPermissions(t *testing.T) {
	set, ignored, err := ParseTokens(strings.NewReader(
		tokB + "\n" +
			tokC + " publish=order.*,invoice subscribe=order.created\n" +
			tok16 + " admin subscribe=*\n" +
			tokB + "2 publish=\n"))
	require.NoError(t, err)
	require.Empty(t, ignored)
	cases := []struct {
		token     string
		publish   map[string]bool
		subscribe map[string]bool
		admin     bool
	}{
		{tokB, map[string]bool{"a": true, "order.created": true}, map[string]bool{"a": true}, false},
		{tokC,
			map[string]bool{"order.created": true, "order.": true, "order": false, "invoice": true, "invoice.paid": false},
			map[string]bool{"order.created": true, "order.paid": false}, false},
		{tok16, map[string]bool{"a": false}, map[string]bool{"a": true, "": true}, true},
		{tokB + "2", map[string]bool{"a": false, "": false}, map[string]bool{"a": false}, false},
	}
	for _, tc := range cases {
		perms, ok := set.Lookup(tc.token)
		require.True(t, ok, tc.token)
		for event, want := range tc.publish {
			assert.Equal(t, want, perms.Publish.Allows(event), "%s publish %q", tc.token, event)
		}
		for event, want := range tc.subscribe {
			assert.Equal(t, want, perms.Subscribe.Allows(event), "%s subscribe %q", tc.token, event)
		}
		assert.Equal(t, tc.admin, perms.Admin, tc.token)
	}
	_, ok := set.Lookup(tokB + "3")
	assert.False(t, ok)
}

func FuzzParsePatterns(f *testing.F) {
	for _, s := range []string{"", "*", "a", "a,b*", "order.*,invoice", "a*b", ",", "a,,b", "**", "é*"} {
		f.Add(s, "order.created")
	}
	f.Fuzz(func(t *testing.T, list, event string) {
		p, err := ParsePatterns(list)
		if err != nil {
			return
		}
		for _, pat := range p {
			if pat == "" || strings.Contains(strings.TrimSuffix(pat, "*"), "*") {
				t.Fatalf("accepted pattern %q", pat)
			}
		}
		allowed := p.Allows(event)
		// Allows agrees with a direct reading of each pattern.
		want := false
		for _, pat := range p {
			if prefix, ok := strings.CutSuffix(pat, "*"); ok && strings.HasPrefix(event, prefix) || pat == event {
				want = true
			}
		}
		if allowed != want {
			t.Fatalf("Allows(%q) = %v for %q", event, allowed, list)
		}
	})
}

// reasonBadField is the reason of a line whose second field is not one of
// publish=..., subscribe=... or admin.
const reasonBadField = "field 2: not publish=..., subscribe=..., enqueue=..., work=... or admin"
