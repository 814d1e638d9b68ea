package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInitCodes(t *testing.T) {
	s := startServer(t, map[string]string{"MAX_SUBSCRIPTIONS": "3"})
	good := "Basic " + testToken
	cases := []struct {
		name, msg, code string
	}{
		{"not json", `hello`, "INVALID_SYNTAX"},
		{"truncated", `{"events":["a"]`, "INVALID_SYNTAX"},
		{"array", `["a"]`, "INVALID_SYNTAX"},
		{"string", `"a"`, "INVALID_SYNTAX"},
		{"null", `null`, "INVALID_SYNTAX"},
		{"invalid utf-8", "{\"events\":[\"\xff\"]}", "INVALID_SYNTAX"},
		{"no events", `{"authentication":"` + good + `"}`, "INVALID_EVENTS_MISSING"},
		{"events null", `{"authentication":"` + good + `","events":null}`, "INVALID_EVENTS_MISSING"},
		{"events string", `{"authentication":"` + good + `","events":"a"}`, "INVALID_EVENTS_MISSING"},
		{"events numbers", `{"authentication":"` + good + `","events":[1]}`, "INVALID_EVENTS_MISSING"},
		{"events object", `{"authentication":"` + good + `","events":{}}`, "INVALID_EVENTS_MISSING"},
		{"no authentication", `{"events":["a"]}`, "UNAUTHENTICATED"},
		{"authentication not string", `{"authentication":1,"events":["a"]}`, "UNAUTHENTICATED"},
		{"wrong token", initMsg("Basic wrong-token-0123456789", "a"), "UNAUTHENTICATED"},
		{"short token", initMsg("Basic short", "a"), "UNAUTHENTICATED"},
		{"bearer", initMsg("Bearer "+testToken, "a"), "AUTH_UNRECOGNIZED_SCHEME"},
		{"too many", initMsg(good, "a", "b", "c", "d"), "INVALID_EVENTS_TOO_MANY"},
		{"ok", initMsg(good, "a", "b"), "OK"},
		{"ok empty", initMsg(good), "OK"},
		{"ok with unknown keys", `{"authentication":"` + good + `","events":["a"],"future":{"x":[1]}}`, "OK"},
		{"since not a string", `{"authentication":"` + good + `","events":["a"],"since":1}`, "INVALID_SYNTAX"},
		{"since an object", `{"authentication":"` + good + `","events":["a"],"since":{}}`, "INVALID_SYNTAX"},
		{"since null is absent", `{"authentication":"` + good + `","events":["a"],"since":null}`, "OK"},
		{"ok duplicates within limit", initMsg(good, "a", "a", "b", "b", "c"), "OK"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := s.dial()
			got := sendInit(t, c, tc.msg)
			assert.Equal(t, `{"type":"init","code":"`+tc.code+`"}`, got)
		})
	}
}

func TestFailedInitGetsNothingThenRetrySubscribes(t *testing.T) {
	s := startServer(t, nil)
	c := s.dial()
	require.Equal(t, `{"type":"init","code":"UNAUTHENTICATED"}`, sendInit(t, c, initMsg("Basic wrong-token-0123456789", "a")))
	s.publish("a", `1`) // must not reach c
	require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Basic "+testToken, "a")))
	s.publish("a", `2`)
	require.Equal(t, eventJSON("a", `2`), readEvent(t, c))
}

func TestLaterInitAddsEvents(t *testing.T) {
	s := startServer(t, nil)
	c := s.subscribe("a")
	require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Basic "+testToken, "b")))
	// A failed init in between takes nothing away.
	require.Equal(t, `{"type":"init","code":"INVALID_EVENTS_MISSING"}`, sendInit(t, c, `{}`))
	s.publish("a", `1`)
	s.publish("c", `2`)
	s.publish("b", `3`)
	require.Equal(t, eventJSON("a", `1`), readEvent(t, c))
	require.Equal(t, eventJSON("b", `3`), readEvent(t, c))
}

