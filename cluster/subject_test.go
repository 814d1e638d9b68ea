package cluster

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSubjectEncoding(t *testing.T) {
	for _, tc := range []struct{ name, subject string }{
		{"order.created", "EVENTSRV.order%2Ecreated"},
		{"a b", "EVENTSRV.a%20b"},
		{"*", "EVENTSRV.%2A"},
		{">", "EVENTSRV.%3E"},
		{"Kept-_09azAZ", "EVENTSRV.Kept-_09azAZ"},
		{"%", "EVENTSRV.%25"},
		{"é", "EVENTSRV.%C3%A9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.subject, Subject("EVENTSRV", tc.name))
			name, ok := Name("EVENTSRV", tc.subject)
			require.True(t, ok)
			assert.Equal(t, tc.name, name)
		})
	}
}

func TestNameRefusesForeignSubjects(t *testing.T) {
	for _, s := range []string{
		"", "EVENTSRV", "EVENTSRV.", "OTHER.a", "EVENTSRV.a.b", "EVENTSRV.a b",
		"EVENTSRV.%2", "EVENTSRV.%2e", "EVENTSRV.%41", "EVENTSRV.%ZZ", "EVENTSRV.%FF",
	} {
		_, ok := Name("EVENTSRV", s)
		assert.False(t, ok, "%q", s)
	}
}

// FuzzSubject: every UTF-8 name survives the round trip, and every subject
// that decodes is the one its name encodes to (one subject per name).
func FuzzSubject(f *testing.F) {
	for _, s := range []string{"order.created", "a b", "%41", "EVENTSRV.%2E", "é>*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if utf8.ValidString(s) && s != "" {
			name, ok := Name("P", Subject("P", s))
			if !ok || name != s {
				t.Fatalf("round trip of %q: %q, %v", s, name, ok)
			}
		}
		if name, ok := Name("P", "P."+s); ok && Subject("P", name) != "P."+s {
			t.Fatalf("subject %q decodes to %q, which encodes to %q", "P."+s, name, Subject("P", name))
		}
	})
}
