package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The built server starts itself again, in the same process, with the
// GODEBUG setting that keeps sysmon from sleeping deeply; a schedtrace
// the user set is left alone.
func TestServerStartsAgainWithSysmonSetting(t *testing.T) {
	bin := filepath.Join(buildEventsrv(t, "./cmd/eventsrv"), "eventsrv")
	tokens := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(tokens, []byte(testToken+"\n"), 0o600))
	for _, tc := range []struct{ godebug, want string }{
		{"", "GODEBUG=" + sysmonSetting},
		{"madvdontneed=1", "GODEBUG=madvdontneed=1," + sysmonSetting},
		{"schedtrace=0", "GODEBUG=schedtrace=0"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			var env []string
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GODEBUG=") {
					env = append(env, kv)
				}
			}
			if tc.godebug != "" {
				env = append(env, "GODEBUG="+tc.godebug)
			}
			env = append(env, "TOKENS_FILE="+tokens, "BIND_ADDRESS=127.0.0.1", "LISTEN_PORT=0", "BROADCAST_PORT=0", "METRICS_ADDRESS=off")
			p := startProc(t, env, bin)
			p.stderr.waitFor(t, "starting eventsrv")
			environ, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/environ")
			require.NoError(t, err)
			var godebug []string
			for kv := range strings.SplitSeq(string(environ), "\x00") {
				if strings.HasPrefix(kv, "GODEBUG=") {
					godebug = append(godebug, kv)
				}
			}
			assert.Equal(t, []string{tc.want}, godebug)
			assert.NotContains(t, p.stderr.String(), "could not start again")
		})
	}
}
