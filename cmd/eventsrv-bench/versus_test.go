package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRunAgainstMinimal(t *testing.T) {
	s := startMinimal(t)
	var stdout bytes.Buffer
	// The tool's own checks pass unchanged against the reference server,
	// one event per POST and in batches (53 = 7 × 7 + 4, in 2 publishers'
	// short last batches).
	for _, batch := range []string{"1", "7"} {
		stdout.Reset()
		args := []string{"-listen", s.listen.URL, "-broadcast", wsURL(s.broadcast), "-token", testToken,
			"-subs", "10", "-events", "53", "-publishers", "2", "-batch", batch, "-json", "-timeout", "10s"}
		require.NoError(t, run(context.Background(), args, &stdout, &bytes.Buffer{}), "-batch %s", batch)
		rep := decodeReport(t, stdout.Bytes())
		assert.Equal(t, int64(10*53), rep.Load.Received, "-batch %s", batch)
		assert.Equal(t, 10*53, rep.Load.Latency.Samples, "-batch %s", batch)
	}
}

func TestVersusFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-versus", "centrifugo", "-eventsrv-bin", "x"}, `the only reference server is "minimal"`},
		{[]string{"-versus", "minimal"}, "-versus needs -eventsrv-bin"},
		{[]string{"-versus", "minimal", "-eventsrv-bin", "x", "-listen", "http://a:1"}, "no -listen, -broadcast, -pid or -token"},
		{[]string{"-versus", "minimal", "-eventsrv-bin", "x", "-broadcast", "ws://a:1/"}, "no -listen, -broadcast, -pid or -token"},
		{[]string{"-versus", "minimal", "-eventsrv-bin", "x", "-pid", "1"}, "no -listen, -broadcast, -pid or -token"},
		{[]string{"-versus", "minimal", "-eventsrv-bin", "x", "-token", "t"}, "no -listen, -broadcast, -pid or -token"},
		{[]string{"-versus", "minimal", "-eventsrv-bin", "x", "-compare"}, "not with -idle, -jetstream or -compare"},
		{[]string{"-token", "t", "-eventsrv-bin", "x"}, "-eventsrv-bin needs -versus"},
	}
	for _, tc := range tests {
		_, err := parseConfig(tc.args, &bytes.Buffer{})
		require.ErrorContains(t, err, tc.want, "%v", tc.args)
	}
	// The default token file is not read: -versus makes its own token.
	cfg, err := parseConfig([]string{"-versus", "minimal", "-eventsrv-bin", "x", "-token-file", "/nonexistent", "-batch", "3"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, "x", cfg.eventsrvBin)
	assert.Len(t, cfg.sources, 9, "subscribers are spread over loopback source addresses, as against a server on 127.0.0.1")

	var usage bytes.Buffer
	_, err = parseConfig([]string{"-h"}, &usage)
	require.ErrorIs(t, err, flag.ErrHelp)
	for _, want := range []string{"-versus minimal -eventsrv-bin", "-batch N", "0.85"} {
		assert.Contains(t, usage.String(), want)
	}
}

// passingRun builds a passing run with the given figures.
func passingRun(server string, p50, p99, rate, cpu float64) *versusRun {
	return &versusRun{Server: server, PID: 1, Pass: true, Report: &report{Pass: true},
		Figures: &versusFigures{P50Ms: p50, P99Ms: p99, DeliveriesPerSecond: rate, CPUMicrosPerDelivery: cpu}}
}

