package auth

import (
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