func TestDeliveryIsByteExact(t *testing.T) {
	s := startServer(t, nil)
	c := s.subscribe("e")
	big := `"` + strings.Repeat("x", 64<<10) + `"`
	datas := []string{
		`{"x":1}`, `{ "x" : [ 1 , 2 ] , "y" : { } }`, `[]`, `[1,"two",null,true]`, `"text"`,
		`"\u00e9\n\"quoted\""`, `"é日本😀"`, `0`, `-0.50`, `1e3`, `12345678901234567890`, `true`, `false`, `null`, big,
	}
	for _, d := range datas {
		s.publish("e", d)
	}
	for _, d := range datas {
		require.Equal(t, eventJSON("e", d), readEvent(t, c))
	}
	// No data at all is delivered as null.
	status, _ := s.post("Basic "+testToken, `{"event":"e"}`)
	require.Equal(t, 200, status)
	require.Equal(t, `{"type":"event","id":"ID","event":"e","data":null}`, readEvent(t, c))
	// Whitespace around data is not part of the value.
	status, _ = s.post("Basic "+testToken, "{\"event\":\"e\",\"data\":\n  {\"a\":1}  \n}")
	require.Equal(t, 200, status)
	require.Equal(t, `{"type":"event","id":"ID","event":"e","data":{"a":1}}`, readEvent(t, c))
}

func TestEventNamesAreEncodedAsJSONStringify(t *testing.T) {
	s := startServer(t, nil)
	cases := []struct{ posted, frameName string }{
		{`"événement"`, `"événement"`},
		{`"日本語"`, `"日本語"`},
		{`"😀"`, `"😀"`},
		{`"\u00e9"`, `"é"`}, // escapes are decoded, then written as JSON.stringify would
		{`"a\"b"`, `"a\"b"`},
		{`"back\\slash"`, `"back\\slash"`},
		{`"tab\there"`, `"tab\there"`},
		{`"\u0001"`, `"\u0001"`},
		{`"<&>"`, `"<&>"`},
	}
	for _, tc := range cases {
		t.Run(tc.posted, func(t *testing.T) {
			var name string
			require.NoError(t, jsonUnmarshal(tc.posted, &name))
			c := s.subscribe(name)
			status, resp := s.post("Basic "+testToken, `{"event":`+tc.posted+`,"data":1}`)
			require.Equal(t, 200, status, resp)
			require.Equal(t, `{"type":"event","id":"ID","event":`+tc.frameName+`,"data":1}`, readEvent(t, c))
		})
	}
}

func TestDuplicateNamesDeliverOnce(t *testing.T) {
	s := startServer(t, nil)
	c := s.subscribe("a", "a", "b")
	require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Basic "+testToken, "a")))
	s.publish("a", `1`)
	s.publish("b", `2`)
	require.Equal(t, eventJSON("a", `1`), readEvent(t, c))
	require.Equal(t, eventJSON("b", `2`), readEvent(t, c), "a was delivered twice")
}

func TestOrderIsTheSameForEverySubscriber(t *testing.T) {
	s := startServer(t, nil)
	const subs, publishers, perPublisher = 8, 4, 100
	conns := make([]*websocket.Conn, subs)
	for i := range conns {
		conns[i] = s.subscribe("a", "b")
	}
	// Concurrent publishers, on two events: every subscriber must see one
	// and the same interleaving, and each publisher's events in its order.
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perPublisher {
				body := fmt.Sprintf(`{"event":"%s","data":[%d,%d]}`, []string{"a", "b"}[i%2], p, i)
				status, resp := s.post("Basic "+testToken, body)
				assert.Equal(t, 200, status, resp)
			}
		}()
	}
	wg.Wait()
	var first []string
	for i, c := range conns {
		got := make([]string, 0, publishers*perPublisher)
		last := map[int]int{}
		for range publishers * perPublisher {
			msg := readText(t, c)
			var p, n int
			_, err := fmt.Sscanf(msg[strings.Index(msg, `"data":`):], `"data":[%d,%d]}`, &p, &n)
			require.NoError(t, err, msg)
			if prev, ok := last[p]; ok {
				require.Greater(t, n, prev, "publisher %d out of order for subscriber %d", p, i)
			}
			last[p] = n
			got = append(got, msg)
		}
		if i == 0 {
			first = got
			continue
		}
		for k := range got {
			require.Equal(t, first[k], got[k], "subscriber %d saw another order at delivery %d", i, k)
		}
	}
}

