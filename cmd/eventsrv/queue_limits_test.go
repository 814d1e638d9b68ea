package main

import (
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
