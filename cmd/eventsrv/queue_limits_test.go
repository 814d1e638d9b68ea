package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// QUEUE_MAX_QUEUES: 1000 by default, a positive whole number.
func TestQueueMaxQueuesSetting(t *testing.T) {
	cfg, err := loadConfig(mapEnv(nil))
	require.NoError(t, err)
	assert.Equal(t, 1000, cfg.QueueMaxQueues)
	for _, tc := range []struct{ value, want string }{
		{"5", ""},
		{"0", `QUEUE_MAX_QUEUES: 0 is not positive`},
		{"-1", `QUEUE_MAX_QUEUES: -1 is not positive`},
		{"many", `QUEUE_MAX_QUEUES: "many" is not a whole number`},
		{"1e3", `QUEUE_MAX_QUEUES: "1e3" is not a whole number`},
	} {
		cfg, err := loadConfig(mapEnv(map[string]string{"QUEUE_MAX_QUEUES": tc.value}))
		if tc.want == "" {
			require.NoError(t, err, tc.value)
			assert.Equal(t, 5, cfg.QueueMaxQueues)
			continue
		}
		require.Error(t, err, tc.value)
		assert.Equal(t, tc.want, err.Error())
	}
}

// Past QUEUE_MAX_QUEUES queues holding tasks, a task for another queue is
// answered 429 TOO_MANY_QUEUES, with what to do; the queues that exist
// still take tasks.
func TestQueueTooManyQueuesAnswer(t *testing.T) {
	s := startServer(t, map[string]string{"QUEUE_MAX_QUEUES": "2"})
	s.enqueue("a", `1`)
	s.enqueue("b", `1`)
	req, err := http.NewRequest(http.MethodPost, s.listenURL+"/queue/c", strings.NewReader(`1`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Basic "+testToken)
	status, body := s.roundTripRaw(req)
	assert.Equal(t, http.StatusTooManyRequests, status)
	assert.Contains(t, body, `"code":"TOO_MANY_QUEUES"`)
	assert.Contains(t, body, "raise QUEUE_MAX_QUEUES", "the message says what to do")
	status, body = s.do(http.MethodPost, "/queue/a", "Basic "+testToken, `2`)
	assert.Equal(t, http.StatusOK, status, body)
}
