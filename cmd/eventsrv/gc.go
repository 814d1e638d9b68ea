package main

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// clusterGCPercent is the garbage collector's target (GOGC) in cluster
// mode, unless the environment sets GOGC.
//
// A cluster instance receives every event of the stream from NATS, and
// nats.go leaves about 1.3 KB of garbage per message (the message, its
// copy of the data, its eight headers decoded into a map), so the heap
// turns over fast while what is live (history, subscribers) stays small.
// At Go's default of 100 the collector took about a fifth of the
// instances' CPU in a publish-only run on 2 cores; at 400 it ran a
// quarter as often, and the instances published about a quarter more
// (README, cluster mode: sizing). The cost is memory: between collections
// the heap may grow to 5 times what is live, rather than 2. One instance
// (no NATS) keeps Go's default: its fan-out allocates little.
const clusterGCPercent = 400

// tuneGC sets clusterGCPercent in cluster mode unless GOGC is set, which
// the runtime has already applied.
func tuneGC(clustered bool, log *slog.Logger) {
	if !clustered || os.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(clusterGCPercent)
	log.Info("cluster mode: garbage collection at GOGC=400 (set GOGC to choose another)")
}
