package auth

import (
	"strings"
	"testing"

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
