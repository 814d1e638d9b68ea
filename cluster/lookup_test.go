package cluster

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/internal/natstest"
)

// TestLookStreamUpAsksAgain: a lookup that JetStream leaves unanswered
// (as while the stream is being created) is asked again after lookupTry,
// rather than waiting out the caller's deadline; one never answered ends
// with the caller's context. The JetStream API is played by the test on
// its own prefix.
func TestLookStreamUpAsksAgain(t *testing.T) {
	nc, err := nats.Connect(natstest.StartServer(t).URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	direct, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := direct.CreateStream(context.Background(), jetstream.StreamConfig{Name: "S", Subjects: []string{"S.>"}})
	require.NoError(t, err)
	info, err := json.Marshal(s.CachedInfo())
	require.NoError(t, err)
	js, err := jetstream.NewWithAPIPrefix(nc, "FAKE.API")
	require.NoError(t, err)

	var asked, askedSilent atomic.Int32
	_, err = nc.Subscribe("FAKE.API.STREAM.INFO.S", func(m *nats.Msg) {
		if asked.Add(1) > 1 {
			_ = m.Respond(info)
		}
	})
	require.NoError(t, err)
	_, err = nc.Subscribe("FAKE.API.STREAM.INFO.SILENT", func(*nats.Msg) { askedSilent.Add(1) })
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	ctx, cancel := context.WithTimeout(context.Background(), 3*lookupTry)
	defer cancel()
	got, err := LookStreamUp(ctx, js, "S")
	require.NoError(t, err, "the second try is answered within the deadline")
	assert.Equal(t, "S", got.CachedInfo().Config.Name)
	assert.Equal(t, int32(2), asked.Load())

	ctx, cancel = context.WithTimeout(context.Background(), 2*lookupTry+lookupTry/2)
	defer cancel()
	_, err = LookStreamUp(ctx, js, "SILENT")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, askedSilent.Load(), int32(2), "asked again after a try")
}
