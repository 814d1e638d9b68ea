package broadcast

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/auth"
)

// refreshAuth accepts "Bearer short" (everything, for 300 ms), "Bearer
// long" (everything, for an hour) and "Bearer a-only" (a only).
type refreshAuth struct{}

func (refreshAuth) Authenticate(creds, _, _ string) (auth.Permissions, error) {
	switch creds {
	case "Bearer short":
		p := auth.FullAccess
		p.Expires = time.Now().Add(300 * time.Millisecond)
		return p, nil
	case "Bearer long":
		p := auth.FullAccess
		p.Expires = time.Now().Add(time.Hour)
		return p, nil
	case "Bearer a-only":
		return auth.Permissions{Subscribe: auth.Patterns{"a"}}, nil
	}
	return auth.Permissions{}, auth.ErrUnauthenticated
}

// A later init replaces the connection's credential: a client refreshes an
// expiring JWT with {"authentication":"Bearer <new>","events":[]}, and the
// connection outlives the old token. A new token that does not allow what
// the connection is subscribed to is refused, and changes nothing.
func TestLaterInitRefreshesTheCredential(t *testing.T) {
	opts := testOptions()
	h, url := serveHub(t, NewHub(refreshAuth{}, opts))
	conn := dial(t, url)
	send(t, conn, `{"authentication":"Bearer short","events":["a","b"]}`)
	require.Equal(t, `{"type":"init","code":"OK"}`, readText(t, conn))

	send(t, conn, `{"authentication":"Bearer a-only","events":[]}`)
	assert.Equal(t, `{"type":"init","code":"FORBIDDEN","message":"this token may not subscribe to \"b\", which this connection is subscribed to; unsubscribe from it first, or use a token that allows it; nothing was changed"}`,
		readText(t, conn))
	send(t, conn, `{"authentication":"Bearer long","events":[]}`)
	require.Equal(t, `{"type":"init","code":"OK"}`, readText(t, conn))

	clients := h.snapshot()
	require.Len(t, clients, 1)
	assert.Greater(t, time.Until(*clients[0].expires.Load()), 59*time.Minute, "the connection now expires with the new token")
	_, err := h.Publish("b", []byte(`1`))
	require.NoError(t, err)
	assert.Equal(t, `{"type":"event","id":"7-1","event":"b","data":1}`, readText(t, conn), "still open, still subscribed to b")
}
