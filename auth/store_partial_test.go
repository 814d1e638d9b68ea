package auth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openStore writes content to a new tokens file and opens it.
func openStore(t *testing.T, content string) (s *FileStore, path string, logs *syncBuffer) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	log, logs := newTestLogger()
	s, err := OpenFileStore(path, log)
	require.NoError(t, err)
	return s, path, logs
}

// writeInPlace rewrites path in place, as `>` in a shell or an editor
// saving without a temporary file does: a poll may see any prefix of it.
func writeInPlace(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

// step is one action on the tokens file, then what must hold.
type step struct {
	write  *string // content to write in place first; nil: none
	action string  // "poll" or "reload"
	errIs  error   // the error the action must return (nil: none)
	errMsg string  // text the error must contain
	// accept maps a token to the publish patterns it must have ("" for
	// full access, i.e. "*"); refuse lists tokens that must be refused.
	accept map[string]string
	refuse []string
}

func content(s string) *string { return &s }

func runSteps(t *testing.T, initial string, steps []step) (*FileStore, *syncBuffer) {
	t.Helper()
	s, path, logs := openStore(t, initial)
	for i, st := range steps {
		if st.write != nil {
			writeInPlace(t, path, *st.write)
		}
		var err error
		switch st.action {
		case "poll":
			err = s.poll()
		case "reload":
			err = s.Reload()
		case "":
		default:
			t.Fatalf("step %d: unknown action %q", i, st.action)
		}
		if st.errIs != nil {
			require.ErrorIs(t, err, st.errIs, "step %d", i)
			assert.Contains(t, err.Error(), st.errMsg, "step %d", i)
		} else {
			require.NoError(t, err, "step %d", i)
		}
		for tok, pub := range st.accept {
			perms, ok := s.Lookup(tok)
			require.True(t, ok, "step %d: %s refused", i, tok)
			if pub == "" {
				pub = "*"
			}
			assert.Equal(t, Patterns(strings.Split(pub, ",")), perms.Publish, "step %d: %s publish", i, tok)
		}
		for _, tok := range st.refuse {
			assert.False(t, s.Contains(tok), "step %d: %s accepted", i, tok)
		}
	}
	out := logs.String()
	for _, tok := range []string{tokB, tokC, tok16, tok15} {
		assert.NotContains(t, out, tok, "the log must never hold a token")
	}
	return s, logs
}

func TestFileStorePartialWrites(t *testing.T) {
	both := tokB + "\n" + tokC + "\n"
	bc := map[string]string{tokB: "", tokC: ""}
	tests := []struct {
		name     string
		initial  string
		steps    []step
		wantLogs []string
		noLogs   []string
	}{
		{
			// The file is truncated, a poll reads it empty, and it is
			// rewritten before the next poll: the empty file is never applied.
			name:    "truncated, then rewritten within a poll",
			initial: both,
			steps: []step{
				{write: content(""), action: "poll", accept: bc},
				{write: content(both + tok16 + "\n"), action: "poll", accept: bc, refuse: []string{tok16}},
				{action: "poll", accept: map[string]string{tokB: "", tokC: "", tok16: ""}},
			},
		},
		{
			// Truncated for longer than two polls: an empty set is refused
			// while the tokens in force are not none.
			name:    "truncated for long, then rewritten",
			initial: both,
			steps: []step{
				{write: content(""), action: "poll", accept: bc},
				{action: "poll", errIs: ErrNoUsableToken, errMsg: "keeping the previous 2 tokens", accept: bc},
				{action: "poll", errIs: ErrNoUsableToken, accept: bc},
				{action: "reload", errIs: ErrNoUsableToken, accept: bc},
				{write: content(tokC + "\n"), action: "poll", accept: bc},
				{action: "poll", accept: map[string]string{tokC: ""}, refuse: []string{tokB}},
			},
		},
		{
			// "<token> publish=order.*" cut after its token would be a bare
			// token, with full access: an explicit reload leaves it out.
			name:    "scoped line cut after its token, reloaded",
			initial: tokB + "\n",
			steps: []step{
				{write: content(tokB + "\n" + tokC), action: "reload", accept: map[string]string{tokB: ""}, refuse: []string{tokC}},
				{write: content(tokB + "\n" + tokC + " publish=order.*\n"), action: "reload",
					accept: map[string]string{tokB: "", tokC: "order.*"}},
			},
			wantLogs: []string{`msg="tokens file: line ignored until the file stops changing"`, "line=2", "no newline"},
		},
		{
			name:    "scoped line cut after its token, polled",
			initial: tokB + "\n",
			steps: []step{
				{write: content(tokB + "\n" + tokC), action: "poll", refuse: []string{tokC}},
				{write: content(tokB + "\n" + tokC + " publish=order.*\n"), action: "poll", refuse: []string{tokC}},
				{action: "poll", accept: map[string]string{tokB: "", tokC: "order.*"}},
			},
		},
		{
			// A cut after a complete first field narrows; it never widens.
			name:    "scoped line cut inside its fields",
			initial: tokB + "\n",
			steps: []step{
				{write: content(tokB + "\n" + tokC + " publish=order.* subscr"), action: "reload", refuse: []string{tokC}},
				{write: content(tokB + "\n" + tokC + " publish=order.* subscribe=a\n"), action: "reload",
					accept: map[string]string{tokC: "order.*"}},
			},
		},
		{
			// An editor that does not end the file with a newline: the last
			// line is applied once two polls read the same file.
			name:    "editor file without a final newline",
			initial: tokB + "\n",
			steps: []step{
				{write: content(tokB + "\n" + tokC), action: "reload", accept: map[string]string{tokB: ""}, refuse: []string{tokC}},
				{action: "reload", refuse: []string{tokC}},
				{action: "poll", refuse: []string{tokC}},
				{action: "poll", accept: bc},
				{action: "poll", accept: bc},
				{action: "reload", accept: bc},
			},
			wantLogs: []string{`msg="tokens file unchanged"`},
		},
		{
			name:    "editor file without a final newline, polled only",
			initial: tokB + "\n",
			steps: []step{
				{write: content(tokB + "\n" + tokC + " publish=x"), action: "poll", refuse: []string{tokC}},
				{action: "poll", accept: map[string]string{tokB: "", tokC: "x"}},
			},
		},
		{
			name:    "editor file without a final newline, at start",
			initial: tokB + "\n" + tokC,
			steps: []step{
				{accept: map[string]string{tokB: ""}, refuse: []string{tokC}},
				{action: "poll", refuse: []string{tokC}},
				{action: "poll", accept: bc},
			},
		},
		{
			// A comment or blank tail without newline hides nothing: the
			// tokens before it are applied at once, and later polls are quiet.
			name:    "comment as the unterminated last line",
			initial: tokB + "\n",
			steps: []step{
				{write: content(both + "# end"), action: "reload", accept: bc},
				{write: content(both + "  \t"), action: "reload", accept: bc},
				{action: "poll", accept: bc},
			},
			noLogs: []string{"line ignored"},
		},
		{
			name:    "UTF-8 byte order mark",
			initial: "\xef\xbb\xbf" + tokB + "\n",
			steps: []step{
				{accept: map[string]string{tokB: ""}, refuse: []string{"\xef\xbb\xbf" + tokB, "\ufeff" + tokB}},
				{action: "poll", accept: map[string]string{tokB: ""}},
				{write: content("\xef\xbb\xbf" + tokC + "\n" + tokB + "\n"), action: "reload", accept: bc},
			},
			wantLogs: []string{"byte order mark"},
		},
		{
			// Comments only, ending in a newline: empty on purpose.
			name:    "explicitly empty file",
			initial: both,
			steps: []step{
				{write: content("# nobody for now\n\n"), action: "poll", accept: bc},
				{action: "poll", refuse: []string{tokB, tokC}},
				{write: content(tokB + "\n"), action: "reload", accept: map[string]string{tokB: ""}},
				{write: content("# nobody\n"), action: "reload", refuse: []string{tokB}},
			},
			wantLogs: []string{"no usable token: every request will be refused"},
		},
		{
			name:    "empty files that do not say so",
			initial: both,
			steps: []step{
				{write: content(""), action: "reload", errIs: ErrNoUsableToken, accept: bc},
				{write: content("\n"), action: "reload", errIs: ErrNoUsableToken, accept: bc},
				{write: content(" \n\t\r\n"), action: "reload", errIs: ErrNoUsableToken, accept: bc},
				{write: content("\xef\xbb\xbf"), action: "reload", errIs: ErrNoUsableToken, accept: bc},
				{write: content("# nobody"), action: "reload", errIs: ErrNoUsableToken, accept: bc},
				{action: "poll"},
				{action: "poll", errIs: ErrNoUsableToken, accept: bc},
				{write: content(tok15 + "\n"), action: "reload", errIs: ErrNoUsableToken, accept: bc},
				{write: content("# nobody\n" + tokB), action: "reload", errIs: ErrNoUsableToken, accept: bc},
			},
		},
		{
			// With no token in force, an empty file is no loss: applied.
			name:    "empty after empty",
			initial: "",
			steps: []step{
				{write: content("\n"), action: "reload", refuse: []string{tokB}},
				{write: content(tokB + "\n"), action: "reload", accept: map[string]string{tokB: ""}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, logs := runSteps(t, tt.initial, tt.steps)
			for _, want := range tt.wantLogs {
				assert.Contains(t, logs.String(), want)
			}
			for _, not := range tt.noLogs {
				assert.NotContains(t, logs.String(), not)
			}
		})
	}
}

// TestFileStoreRefusedFileLoggedOnce: a refused file is not parsed and
// logged again at every poll.
func TestFileStoreRefusedFileLoggedOnce(t *testing.T) {
	_, logs := runSteps(t, tokB+"\n", []step{
		{write: content(tok15 + "\n"), action: "poll"},
		{action: "poll", errIs: ErrNoUsableToken},
		{action: "poll", errIs: ErrNoUsableToken},
		{action: "poll", errIs: ErrNoUsableToken},
	})
	assert.Equal(t, 1, strings.Count(logs.String(), "shorter than 16"), logs.String())

	// Once another file was applied, the refused one is judged afresh.
	_, logs = runSteps(t, tokB+"\n", []step{
		{write: content(tok15 + "\n"), action: "poll"},
		{action: "poll", errIs: ErrNoUsableToken},
		{write: content("# nobody\n"), action: "poll"},
		{action: "poll", refuse: []string{tokB}},
		{write: content(tok15 + "\n"), action: "poll"},
		{action: "poll", refuse: []string{tokB}},
	})
	assert.Equal(t, 2, strings.Count(logs.String(), "shorter than 16"), logs.String())
}

// TestFileStoreReloadUnterminatedUnchanged: reloading a file whose last
// line was left out as unterminated, unchanged since, is "unchanged".
func TestFileStoreReloadUnterminatedUnchanged(t *testing.T) {
	_, logs := runSteps(t, tokB+"\n", []step{
		{write: content(tokB + "\n" + tokC), action: "reload", refuse: []string{tokC}},
		{action: "reload", refuse: []string{tokC}},
		{action: "reload", refuse: []string{tokC}},
	})
	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, `msg="tokens file reloaded"`), out)
	assert.Equal(t, 2, strings.Count(out, `msg="tokens file unchanged"`), out)
	assert.Equal(t, 1, strings.Count(out, "line ignored"), out)
}