// clientFrame is a masked client frame (mask key zero: payload as is).
func clientFrame(b0 byte, payload string) []byte {
	f := []byte{b0, 0x80 | byte(len(payload)), 0, 0, 0, 0}
	return append(f, payload...)
}

// Two messages in one TCP segment are both read: the second must not wait
// for more bytes from the socket.
func TestMessagesInOneSegment(t *testing.T) {
	s := startServer(t, nil)
	c := s.dial()
	bad := clientFrame(0x81, `{}`)
	good := clientFrame(0x81, initMsg("Basic "+testToken, "a"))
	_, err := c.NetConn().Write(append(bad, good...))
	require.NoError(t, err)
	require.Equal(t, `{"type":"init","code":"INVALID_EVENTS_MISSING"}`, readText(t, c))
	require.Equal(t, `{"type":"init","code":"OK"}`, readText(t, c))
}

func TestProtocolViolationsAreClosedWith1002(t *testing.T) {
	s := startServer(t, nil)
	cases := map[string][]byte{
		"unmasked frame":         {0x81, 0x02, '{', '}'},
		"fragmented ping":        clientFrame(0x09, "x"),
		"reserved bits":          clientFrame(0x81|0x40, "{}"),
		"unknown control opcode": clientFrame(0x8B, ""),
		"close code 1005":        clientFrame(0x88, "\x03\xed"),
		"close of one byte":      clientFrame(0x88, "\x03"),
		"close reason not utf-8": clientFrame(0x88, "\x03\xe8\xff"),
	}
	for name, frame := range cases {
		t.Run(name, func(t *testing.T) {
			c := s.dial()
			_, err := c.NetConn().Write(frame)
			require.NoError(t, err)
			ce := readClose(t, c)
			assert.Equal(t, websocket.CloseProtocolError, ce.Code)
		})
	}
	s.requireServes()
}

func TestPeerCloseIsAnswered(t *testing.T) {
	s := startServer(t, nil)
	c := s.subscribe("a")
	require.NoError(t, c.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second)))
	ce := readClose(t, c)
	assert.Equal(t, websocket.CloseNormalClosure, ce.Code)
	s.waitLog(`reason="closed by peer"`)
}

// Tokens may carry permissions in the tokens file: publish and subscribe
// patterns; a bare token may do everything.
func TestTokenPermissionsAreEnforced(t *testing.T) {
	s := startServer(t, map[string]string{"TOKENS_RELOAD_INTERVAL": "20ms"})
	const pub, sub = "publisher-token-0123456789", "subscriber-token-0123456789"
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+
		pub+" publish=order.*,invoice\n"+
		sub+" subscribe=order.created,user.*\n"))
	s.waitLog(`msg="tokens file reloaded"`)

	publishCases := []struct {
		token, event string
		status       int
		code         string
	}{
		{testToken, "anything", 200, "OK"},
		{pub, "order.created", 200, "OK"},
		{pub, "invoice", 200, "OK"},
		{pub, "invoice.paid", 403, "FORBIDDEN"},
		{pub, "order", 403, "FORBIDDEN"},
		{sub, "order.created", 403, "FORBIDDEN"},
	}
	for _, tc := range publishCases {
		status, body := s.post("Basic "+tc.token, `{"event":"`+tc.event+`"}`)
		assert.Equal(t, tc.status, status, "%s publishes %s", tc.token[:9], tc.event)
		want := `{"code":"` + tc.code + `"}`
		if tc.code == "OK" {
			want = `{"code":"OK","id":"ID"}`
		}
		assert.Equal(t, want, anyID(body))
	}
	subscribeCases := []struct {
		token  string
		events []string
		code   string
	}{
		{testToken, []string{"anything", "order.created"}, "OK"},
		{sub, []string{"order.created", "user.1", "user."}, "OK"},
		{sub, []string{"order.created", "order.paid"}, "FORBIDDEN"},
		{sub, []string{"user"}, "FORBIDDEN"},
		{pub, []string{"order.created"}, "FORBIDDEN"},
		{pub, nil, "OK"}, // nothing asked, nothing refused
	}
	for _, tc := range subscribeCases {
		c := s.dial()
		got := sendInit(t, c, initMsg("Basic "+tc.token, tc.events...))
		assert.Equal(t, `{"type":"init","code":"`+tc.code+`"}`, got, "%s subscribes %v", tc.token[:9], tc.events)
	}
	// A refused init adds nothing: the allowed event in it is not delivered.
	c := s.dial()
	require.Equal(t, `{"type":"init","code":"FORBIDDEN"}`, sendInit(t, c, initMsg("Basic "+sub, "user.1", "secret")))
	require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Basic "+sub, "order.created")))
	s.publish("user.1", `1`)
	s.publish("order.created", `2`)
	require.Equal(t, eventJSON("order.created", `2`), readEvent(t, c))
}

