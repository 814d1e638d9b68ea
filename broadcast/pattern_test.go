package broadcast

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/auth"
	"eventsrv/history"
)

// A subscription name ending in "*" matches every name with that prefix; an
// event that several of a connection's subscriptions match arrives once;
// unsubscribing the pattern stops it.
func TestPatternSubscriptions(t *testing.T) {
	h, url := newTestHub(t, testOptions())
	conn := dial(t, url)
	send(t, conn, `{"authentication":"`+goodCreds+`","events":["order.*","order.eu.*","order.created","*x"]}`)
	require.Equal(t, `{"type":"init","code":"OK"}`, readText(t, conn))
	other := dial(t, url)
	send(t, other, `{"authentication":"`+goodCreds+`","events":["*"]}`)
	require.Equal(t, `{"type":"init","code":"OK"}`, readText(t, other))

	for _, name := range []string{"order.created", "invoice", "order.eu.paid", "order.", "orders", "*x", "*xy"} {
		_, err := h.Publish(name, []byte(`1`))
		require.NoError(t, err)
	}
	// "*x" is an exact name: only a trailing "*" makes a pattern.
	want := []string{"order.created", "order.eu.paid", "order.", "*x"}
	for _, name := range want {
		assert.Equal(t, name, eventName(t, readText(t, conn)))
	}
	for _, name := range []string{"order.created", "invoice", "order.eu.paid", "order.", "orders", "*x", "*xy"} {
		assert.Equal(t, name, eventName(t, readText(t, other)), `"*" matches every name`)
	}

	send(t, conn, `{"type":"unsubscribe","events":["order.*","*x"]}`)
	require.Equal(t, `{"type":"unsubscribe","code":"OK"}`, readText(t, conn))
	for _, name := range []string{"order.x", "order.eu.x", "order.created"} {
		_, err := h.Publish(name, []byte(`1`))
		require.NoError(t, err)
	}
	assert.Equal(t, "order.eu.x", eventName(t, readText(t, conn)))
	assert.Equal(t, "order.created", eventName(t, readText(t, conn)))
	assert.Equal(t, uint64(4+7+2+3), h.Stats().Deliveries, "each delivery counted once")
}

func eventName(t *testing.T, frame string) string {
	t.Helper()
	var m struct{ Type, Event string }
	require.NoError(t, json.Unmarshal([]byte(frame), &m), frame)
	require.Equal(t, "event", m.Type, frame)
	return m.Event
}

// Permissions are checked pattern against pattern: a token allowed
// order.* may subscribe order.* and order.eu.*, not * or ord*.
func TestPatternPermissions(t *testing.T) {
	h := NewHub(orderAuth{}, testOptions())
	_, url := serveHub(t, h)
	conn := dial(t, url)
	for _, tc := range []struct{ events, code string }{
		{`["*"]`, "FORBIDDEN"},
		{`["ord*"]`, "FORBIDDEN"},
		{`["order.*","order.eu.*"]`, "OK"},
	} {
		send(t, conn, `{"authentication":"x","events":`+tc.events+`}`)
		var reply struct{ Code string }
		require.NoError(t, json.Unmarshal([]byte(readText(t, conn)), &reply))
		assert.Equal(t, tc.code, reply.Code, tc.events)
	}
}

type orderAuth struct{}

func (orderAuth) Authenticate(string, string, string) (auth.Permissions, error) {
	return auth.Permissions{Subscribe: auth.Patterns{"order.*"}}, nil
}

// A pattern resumes like a name: the kept events of every name it matches.
func TestPatternResume(t *testing.T) {
	opts := testOptions()
	opts.History = history.NewMemory(history.Limits{Size: 10})
	h, url := newTestHub(t, opts)
	for _, name := range []string{"order.a", "invoice", "order.b"} { // 7-1..7-3
		_, err := h.Publish(name, []byte(`1`))
		require.NoError(t, err)
	}
	ids, recovered, position := initResume(t, url, "7-1", "order.*")
	assert.True(t, recovered)
	assert.Equal(t, []string{"7-3"}, ids)
	assert.Equal(t, "7-3", position)
}

// FuzzMatch: an event goes to the topic of each subscription name that
// auth.Patterns, the permissions' syntax, says it matches, and to no
// other, whatever patterns come and go.
func FuzzMatch(f *testing.F) {
	f.Add("order.*,order.created,*,x*", "order.created", "x*")
	f.Add("a*,ab*,abc", "abc", "")
	f.Fuzz(func(t *testing.T, subs, event, gone string) {
		h := &Hub{topics: make(map[string]*topic), patterns: make(map[string]*topic)}
		names := strings.Split(subs, ",")
		for _, name := range names {
			h.topicOf(name, true)
		}
		if gone != "" && h.topicOf(gone, false) != nil {
			h.dropTopic(gone)
			names = slices.DeleteFunc(names, func(n string) bool { return n == gone })
		}
		want := map[*topic]bool{}
		for _, name := range names {
			if auth.Patterns([]string{name}).Allows(event) && (strings.HasSuffix(name, "*") || !strings.Contains(name, "*") || name == event) {
				want[h.topicOf(name, false)] = true
			}
		}
		got := map[*topic]bool{}
		for _, tp := range h.match(event) {
			if got[tp] {
				t.Fatalf("a topic matched twice")
			}
			got[tp] = true
		}
		if len(got) != len(want) {
			t.Fatalf("subs %q, event %q: matched %d topics, want %d", names, event, len(got), len(want))
		}
		for tp := range want {
			if !got[tp] {
				t.Fatalf("subs %q, event %q: a matching topic was missed", names, event)
			}
		}
	})
}