func TestVersusReportLeavesFailedRoundsOut(t *testing.T) {
	lossy := passingRun(serverEventsrv, 1, 1, 1, 1)
	lossy.Pass = false
	lossy.Report = &report{Pass: false, Failures: []string{"lost 3"}}
	rep := &versusReport{Mode: modeVersus, Reference: versusMinimal, TargetP99Ratio: versusTargetP99, Rounds: []versusRound{
		{Minimal: passingRun(versusMinimal, 10, 20, 1000, 4), Eventsrv: passingRun(serverEventsrv, 9, 16, 1000, 2)},
		{Minimal: passingRun(versusMinimal, 10, 20, 1000, 4), Eventsrv: lossy},
		{Minimal: &versusRun{Server: versusMinimal, Error: "minimal exited before it was ready"}, Eventsrv: passingRun(serverEventsrv, 9, 16, 1000, 2)},
		{Minimal: passingRun(versusMinimal, 8, 10, 2000, 4), Eventsrv: passingRun(serverEventsrv, 12, 20, 1000, 1)},
	}}
	rep.finish(4)
	assert.False(t, rep.Pass)
	assert.Equal(t, []string{"round 2 eventsrv: lost 3", "round 3 minimal: minimal exited before it was ready"}, rep.Failures)
	assert.Equal(t, 2, rep.PassingRounds)
	assert.Nil(t, rep.Rounds[1].Ratio, "a round with a failed run has no ratio")
	assert.Nil(t, rep.Rounds[2].Ratio)
	assert.Equal(t, &versusFigures{P50Ms: 0.9, P99Ms: 0.8, DeliveriesPerSecond: 1, CPUMicrosPerDelivery: 0.5}, rep.Rounds[0].Ratio)
	assert.Equal(t, &versusFigures{P50Ms: 1.5, P99Ms: 2, DeliveriesPerSecond: 0.5, CPUMicrosPerDelivery: 0.25}, rep.Rounds[3].Ratio)
	assert.Equal(t, &versusFigures{P50Ms: 1.2, P99Ms: 1.4, DeliveriesPerSecond: 0.75, CPUMicrosPerDelivery: 0.375}, rep.MedianRatio,
		"the median of the passing rounds' ratios")
	assert.Equal(t, &versusFigures{P50Ms: 9, P99Ms: 15, DeliveriesPerSecond: 1500, CPUMicrosPerDelivery: 4}, rep.MinimalMedian)
	assert.Equal(t, 1, rep.TargetMetRounds, "0.8 ≤ 0.85 in round 1 only")

	var b strings.Builder
	rep.writeText(&b)
	out := b.String()
	t.Logf("\n%s", out)
	assert.Regexp(t, `(?m)^round 2 eventsrv\s+1\.00\s+1\.00\s+1\.0\s+1\.00\s+0\.00  FAIL$`, out)
	assert.Regexp(t, `(?m)^round 2 ratio\s+none: a run failed, so this round is left out of the medians$`, out)
	assert.Regexp(t, `(?m)^round 3 minimal\s+FAIL: minimal exited before it was ready$`, out)
	assert.Regexp(t, `(?m)^round 1 ratio\s+0\.90×\s+0\.80×\s+1\.00×\s+0\.50×$`, out)
	assert.Regexp(t, `(?m)^median ratio\s+1\.20×\s+1\.40×\s+0\.75×\s+0\.38×$`, out)
	assert.Regexp(t, `(?m)^\s+eventsrv/minimal over 2 of 4 rounds`, out)
	assert.Regexp(t, `(?m)^target\s+p99 ratio ≤ 0\.85 \(#16\): not met by the median 1\.40×; met in 1 of 2 rounds$`, out)
	assert.NotContains(t, out, "this load differs")
	rep.OffTarget = true
	b.Reset()
	rep.writeText(&b)
	assert.Regexp(t, `(?m)^\s+\(the target is set for -subs 1000 -rate 20 -size 100, one event per request; this load differs\)$`, b.String())
	assert.Regexp(t, `(?m)^result\s+FAIL: round 2 eventsrv: lost 3; round 3 minimal`, out)
}

// buildEventsrv builds eventsrv from this checkout into dir.
func buildEventsrv(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "eventsrv")
	cmd := exec.Command(goTool, "build", "-o", bin, "eventsrv/cmd/eventsrv")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build eventsrv: %s", out)
	return bin
}

