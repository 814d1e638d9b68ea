package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestCovers(t *testing.T) {
	p := Patterns{"order.*", "invoice.paid"}
	for name, want := range map[string]bool{
		"order.created": true, "order.*": true, "order.eu.*": true, "order.": true,
		"*": false, "ord*": false, "invoice.paid": true, "invoice.*": false, "invoice.paid*": false,
		"other": false,
	} {
		assert.Equal(t, want, p.Covers(name), name)
	}
	assert.True(t, Patterns{"*"}.Covers("*"))
	assert.True(t, Patterns{"*"}.Covers("a*"))
	assert.False(t, Patterns{}.Covers("*"))
}

// FuzzCovers: a subscription that Covers allows never receives an event
// the permissions do not allow. For a pattern, every name it matches
// (itself without the *, and that plus a suffix) must be allowed; and a
// name without * is covered exactly when it is allowed.
func FuzzCovers(f *testing.F) {
	f.Add("order.*", "order.*", "x")
	f.Add("order.*", "ord*", "")
	f.Add("*", "a*", "b")
	f.Add("a,b*", "b", "")
	f.Fuzz(func(t *testing.T, perms, name, suffix string) {
		p, err := ParsePatterns(perms)
		if err != nil {
			return
		}
		prefix, wild := strings.CutSuffix(name, "*")
		if !wild {
			if p.Covers(name) != p.Allows(name) {
				t.Fatalf("%q covers %q: %v, allows: %v", perms, name, p.Covers(name), p.Allows(name))
			}
			return
		}
		if p.Covers(name) && (!p.Allows(prefix) || !p.Allows(prefix+suffix)) {
			t.Fatalf("%q covers %q but does not allow %q or %q", perms, name, prefix, prefix+suffix)
		}
	})
}

// Work queues have permissions of their own: enqueue= and work=, in the
// tokens file and in JWT claims; a bare token may do both.
func TestQueuePermissions(t *testing.T) {
	p, err := parsePermissions([]string{"enqueue=tickets,render.*", "work=tickets"})
	assert.NoError(t, err)
	assert.Equal(t, Patterns{"tickets", "render.*"}, p.Enqueue)
	assert.Equal(t, Patterns{"tickets"}, p.Work)
	assert.Empty(t, p.Publish)
	assert.True(t, FullAccess.Enqueue.Allows("any") && FullAccess.Work.Allows("any"))

	secret := []byte("0123456789abcdef0123456789abcdef")
	v, err := NewHMACVerifier(secret)
	assert.NoError(t, err)
	token, err := MintHMAC(secret, "worker-1", nil, nil, time.Hour, func(c *Claims) {
		c.Enqueue, c.Work = []string{"a"}, []string{"b*"}
	})
	assert.NoError(t, err)
	got, err := v.Verify(token)
	assert.NoError(t, err)
	assert.Equal(t, Patterns{"a"}, got.Enqueue)
	assert.Equal(t, Patterns{"b*"}, got.Work)
	assert.Equal(t, "worker-1", got.Subject)
}