func TestFileStoreBOMLoggedOncePerChange(t *testing.T) {
	_, logs := runSteps(t, "\xef\xbb\xbf"+tokB+"\n", []step{
		{action: "poll"}, {action: "poll"}, {action: "reload"},
	})
	assert.Equal(t, 1, strings.Count(logs.String(), "byte order mark"))
}

// TestFileStoreWatchAppliesEditorFile: under Watch, a file without a final
// newline takes effect without any further change.
func TestFileStoreWatchAppliesEditorFile(t *testing.T) {
	s, path, _ := openStore(t, tokB+"\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, 2*time.Millisecond)
	}()
	defer func() { cancel(); <-done }()

	writeInPlace(t, path, tokC+" publish=a")
	require.Eventually(t, func() bool { return s.Contains(tokC) }, 5*time.Second, time.Millisecond)
	perms, _ := s.Lookup(tokC)
	assert.Equal(t, Patterns{"a"}, perms.Publish)
	assert.False(t, s.Contains(tokB))
}

func TestOpenFileStoreRefusesDeepMissingFolder(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "etc", "eventsrv", "tokens")
	log, _ := newTestLogger()
	s, err := OpenFileStore(path, log)
	require.Error(t, err)
	assert.Nil(t, s)
	assert.Contains(t, err.Error(), filepath.Join(root, "etc", "eventsrv"))
	_, err = os.Stat(filepath.Join(root, "etc"))
	assert.ErrorIs(t, err, os.ErrNotExist, "no folder is created")
}

