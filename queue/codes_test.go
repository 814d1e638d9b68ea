package queue

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Every task action's error has one wire code, found through wrapping, and
// the code names the same error back; anything else has none.
func TestWireCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code string
	}{
		{ErrUnknownTask, "UNKNOWN_TASK"},
		{ErrNotOfferedToYou, "NOT_OFFERED_TO_YOU"},
		{ErrOfferExpired, "OFFER_EXPIRED"},
		{ErrNotAssigned, "NOT_ASSIGNED"},
		{ErrForced, "ASSIGNED_BY_FORCE"},
		{ErrClosed, "UNAVAILABLE"},
	} {
		code, ok := CodeOf(fmt.Errorf("task 7: %w", tc.err))
		assert.True(t, ok, tc.code)
		assert.Equal(t, tc.code, code)
		err, ok := ErrorOf(tc.code)
		assert.True(t, ok, tc.code)
		assert.Equal(t, tc.err, err)
	}
	_, ok := CodeOf(errors.New("something else"))
	assert.False(t, ok)
	_, ok = ErrorOf("NOT_A_CODE")
	assert.False(t, ok)
}
