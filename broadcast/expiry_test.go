package broadcast

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"eventsrv/auth"
)

// A credential that expires after 2262 (where UnixNano overflows) is not
// closed as expired: expiry is compared as a time. Before, such a JWT got
// its init OK and then close 4001 at the first sweep.
func TestSweepFarFutureExpiry(t *testing.T) {
	for _, exp := range []time.Time{
		time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC),
		time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(math.MaxInt64/1000, 0), // about the largest exp a JWT can carry
	} {
		c, _, _ := detachedClient(t, sweepOptions())
		c.grant(auth.Permissions{Subscribe: auth.Patterns{"*"}, Expires: exp})
		c.initialized.Store(true)
		now := time.Now()
		c.lastRead.Store(now.UnixNano())
		c.sweep(now)
		closing, reason, _ := closedWith(c)
		require.False(t, closing, "a credential valid until %v closed: %s", exp, reason)
	}
}