func TestOpenFileStoreLogsAbsolutePath(t *testing.T) {
	root := t.TempDir()
	t.Chdir(root)
	log, logs := newTestLogger()
	s, err := OpenFileStore(filepath.Join("tokens", "tokens"), log)
	require.NoError(t, err)
	abs := filepath.Join(root, "tokens", "tokens")
	out := logs.String()
	assert.Contains(t, out, "created it with one random token; read the token from the file\" path="+abs+"\n")
	assert.Contains(t, out, `msg="tokens file loaded" path=`+abs+" ")

	// Later reloads read and name the same file, wherever the process is.
	t.Chdir(t.TempDir())
	require.NoError(t, s.Reload())
	assert.Contains(t, logs.String(), `msg="tokens file unchanged" path=`+abs+"\n")
}

// TestFileStoreOnChange: the callbacks run after a reload that changed the
// tokens or their permissions, and only then.
func TestFileStoreOnChange(t *testing.T) {
	s, path, _ := openStore(t, tokB+"\n"+tokC+"\n")
	var calls, calls2 atomic.Int32
	s.OnChange(func() {
		// The new set is in force when f runs.
		calls.Add(1)
	})
	s.OnChange(func() { calls2.Add(1) })
	steps := []struct {
		name    string
		write   string
		polls   int // 0: an explicit Reload
		errIs   error
		changed bool
	}{
		{"unchanged", tokB + "\n" + tokC + "\n", 0, nil, false},
		{"comment added", "# hi\n" + tokB + "\n" + tokC + "\n", 0, nil, false},
		{"permissions changed", "# hi\n" + tokB + "\n" + tokC + " publish=a\n", 0, nil, true},
		{"token removed", tokB + "\n", 0, nil, true},
		{"refused as empty", "", 0, ErrNoUsableToken, false},
		{"token added, still changing", tokB + "\n" + tok16 + "\n", 1, nil, false},
		{"token added, settled", tokB + "\n" + tok16 + "\n", 2, nil, true},
		{"same tokens, other order", tok16 + "\n" + tokB + "\n", 0, nil, true},
		{"admin granted", tok16 + " admin\n" + tokB + "\n", 0, nil, true},
		{"publish and subscribe set", tok16 + " admin publish=p subscribe=s\n" + tokB + "\n", 0, nil, true},
		{"subscribe changed only", tok16 + " admin publish=p subscribe=t\n" + tokB + "\n", 0, nil, true},
		{"admin taken only", tok16 + " publish=p subscribe=t\n" + tokB + "\n", 0, nil, true},
		{"fields reordered", tok16 + " subscribe=t publish=p\n" + tokB + "\n", 0, nil, false},
	}
	want := int32(0)
	for _, st := range steps {
		writeInPlace(t, path, st.write)
		var err error
		if st.polls == 0 {
			err = s.Reload()
		}
		for range st.polls {
			err = s.poll()
		}
		if st.errIs != nil {
			require.ErrorIs(t, err, st.errIs, st.name)
		} else {
			require.NoError(t, err, st.name)
		}
		if st.changed {
			want++
		}
		assert.Equal(t, want, calls.Load(), st.name)
		assert.Equal(t, want, calls2.Load(), st.name)
	}
}

