package broadcast

import (
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// topicMembers returns how many subscribers each topic has.
func topicMembers(h *Hub) map[string]int {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	out := make(map[string]int, len(h.topics))
	for name, t := range h.topics {
		out[name] = len(t.members)
	}
	return out
}

// send writes one text message.
func send(t *testing.T, conn *websocket.Conn, msg string) {
	t.Helper()
	require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(msg)))
}

// TestSubscribeAndUnsubscribeAtRunTime: after an init, subscribe adds
// names and unsubscribe removes them; an event published after the
// unsubscribe's OK is not delivered, and a topic goes away with its last
// subscriber.
func TestSubscribeAndUnsubscribeAtRunTime(t *testing.T) {
	h, url := newTestHub(t, testOptions())
	one, two := dial(t, url), dial(t, url)

	send(t, one, `{"type":"unsubscribe","events":["a"]}`)
	assert.Equal(t, `{"type":"unsubscribe","code":"UNAUTHENTICATED","message":"send a successful init first: {\"authentication\":\"Basic <token>\",\"events\":[...]}"}`, readText(t, one), "no init yet")
	send(t, one, `{"type":"subscribe","events":["a"]}`)
	assert.Equal(t, `{"type":"subscribe","code":"UNAUTHENTICATED","message":"send a successful init first: {\"authentication\":\"Basic <token>\",\"events\":[...]}"}`, readText(t, one), "no init yet")

	send(t, one, `{"authentication":"`+goodCreds+`","events":["a"]}`)
	assert.Equal(t, `{"type":"init","code":"OK"}`, readText(t, one))
	send(t, two, `{"authentication":"`+goodCreds+`","events":["a","b"]}`)
	assert.Equal(t, `{"type":"init","code":"OK"}`, readText(t, two))

	send(t, one, `{"type":"subscribe","events":["b","a"]}`)
	assert.Equal(t, `{"type":"subscribe","code":"OK"}`, readText(t, one))
	assert.Equal(t, map[string]int{"a": 2, "b": 2}, topicMembers(h))

	send(t, one, `{"type":"unsubscribe","events":["a","never"]}`)
	assert.Equal(t, `{"type":"unsubscribe","code":"OK"}`, readText(t, one))
	assert.Equal(t, map[string]int{"a": 1, "b": 2}, topicMembers(h), "a keeps its other subscriber")

	send(t, two, `{"type":"unsubscribe","events":["a"]}`)
	assert.Equal(t, `{"type":"unsubscribe","code":"OK"}`, readText(t, two))
	assert.Equal(t, map[string]int{"b": 2}, topicMembers(h), "a topic goes with its last subscriber")

	_, err := h.Publish("a", []byte(`1`))
	require.NoError(t, err)
	_, err = h.Publish("b", []byte(`2`))
	require.NoError(t, err)
	for _, conn := range []*websocket.Conn{one, two} {
		assert.Equal(t, `{"type":"event","id":"7-2","event":"b","data":2}`, readText(t, conn), "a is no longer delivered")
	}

	send(t, one, `{"type":"unsubscribe"}`)
	assert.Equal(t, `{"type":"unsubscribe","code":"INVALID_EVENTS_MISSING","message":"\"events\" must be an array of event names, e.g. \"events\":[\"order.created\"]"}`, readText(t, one))
	send(t, one, `{"type":"unsubscribe","events":["b"],"since":1}`)
	assert.Equal(t, `{"type":"unsubscribe","code":"INVALID_SYNTAX","message":"invalid message: \"since\" must be a string: the last event ID received, or \"\" on a first connection"}`, readText(t, one))
	send(t, one, `{"type":"subscribe"}`)
	assert.Equal(t, `{"type":"subscribe","code":"INVALID_EVENTS_MISSING","message":"\"events\" must be an array of event names, e.g. \"events\":[\"order.created\"]"}`, readText(t, one))
	send(t, one, `{"type":"subscribe","events":["b"],"since":1}`)
	assert.Equal(t, `{"type":"subscribe","code":"INVALID_SYNTAX","message":"invalid message: \"since\" must be a string: the last event ID received, or \"\" on a first connection"}`, readText(t, one))
	send(t, one, `{"type":"bogus","events":["b"]}`)
	assert.Equal(t, `{"type":"error","code":"INVALID_TYPE","message":"\"type\" must be \"init\", \"subscribe\", \"unsubscribe\", or for work queues \"work\", \"assign\", \"reject\" or \"done\""}`, readText(t, one))
	assert.Equal(t, map[string]int{"b": 2}, topicMembers(h), "refused messages change nothing")
}

// TestMaxSubscriptions: a connection may hold MaxSubscriptions names;
// an init or subscribe that would pass that adds nothing, and names
// already held do not count twice.
func TestMaxSubscriptions(t *testing.T) {
	opts := testOptions()
	opts.MaxSubscriptions = 2
	h, url := newTestHub(t, opts)
	conn := dial(t, url)

	send(t, conn, `{"authentication":"`+goodCreds+`","events":["a","b","c"]}`)
	assert.Equal(t, `{"type":"init","code":"INVALID_EVENTS_TOO_MANY","message":"a connection subscribes to at most 2 event names (MAX_SUBSCRIPTIONS); nothing was added"}`, readText(t, conn))
	assert.Empty(t, topicMembers(h))
	send(t, conn, `{"authentication":"`+goodCreds+`","events":["a","a"]}`)
	assert.Equal(t, `{"type":"init","code":"OK"}`, readText(t, conn))
	send(t, conn, `{"type":"subscribe","events":["b","c"]}`)
	assert.Equal(t, `{"type":"subscribe","code":"INVALID_EVENTS_TOO_MANY","message":"a connection subscribes to at most 2 event names (MAX_SUBSCRIPTIONS); nothing was added"}`, readText(t, conn))
	send(t, conn, `{"type":"subscribe","events":["a","b","b"]}`)
	assert.Equal(t, `{"type":"subscribe","code":"OK"}`, readText(t, conn))
	assert.Equal(t, map[string]int{"a": 1, "b": 1}, topicMembers(h))
	send(t, conn, `{"type":"subscribe","events":["c"]}`)
	assert.Equal(t, `{"type":"subscribe","code":"INVALID_EVENTS_TOO_MANY","message":"a connection subscribes to at most 2 event names (MAX_SUBSCRIPTIONS); nothing was added"}`, readText(t, conn))
	send(t, conn, `{"type":"unsubscribe","events":["a"]}`)
	assert.Equal(t, `{"type":"unsubscribe","code":"OK"}`, readText(t, conn))
	send(t, conn, `{"type":"subscribe","events":["c"]}`)
	assert.Equal(t, `{"type":"subscribe","code":"OK"}`, readText(t, conn), "unsubscribing frees a place")
	assert.Equal(t, map[string]int{"b": 1, "c": 1}, topicMembers(h))
}
