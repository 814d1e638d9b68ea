//go:build race

package cluster_test

// raceEnabled: the test binary is built with -race, so the eventsrv
// instances it starts are too.
const raceEnabled = true
