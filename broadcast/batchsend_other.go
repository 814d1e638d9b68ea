//go:build !linux

package broadcast

// batchSender exists on Linux only (io_uring); elsewhere every flusher
// writes one system call per subscriber.
type batchSender struct{}

func (f *flushers) newBatchSender() *batchSender { return nil }

func (s *batchSender) close() {}

func (s *batchSender) flush([]*client, *writeCount) {}