// TestAgainstEventsrv runs the real eventsrv, built from this checkout, next
// to the reference server, both as processes of their own started as
// -versus starts them.
func TestAgainstEventsrv(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("-versus reads the servers' CPU time from /proc")
	}
	dir := t.TempDir()
	bin := buildEventsrv(t, dir)

	t.Run("the same frames", func(t *testing.T) {
		token, tokensFile, err := writeTokensFile(dir)
		require.NoError(t, err)
		self, err := os.Executable()
		require.NoError(t, err)
		var answers, frames, inits []string
		for _, command := range []serverCommand{{path: bin}, {path: self, env: []string{serveEnv + "=" + versusMinimal}}} {
			srv, err := startServer(context.Background(), "server", command, dir, tokensFile, 30*time.Second)
			require.NoError(t, err)
			conn, _, err := websocket.DefaultDialer.Dial(srv.broadcastURL, nil)
			require.NoError(t, err)
			send(t, conn, `{"authentication":"Basic `+token+`","events":["bench"]}`)
			inits = append(inits, readText(t, conn))

			post := func(path, body string) {
				req, err := http.NewRequest(http.MethodPost, srv.listenURL+path, strings.NewReader(body))
				require.NoError(t, err)
				req.Header.Set("Authorization", "Basic "+token)
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				raw, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				require.Equal(t, http.StatusOK, resp.StatusCode, "%s", raw)
				answers = append(answers, string(raw))
			}
			post("/event", `{"event":"bench","data":{"p":0,"s":1, "x":"a\u00e9<"}}`)
			frames = append(frames, readText(t, conn))
			post("/events", `[{"event":"bench","data":1},{"event":"bench"}]`)
			frames = append(frames, readText(t, conn), readText(t, conn))
			conn.Close()
			require.NoError(t, srv.stop(), "a clean exit after SIGTERM")
		}
		t.Logf("eventsrv: %s %q %q", inits[0], answers[:2], frames[:3])
		t.Logf("minimal:  %s %q %q", inits[1], answers[2:], frames[3:])
		assert.Equal(t, inits[0], inits[1], "the init answer, byte for byte")
		id := regexp.MustCompile(`"\d+-\d+"`)
		noIDs := func(ss []string) []string {
			out := make([]string, len(ss))
			for i, s := range ss {
				out[i] = id.ReplaceAllString(s, `"ID"`)
			}
			return out
		}
		assert.Equal(t, noIDs(answers[:2]), noIDs(answers[2:]), "the answers to POST /event and /events but for the IDs")
		assert.Equal(t, noIDs(frames[:3]), noIDs(frames[3:]), "the event frames but for the IDs")
	})

	t.Run("alternating", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		args := []string{"-versus", "minimal", "-eventsrv-bin", bin, "-rounds", "2",
			"-subs", "20", "-events", "50", "-rate", "500", "-json", "-timeout", "20s"}
		require.NoError(t, run(context.Background(), args, &stdout, &stderr), "stderr: %s", stderr.String())
		var rep versusReport
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "%s", stdout.String())
		require.True(t, rep.Pass, "failures: %v", rep.Failures)
		require.Len(t, rep.Rounds, 2)
		pids := map[int]bool{}
		for i, round := range rep.Rounds {
			for _, run := range []*versusRun{round.Minimal, round.Eventsrv} {
				require.NotNil(t, run.Report, "round %d %s", i+1, run.Server)
				assert.True(t, run.Pass, "round %d %s: %v", i+1, run.Server, run.failures())
				assert.Equal(t, int64(20*50), run.Report.Load.Received)
				require.NotNil(t, run.Report.Server, "-pid is passed for each server")
				assert.Empty(t, run.Report.Server.Error)
				assert.Equal(t, run.PID, run.Report.Server.PID)
				assert.Positive(t, run.Figures.P99Ms)
				assert.Positive(t, run.Figures.DeliveriesPerSecond)
				pids[run.PID] = true
			}
			require.NotNil(t, round.Ratio)
			assert.Positive(t, round.Ratio.P99Ms)
		}
		assert.Len(t, pids, 4, "a fresh server for each run")
		assert.Equal(t, 2, rep.PassingRounds)
		assert.True(t, rep.OffTarget, "20 subscribers is not #16's load")
		require.NotNil(t, rep.MedianRatio)
		assert.Equal(t, round4(median([]float64{rep.Rounds[0].Ratio.P99Ms, rep.Rounds[1].Ratio.P99Ms})), rep.MedianRatio.P99Ms)
		assert.Regexp(t, `(?m)^round 1 minimal: p50 [\d.]+ ms, p99 [\d.]+ ms, [\d.]+ deliveries/s, [\d.]+ µs/delivery, PASS$`, stderr.String())
		assert.Regexp(t, `(?m)^round 2 eventsrv: .*, PASS$`, stderr.String())
	})

	t.Run("in batches", func(t *testing.T) {
		var stdout bytes.Buffer
		args := []string{"-versus", "minimal", "-eventsrv-bin", bin, "-subs", "10", "-events", "53", "-batch", "5", "-json", "-timeout", "20s"}
		require.NoError(t, run(context.Background(), args, &stdout, &bytes.Buffer{}))
		var rep versusReport
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "%s", stdout.String())
		require.Len(t, rep.Rounds, 1)
		for _, run := range []*versusRun{rep.Rounds[0].Minimal, rep.Rounds[0].Eventsrv} {
			assert.True(t, run.Pass, "%s: %v", run.Server, run.failures())
			assert.Equal(t, 53, run.Report.Load.Published, run.Server)
			assert.Equal(t, 10*53, run.Report.Load.Latency.Samples, "%s: every event of every batch timed", run.Server)
		}
	})

	t.Run("a server that does not start", func(t *testing.T) {
		broken := filepath.Join(dir, "broken")
		require.NoError(t, os.WriteFile(broken, []byte("#!/bin/sh\necho 'cannot start: port in use' >&2\nexit 3\n"), 0o755))
		var stdout bytes.Buffer
		args := []string{"-versus", "minimal", "-eventsrv-bin", broken, "-subs", "2", "-events", "5", "-timeout", "20s"}
		err := run(context.Background(), args, &stdout, &bytes.Buffer{})
		require.ErrorContains(t, err, "round 1 eventsrv: eventsrv exited before it was ready (exit status 3)")
		assert.Contains(t, stdout.String(), "cannot start: port in use", "the server's log is quoted")
		assert.Regexp(t, `(?m)^round 1 eventsrv\s+FAIL: eventsrv exited before it was ready`, stdout.String())
		assert.Regexp(t, `(?m)^round 1 minimal\s+[\d.]+ .* PASS$`, stdout.String(), "the minimal server's run still reported")
	})
}

func TestVersusReportInterrupted(t *testing.T) {
	rep := &versusReport{Mode: modeVersus, Reference: versusMinimal, TargetP99Ratio: versusTargetP99, Rounds: []versusRound{
		{Minimal: passingRun(versusMinimal, 10, 20, 1000, 4)},
	}}
	rep.finish(2)
	assert.False(t, rep.Pass)
	assert.Equal(t, []string{"round 1 eventsrv: interrupted before the run", "interrupted before the run finished"}, rep.Failures)
	assert.Zero(t, rep.PassingRounds)
	var b strings.Builder
	rep.writeText(&b)
	assert.Regexp(t, `(?m)^medians\s+none: no round in which both runs passed$`, b.String())

	var stdout bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := run(ctx, []string{"-versus", "minimal", "-eventsrv-bin", "/nonexistent"}, &stdout, &bytes.Buffer{})
	require.ErrorContains(t, err, "interrupted before the run finished", "nothing is started once interrupted")
}
