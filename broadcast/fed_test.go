package broadcast

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/history"
)

// fedHub is a hub fed by Deliver, as in cluster mode, with a history.
func fedHub(t *testing.T, wait time.Duration) (*Hub, string) {
	t.Helper()
	opts := testOptions()
	opts.Fed, opts.Epoch, opts.ResumeWait = true, 0, wait
	opts.History = history.NewMemory(history.Limits{Size: 100})
	return newTestHub(t, opts)
}

func initResume(t *testing.T, url, since string, events ...string) (ids []string, recovered bool, position string) {
	t.Helper()
	conn := dial(t, url)
	msg, err := json.Marshal(map[string]any{"authentication": goodCreds, "events": events, "since": since})
	require.NoError(t, err)
	send(t, conn, string(msg))
	return readResume(t, conn)
}

// A fed hub takes its IDs from the stream: Publish is refused, so that no
// event reaches local subscribers by a path of its own, and delivered
// events keep the stream's epoch and sequence.
func TestFedHubKeepsTheStreamsIDs(t *testing.T) {
	h, url := fedHub(t, time.Second)
	_, err := h.Publish("a", []byte(`1`))
	require.ErrorIs(t, err, ErrFed)

	h.SetEpoch(50)
	conn := dial(t, url)
	send(t, conn, `{"authentication":"`+goodCreds+`","events":["a"]}`)
	require.JSONEq(t, `{"type":"init","code":"OK"}`, readText(t, conn))
	h.Deliver(history.ID{Epoch: 50, Seq: 3}, "a", []byte(`{"n":3}`))
	h.Deliver(history.ID{Epoch: 50, Seq: 3}, "a", []byte(`{"n":3}`)) // again: ignored
	h.Deliver(history.ID{Epoch: 50, Seq: 2}, "a", []byte(`{"n":2}`)) // older: ignored
	h.Deliver(history.ID{Epoch: 50, Seq: 4}, "a", []byte(`{"n":4}`))
	assert.Equal(t, `{"type":"event","id":"50-3","event":"a","data":{"n":3}}`, readText(t, conn))
	assert.Equal(t, `{"type":"event","id":"50-4","event":"a","data":{"n":4}}`, readText(t, conn))
	assert.Equal(t, history.ID{Epoch: 50, Seq: 4}, h.Fed())
}

// Resumes on a fed hub: a gap in the stream's sequence (events its limits
// dropped before this hub saw them) makes resumes from before it
// unrecovered; after it they are recovered.
func TestFedHubGapIsNotRecovered(t *testing.T) {
	h, url := fedHub(t, time.Second)
	h.SetEpoch(50)
	h.Deliver(history.ID{Epoch: 50, Seq: 5}, "a", []byte(`5`)) // 1-4 were dropped
	h.Deliver(history.ID{Epoch: 50, Seq: 6}, "a", []byte(`6`))

	ids, recovered, position := initResume(t, url, "50-2", "a")
	assert.False(t, recovered, "events 3 and 4 may have been of a")
	assert.Equal(t, []string{"50-5", "50-6"}, ids)
	assert.Equal(t, "50-6", position)

	ids, recovered, _ = initResume(t, url, "50-5", "a")
	assert.True(t, recovered)
	assert.Equal(t, []string{"50-6"}, ids)
}

