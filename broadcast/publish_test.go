package broadcast

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"eventsrv/history"
)

// recordingHistory keeps what the hub appends.
type recordingHistory struct {
	mu     sync.Mutex
	events []history.Event
}

func (r *recordingHistory) Append(e history.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recordingHistory) Since([]string, uint64, int) ([]history.Event, bool) { return nil, false }
func (r *recordingHistory) Forget(uint64)                                       {}
func (r *recordingHistory) Reset()                                              {}

// TestPublishKeepsHistoryWithoutSubscribers: every event goes into the
// history, with its frame and its data sliced out of it, whether or not
// anyone is subscribed to it now: a subscriber that resumes later asks
// for it.
func TestPublishKeepsHistoryWithoutSubscribers(t *testing.T) {
	hist := &recordingHistory{}
	opts := testOptions()
	opts.History = hist
	h := NewHub(fakeAuth{}, opts)
	defer func() { require.NoError(t, h.Close(context.Background())) }()

	id, err := h.Publish("nobody", []byte(`{"x" : 1}`))
	require.NoError(t, err)
	assert.Equal(t, "7-1", id)
	require.Len(t, hist.events, 1)
	e := hist.events[0]
	assert.Equal(t, uint64(1), e.Seq)
	assert.Equal(t, "nobody", e.Name)
	assert.Equal(t, eventFrame(history.ID{Epoch: 7, Seq: 1}, "nobody", []byte(`{"x" : 1}`)), e.Frame)
	assert.Equal(t, `{"x" : 1}`, string(e.Data))
	assert.Same(t, &e.Frame[len(e.Frame)-2], &e.Data[len(e.Data)-1], "the data lies in the frame, held once")

	// Without a history and without subscribers, a publish only counts.
	h2 := NewHub(fakeAuth{}, testOptions())
	defer func() { require.NoError(t, h2.Close(context.Background())) }()
	id, err = h2.Publish("nobody", []byte(`1`))
	require.NoError(t, err)
	assert.Equal(t, "7-1", id)
	assert.Equal(t, uint64(1), h2.Stats().Published)
	assert.Zero(t, h2.Stats().Deliveries)
}

// TestEventFrameOneAllocation: the frame's buffer is sized up front, even
// for the longest ID, so that a publish allocates one frame.
func TestEventFrameOneAllocation(t *testing.T) {
	longest := history.ID{Epoch: math.MaxUint64, Seq: math.MaxUint64}
	for _, data := range [][]byte{[]byte(`1`), []byte(`"` + strings.Repeat("x", 200) + `"`)} {
		for _, name := range []string{"e", "order.created", strings.Repeat("n", 300)} {
			allocs := testing.AllocsPerRun(20, func() { _ = eventFrame(longest, name, data) })
			assert.Equal(t, 1.0, allocs, "name of %d bytes, data of %d", len(name), len(data))
		}
	}
}

// TestCloseFrameReasonWithoutRuneStart: a reason too long whose first 124
// bytes hold no rune start is cut to nothing, not past its start.
func TestCloseFrameReasonWithoutRuneStart(t *testing.T) {
	_, p := parseFrame(t, closeFrame(closePolicy, strings.Repeat("\x80", 200)))
	assert.Equal(t, []byte{0x03, 0xf0}, p, "1008 and no reason")
}
