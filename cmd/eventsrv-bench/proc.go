package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicksPerSecond is USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat (what `getconf CLK_TCK` prints). It is 100 on every
// mainstream Linux build; reading it for real needs sysconf through cgo,
// which is not worth it for this.
const clockTicksPerSecond = 100

// RSS settling, for -idle: the server's RSS counts as stable once
// rssStableReadings consecutive readings, rssPollInterval apart, each moved
// by at most rssTolerance of the previous one.
const (
	rssPollInterval   = 250 * time.Millisecond
	rssStableReadings = 3
	rssTolerance      = 0.01
)

// serverSample is the server's CPU time and memory at one moment. For
// several servers (sampleServers) it also holds the machine's CPU time and
// this tool's, so that the report can tell what else ran meanwhile.
type serverSample struct {
	cpuTicks int64 // utime + stime, in clock ticks
	rssBytes int64

	at          int64 // Unix ns
	machineBusy int64 // clock ticks over all CPUs; 0 when unknown
	selfNanos   int64 // this process's user + system time
}

// sampleServer reads pid's CPU time and RSS from /proc.
func sampleServer(pid int) (serverSample, error) {
	cpu, err := readCPUTicks(pid)
	if err != nil {
		return serverSample{}, err
	}
	rss, err := readRSS(pid)
	if err != nil {
		return serverSample{}, err
	}
	return serverSample{cpuTicks: cpu, rssBytes: rss}, nil
}

// sampleServers samples every pid and adds the samples up: the servers of
// a cluster run on the same cores, so their sum is what the run cost.
func sampleServers(pids []int) (serverSample, error) {
	var sum serverSample
	// The machine's counters are best effort: without them the report
	// only lacks its machine line.
	sum.machineBusy, sum.selfNanos, _ = sampleMachine()
	sum.at = time.Now().UnixNano()
	for _, pid := range pids {
		s, err := sampleServer(pid)
		if err != nil {
			return serverSample{}, fmt.Errorf("pid %d: %w", pid, err)
		}
		sum.cpuTicks += s.cpuTicks
		sum.rssBytes += s.rssBytes
	}
	return sum, nil
}

// readRSSSum returns the RSS of every pid added up.
func readRSSSum(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		rss, err := readRSS(pid)
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", pid, err)
		}
		sum += rss
	}
	return sum, nil
}

// parseProcStatBusy returns the busy time of all CPUs, in clock ticks, from
// the contents of /proc/stat, whose first line is
// "cpu user nice system idle iowait irq softirq steal ...": everything but
// idle and iowait.
func parseProcStatBusy(stat string) (int64, error) {
	line, _, _ := strings.Cut(stat, "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, fmt.Errorf("unexpected first line %q", truncate(line, 80))
	}
	var busy int64
	for i, f := range fields[1:9] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("field %d: %w", i+1, err)
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, nil
}

// readCPUTicks returns pid's user plus system CPU time in clock ticks.
func readCPUTicks(pid int) (int64, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading the server's CPU time: %w", err)
	}
	ticks, err := parseStatCPU(string(data))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return ticks, nil
}

// parseStatCPU returns utime + stime from the contents of /proc/<pid>/stat.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')': after it come state (field 3) and, at offsets
// 11 and 12, utime (field 14) and stime (field 15).
func parseStatCPU(stat string) (int64, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("no command name in %q", truncate(stat, 80))
	}
	fields := strings.Fields(stat[end+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("only %d fields after the command name", len(fields))
	}
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return utime + stime, nil
}

// readRSS returns pid's resident set size in bytes.
func readRSS(pid int) (int64, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading the server's RSS: %w", err)
	}
	rss, err := parseStatusRSS(string(data))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return rss, nil
}

// parseStatusRSS returns VmRSS, in bytes, from the contents of
// /proc/<pid>/status, where it reads like "VmRSS:	  123456 kB".
func parseStatusRSS(status string) (int64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", strings.TrimSpace(line))
		}
		kib, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		return kib << 10, nil
	}
	return 0, fmt.Errorf("no VmRSS line (a kernel thread or a zombie has none)")
}

// waitStableRSS polls the pids' total RSS until it is stable, timeout
// passes or ctx ends, and returns the last reading and whether it was
// stable.
func waitStableRSS(ctx context.Context, pids []int, timeout time.Duration) (int64, bool, error) {
	prev, err := readRSSSum(pids)
	if err != nil {
		return 0, false, err
	}
	ticker := time.NewTicker(rssPollInterval)
	defer ticker.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for streak := 0; streak < rssStableReadings; {
		select {
		case <-ticker.C:
		case <-deadline.C:
			return prev, false, nil
		case <-ctx.Done():
			return prev, false, nil
		}
		cur, err := readRSSSum(pids)
		if err != nil {
			return 0, false, err
		}
		streak = nextStreak(streak, prev, cur)
		prev = cur
	}
	return prev, true, nil
}

// nextStreak extends the run of stable readings when cur is within
// rssTolerance of prev, and restarts it otherwise.
func nextStreak(streak int, prev, cur int64) int {
	if float64(abs(cur-prev)) <= rssTolerance*float64(prev) {
		return streak + 1
	}
	return 0
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