// A resume whose ID is ahead of the feed waits for the feed (another
// instance answered it a moment ago), and is then recovered; past
// ResumeWait it is answered as an unknown ID.
func TestFedHubResumeWaitsForTheFeed(t *testing.T) {
	h, url := fedHub(t, 10*time.Second)
	h.SetEpoch(50)
	h.Deliver(history.ID{Epoch: 50, Seq: 1}, "a", []byte(`1`))

	type result struct {
		ids       []string
		recovered bool
	}
	done := make(chan result, 1)
	go func() {
		ids, recovered, _ := initResume(t, url, "50-3", "a")
		done <- result{ids, recovered}
	}()
	// The resume is waiting once it counts among the waiters.
	require.Eventually(t, func() bool { return h.waiting.Load() == 1 }, 5*time.Second, time.Millisecond)
	h.Deliver(history.ID{Epoch: 50, Seq: 2}, "a", []byte(`2`))
	select {
	case r := <-done:
		t.Fatalf("answered before the feed reached its ID: %+v", r)
	default:
	}
	h.Deliver(history.ID{Epoch: 50, Seq: 3}, "a", []byte(`3`))
	h.Deliver(history.ID{Epoch: 50, Seq: 4}, "a", []byte(`4`))
	r := <-done
	assert.True(t, r.recovered)
	assert.Subset(t, []string{"50-4"}, r.ids, "only what came after 50-3")
}

func TestFedHubResumeWaitIsBounded(t *testing.T) {
	h, url := fedHub(t, 50*time.Millisecond)
	h.SetEpoch(50)
	h.Deliver(history.ID{Epoch: 50, Seq: 1}, "a", []byte(`1`))
	ids, recovered, position := initResume(t, url, "50-1000", "a")
	assert.False(t, recovered, "an ID the feed never reaches is unknown")
	assert.Equal(t, []string{"50-1"}, ids, "an unknown ID gets every kept event")
	assert.Equal(t, "50-1", position)
}

// A new epoch (the stream was created anew) empties the history: IDs of the
// old epoch are unknown, as after a restart.
func TestFedHubNewEpoch(t *testing.T) {
	h, url := fedHub(t, time.Second)
	h.SetEpoch(50)
	for i := uint64(1); i <= 3; i++ {
		h.Deliver(history.ID{Epoch: 50, Seq: i}, "a", []byte(fmt.Sprint(i)))
	}
	h.Deliver(history.ID{Epoch: 60, Seq: 1}, "a", []byte(`"new"`))
	assert.Equal(t, history.ID{Epoch: 60, Seq: 1}, h.Fed())
	ids, recovered, position := initResume(t, url, "50-2", "a")
	assert.False(t, recovered)
	assert.Equal(t, []string{"60-1"}, ids)
	assert.Equal(t, "60-1", position)

	h.SetEpoch(70)
	assert.Equal(t, history.ID{Epoch: 70}, h.Fed())
	ids, recovered, _ = initResume(t, url, "60-1", "a")
	assert.False(t, recovered)
	assert.Empty(t, ids)
}

// A gap after the hub has been fed is a loss for live subscribers (the
// stream's limits dropped events before this instance was fed them): they
// are closed with 4005 "events lost" and resume. A skipped event (not
// eventsrv's) is no loss.
func TestFedHubGapClosesSubscribers(t *testing.T) {
	h, url := fedHub(t, time.Second)
	h.SetEpoch(50)
	h.Deliver(history.ID{Epoch: 50, Seq: 4}, "a", []byte(`4`)) // the first: no loss
	conn := dial(t, url)
	send(t, conn, `{"authentication":"`+goodCreds+`","events":["a"]}`)
	require.Equal(t, `{"type":"init","code":"OK"}`, readText(t, conn))
	h.Skip(history.ID{Epoch: 50, Seq: 5})
	h.Deliver(history.ID{Epoch: 50, Seq: 6}, "a", []byte(`6`))
	assert.Equal(t, `{"type":"event","id":"50-6","event":"a","data":6}`, readText(t, conn), "a skipped event loses nothing")
	h.Deliver(history.ID{Epoch: 50, Seq: 9}, "a", []byte(`9`))
	ce := readCloseError(t, conn)
	assert.Equal(t, 4005, ce.Code)
	assert.Equal(t, "events lost", ce.Text)
	_, recovered, _ := initResume(t, url, "50-6", "a")
	assert.False(t, recovered, "7 and 8 are lost to resumes too")
}