// TestRecheck: permissions from a tokens-file token can be looked up again
// after a reload without the token; anything else passes as it is.
func TestRecheck(t *testing.T) {
	s, path, logs := openStore(t, tokB+"\n"+tokC+" publish=a\n"+tok16+" subscribe=x\n")
	log, _ := newTestLogger()
	a := NewAuthenticator(s, log)
	pb, err := a.Authenticate("Basic "+tokB, "r", "http")
	require.NoError(t, err)
	pc, err := a.Authenticate("Basic "+b64("user:"+tokC), "r", "http")
	require.NoError(t, err)
	p16, err := a.Authenticate("Basic "+tok16, "r", "http")
	require.NoError(t, err)

	cur, ok := a.Recheck(pb)
	require.True(t, ok, "nothing changed yet")
	assert.Equal(t, pb, cur)

	// tokB removed, tokC narrowed, tok16 unchanged but moved.
	writeInPlace(t, path, tok16+" subscribe=x\n"+tokC+" publish=a.b\n")
	require.NoError(t, s.Reload())
	_, ok = a.Recheck(pb)
	assert.False(t, ok, "a removed token")
	cur, ok = a.Recheck(pc)
	require.True(t, ok)
	assert.Equal(t, Patterns{"a.b"}, cur.Publish, "a changed role is the current one")
	assert.Empty(t, cur.Subscribe)
	cur, ok = a.Recheck(p16)
	require.True(t, ok)
	assert.Equal(t, Patterns{"x"}, cur.Subscribe)
	cur, ok = a.Recheck(cur)
	require.True(t, ok, "current permissions can be rechecked again")
	assert.Equal(t, Patterns{"x"}, cur.Subscribe)

	// A token put back is accepted again, by the same permissions value.
	writeInPlace(t, path, tokB+"\n")
	require.NoError(t, s.Reload())
	cur, ok = a.Recheck(pb)
	require.True(t, ok)
	assert.Equal(t, Patterns{"*"}, cur.Publish)
	_, ok = a.Recheck(pc)
	assert.False(t, ok)

	// JWT permissions and FullAccess carry no token: returned as they are.
	v, err := NewHMACVerifier(testSecret)
	require.NoError(t, err)
	a.WithJWT(v)
	jwtTok, err := MintHMAC(testSecret, "s", []string{"j"}, nil, time.Hour)
	require.NoError(t, err)
	pj, err := a.Authenticate("Bearer "+jwtTok, "r", "http")
	require.NoError(t, err)
	for _, p := range []Permissions{pj, FullAccess, {}} {
		cur, ok = a.Recheck(p)
		assert.True(t, ok)
		assert.Equal(t, p, cur)
	}

	// A TokenChecker without digest lookups cannot revoke: all pass.
	other := NewAuthenticator(fakeTokens{}, log)
	cur, ok = other.Recheck(pc)
	assert.True(t, ok)
	assert.Equal(t, pc, cur)

	assert.NotContains(t, logs.String(), tokB)
}
