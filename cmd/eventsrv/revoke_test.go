package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A token removed from the tokens file closes the connections that use it
// (4003 "token revoked"); a role narrowed below what a connection is
// subscribed to closes it too (4003 "permissions changed"); a connection
// whose subscriptions are all still allowed stays, with the narrowed role
// for later subscribes. Before, the removed token kept working on open
// connections, and could even subscribe to more.
func TestRevokedTokensCloseOpenConnections(t *testing.T) {
	const (
		keep   = "keep-token-0123456789abcdef"
		narrow = "narrow-token-0123456789abcdef"
		gone   = "gone-token-0123456789abcdef"
	)
	s := startServer(t, map[string]string{"TOKENS_RELOAD_INTERVAL": "20ms"})
	require.NoError(t, writeFile(s.tokensFile, strings.Join([]string{
		testToken, keep + " subscribe=a.*", narrow + " subscribe=a.*,b", gone, ""}, "\n")))
	s.waitLog(`msg="tokens file reloaded"`)

	sub := func(token string, events ...string) *websocket.Conn {
		c := s.dial()
		require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Basic "+token, events...)))
		return c
	}
	kept := sub(keep, "a.1")
	narrowedOK := sub(narrow, "a.1")
	narrowedOut := sub(narrow, "a.1", "b")
	revoked := sub(gone, "a.1")
	revokedSSE := s.openSSE("event=a.1", http.Header{"Authorization": {"Basic " + gone}})

	logsBefore := strings.Count(s.logs.String(), `msg="tokens file reloaded"`)
	require.NoError(t, writeFile(s.tokensFile, strings.Join([]string{
		testToken, keep + " subscribe=a.*", narrow + " subscribe=a.*", ""}, "\n")))
	require.Eventually(t, func() bool {
		return strings.Count(s.logs.String(), `msg="tokens file reloaded"`) > logsBefore
	}, 10*time.Second, 5*time.Millisecond)

	for _, c := range []struct {
		conn   *websocket.Conn
		reason string
	}{{revoked, "token revoked"}, {narrowedOut, "permissions changed"}} {
		ce := readClose(t, c.conn)
		assert.Equal(t, 4003, ce.Code)
		assert.Equal(t, c.reason, ce.Text)
	}
	// The stream's last line says why it ended.
	var lines []string
	for {
		line, err := revokedSSE.br.ReadString('\n')
		if err != nil {
			break
		}
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
	assert.Contains(t, lines, ": close token revoked")

	s.publish("a.1", "1")
	assert.Equal(t, eventJSON("a.1", "1"), readEvent(t, kept))
	assert.Equal(t, eventJSON("a.1", "1"), readEvent(t, narrowedOK))
	assert.Equal(t, `{"type":"subscribe","code":"FORBIDDEN"}`,
		sendInit(t, narrowedOK, `{"type":"subscribe","events":["b"]}`), "the narrowed role applies to later subscribes")
	assert.Equal(t, `{"type":"init","code":"UNAUTHENTICATED"}`, sendInit(t, s.dial(), initMsg("Basic "+gone, "a.1")))
}
