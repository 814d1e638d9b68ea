package cluster

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
)

// TestQuorumLost: a replica counts as online only when its leader heard
// from it lately; one never heard from (Active 0), one heard from long ago,
// and one known to be shut down do not.
func TestQuorumLost(t *testing.T) {
	seen := func(d time.Duration) *jetstream.PeerInfo {
		return &jetstream.PeerInfo{Name: "r", Current: true, Active: d}
	}
	off := &jetstream.PeerInfo{Name: "r", Offline: true, Active: time.Millisecond}
	for _, tc := range []struct {
		name string
		c    *jetstream.ClusterInfo
		lost string // a part of the reason, or "" for none
	}{
		{"not clustered", nil, ""},
		{"R1", &jetstream.ClusterInfo{Leader: "n0"}, ""},
		{"no leader", &jetstream.ClusterInfo{Replicas: []*jetstream.PeerInfo{seen(time.Second), seen(time.Second)}}, "no leader"},
		{"both replicas seen", &jetstream.ClusterInfo{Leader: "n0", Replicas: []*jetstream.PeerInfo{seen(time.Second), seen(time.Second)}}, ""},
		{"one seen, one offline", &jetstream.ClusterInfo{Leader: "n0", Replicas: []*jetstream.PeerInfo{seen(time.Second), off}}, ""},
		{"one seen, one never", &jetstream.ClusterInfo{Leader: "n0", Replicas: []*jetstream.PeerInfo{seen(0), seen(time.Second)}}, ""},
		{"both offline", &jetstream.ClusterInfo{Leader: "n0", Replicas: []*jetstream.PeerInfo{off, off}}, "1 of 3 replicas online"},
		{"both never seen", &jetstream.ClusterInfo{Leader: "n0", Replicas: []*jetstream.PeerInfo{seen(0), seen(0)}}, "1 of 3 replicas online"},
		{"both seen too long ago", &jetstream.ClusterInfo{Leader: "n0", Replicas: []*jetstream.PeerInfo{seen(replicaSeenWithin), seen(time.Minute)}}, "1 of 3 replicas online"},
		{"R5, two of four seen", &jetstream.ClusterInfo{Leader: "n0", Replicas: []*jetstream.PeerInfo{seen(time.Second), seen(time.Second), off, seen(0)}}, ""},
		{"R5, one of four seen", &jetstream.ClusterInfo{Leader: "n0", Replicas: []*jetstream.PeerInfo{seen(time.Second), off, off, seen(0)}}, "2 of 5 replicas online"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := quorumLost(tc.c)
			if tc.lost == "" {
				assert.Empty(t, got)
			} else {
				assert.Contains(t, got, tc.lost)
			}
		})
	}
}