func TestRunTimeSubscribeAndUnsubscribe(t *testing.T) {
	s := startServer(t, map[string]string{"MAX_SUBSCRIPTIONS": "3", "TOKENS_RELOAD_INTERVAL": "20ms"})
	const scoped = "scoped-token-0123456789abc"
	require.NoError(t, writeFile(s.tokensFile, testToken+"\n"+scoped+" subscribe=job.*\n"))
	s.waitLog(`msg="tokens file reloaded"`)

	c := s.dial()
	require.Equal(t, `{"type":"subscribe","code":"UNAUTHENTICATED"}`,
		sendInit(t, c, `{"type":"subscribe","events":["a"]}`), "before init")
	require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Basic "+testToken, "a")))

	cases := []struct{ msg, reply string }{
		{`{"type":"subscribe"}`, `{"type":"subscribe","code":"INVALID_EVENTS_MISSING"}`},
		{`{"type":"unsubscribe","events":[1]}`, `{"type":"unsubscribe","code":"INVALID_EVENTS_MISSING"}`},
		{`{"type":"subscribe","events":["b","c","d"]}`, `{"type":"subscribe","code":"INVALID_EVENTS_TOO_MANY"}`},
		{`{"type":"dance","events":["b"]}`, `{"type":"error","code":"INVALID_TYPE"}`},
		{`{"type":7,"events":["b"]}`, `{"type":"init","code":"INVALID_SYNTAX"}`},
		{`{"type":"subscribe","events":["b","b"]}`, `{"type":"subscribe","code":"OK"}`},
	}
	for _, tc := range cases {
		require.Equal(t, tc.reply, sendInit(t, c, tc.msg), tc.msg)
	}
	s.publish("b", `1`)
	require.Equal(t, eventJSON("b", `1`), readEvent(t, c), "subscribe takes effect for the next event")

	require.Equal(t, `{"type":"unsubscribe","code":"OK"}`, sendInit(t, c, `{"type":"unsubscribe","events":["a","never"]}`))
	s.publish("a", `2`)
	s.publish("b", `3`)
	require.Equal(t, eventJSON("b", `3`), readEvent(t, c), "unsubscribe takes effect for the next event")

	// Subscribes are checked against the permissions of the last init.
	d := s.dial()
	require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, d, initMsg("Basic "+scoped)))
	require.Equal(t, `{"type":"subscribe","code":"FORBIDDEN"}`, sendInit(t, d, `{"type":"subscribe","events":["job.1","other"]}`))
	require.Equal(t, `{"type":"subscribe","code":"OK"}`, sendInit(t, d, `{"type":"subscribe","events":["job.1"]}`))
	s.publish("other", `4`)
	s.publish("job.1", `5`)
	require.Equal(t, eventJSON("job.1", `5`), readEvent(t, d))
}
