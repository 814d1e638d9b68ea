package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startJetStream runs a one-node JetStream server inside the test process
// and returns its client URL.
func startJetStream(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	require.NoError(t, err)
	s.Start()
	require.True(t, s.ReadyForConnections(10*time.Second), "nats-server did not start")
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s.ClientURL()
}

// streamNames lists the streams on the server at url.
func streamNames(t *testing.T, url string) []string {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var names []string
	lister := js.StreamNames(ctx)
	for name := range lister.Name() {
		names = append(names, name)
	}
	require.NoError(t, lister.Err())
	return names
}

func TestJetStreamBaseline(t *testing.T) {
	url := startJetStream(t)
	var stdout, stderr bytes.Buffer
	// No token and no eventsrv: the default token file does not exist here.
	args := []string{"-jetstream", url, "-events", "500", "-js-connections", "2", "-js-max-pending", "64",
		"-js-consumers", "2", "-json", "-timeout", "10s"}
	require.NoError(t, run(context.Background(), args, &stdout, &stderr), "stderr: %s", stderr.String())
	var rep jetstreamReport
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "report: %s", stdout.String())
	assert.True(t, rep.Pass, "failures: %v", rep.Failures)
	assert.Equal(t, modeJetStream, rep.Mode)
	assert.Equal(t, int64(500), rep.Acked)
	assert.Zero(t, rep.Failed)
	assert.Zero(t, rep.NotAttempted)
	assert.Positive(t, rep.AcksPerSecond)
	assert.Equal(t, 500, rep.Latency.Samples, "one ack latency per message")
	assert.Equal(t, uint64(500), rep.StreamLastSeq)
	assert.Equal(t, []int64{500, 500}, rep.Consumed, "within the stream's limits every consumer gets everything")
	assert.Equal(t, []int64{0, 0}, rep.Skipped)
	assert.Equal(t, []bool{true, true}, rep.Reached)
	require.NotNil(t, rep.ConsumerLatency)
	assert.Equal(t, 1000, rep.ConsumerLatency.Samples)
	assert.True(t, strings.HasPrefix(rep.Stream, jsStreamPrefix))
	assert.Empty(t, streamNames(t, url), "the scratch stream is deleted")
}

func TestJetStreamBaselineText(t *testing.T) {
	url := startJetStream(t)
	var stdout bytes.Buffer
	args := []string{"-jetstream", url, "-events", "100", "-js-connections", "1", "-replicas", "1", "-timeout", "10s"}
	require.NoError(t, run(context.Background(), args, &stdout, &bytes.Buffer{}))
	out := stdout.String()
	t.Logf("report:\n%s", out)
	assert.Regexp(t, `(?m)^acknowledged\s+100 ok, 0 failed, 0 not attempted in \d+\.\d{3}s \(\d+\.\d/s\)$`, out)
	assert.Regexp(t, `(?m)^ack latency ms\s+p50 \d+\.\d\d .*\(100 samples\)$`, out)
	assert.Regexp(t, `(?m)^result\s+PASS$`, out)
}

func TestJetStreamBaselineUnreachable(t *testing.T) {
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"-jetstream", "nats://127.0.0.1:1", "-events", "10", "-timeout", "5s"}, &stdout, &bytes.Buffer{})
	require.ErrorContains(t, err, "connecting to nats://127.0.0.1:1")
	assert.Regexp(t, `(?m)^result\s+FAIL: connecting`, stdout.String())
}

func TestJetStreamFlags(t *testing.T) {
	_, err := parseConfig([]string{"-token", "t", "-compare"}, &bytes.Buffer{})
	require.ErrorContains(t, err, "-compare needs -jetstream")
	_, err = parseConfig([]string{"-jetstream", "nats://x:1", "-replicas", "7", "-rounds", "0", "-rate", "5"}, &bytes.Buffer{})
	require.ErrorContains(t, err, "-replicas 7")
	require.ErrorContains(t, err, "-rounds 0")
	require.ErrorContains(t, err, "-rate does not apply")
	_, err = parseConfig([]string{"-jetstream", "nats://x:1", "-compare", "-token-file", "/nonexistent"}, &bytes.Buffer{})
	require.ErrorContains(t, err, "token file", "-compare publishes through eventsrv too, so it needs the token")
}

func TestCompare(t *testing.T) {
	url := startJetStream(t)
	fake := startFake(t, fakeOptions{})
	var stdout, stderr bytes.Buffer
	args := fake.args("-jetstream", url, "-compare", "-rounds", "2", "-subs", "3", "-events", "100", "-publishers", "2", "-json", "-timeout", "10s")
	require.NoError(t, run(context.Background(), args, &stdout, &stderr), "stderr: %s", stderr.String())
	var rep compareReport
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "report: %s", stdout.String())
	assert.True(t, rep.Pass, "failures: %v", rep.Failures)
	require.Len(t, rep.Rounds, 2)
	for _, round := range rep.Rounds {
		assert.Equal(t, int64(100), round.JetStream.Acked)
		assert.Equal(t, 100, round.Eventsrv.Load.Published)
		assert.Equal(t, int64(300), round.Eventsrv.Load.Received)
		assert.InDelta(t, round.Eventsrv.Load.PublishPerSecond/round.JetStream.AcksPerSecond, round.Ratio, 1e-4)
	}
	assert.Positive(t, rep.MedianRatio)
	assert.Equal(t, 200, fake.published(), "the baseline does not go through eventsrv")
	assert.Len(t, regexp.MustCompile(`(?m)^round \d: jetstream \d+\.\d acks/s, eventsrv \d+\.\d posts/s, ratio \d+\.\d+$`).FindAllString(stderr.String(), -1), 2)
	assert.Empty(t, streamNames(t, url))
}
