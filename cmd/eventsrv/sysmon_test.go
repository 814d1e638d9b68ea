package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSysmonEnv(t *testing.T) {
	const set = "GODEBUG=" + sysmonSetting
	for _, tc := range []struct {
		name    string
		args    []string
		environ []string
		want    []string // nil: run as it is
	}{
		{"server, no GODEBUG", []string{"eventsrv"}, []string{"A=1"}, []string{"A=1", set}},
		{"serve", []string{"eventsrv", "serve"}, nil, []string{set}},
		{"other GODEBUG settings kept", []string{"eventsrv"}, []string{"GODEBUG=madvdontneed=1", "B=2"}, []string{"GODEBUG=madvdontneed=1," + sysmonSetting, "B=2"}},
		{"empty GODEBUG", []string{"eventsrv"}, []string{"GODEBUG="}, []string{set}},
		{"the user's schedtrace wins", []string{"eventsrv"}, []string{"GODEBUG=gctrace=1,schedtrace=0"}, nil},
		{"already started again", []string{"eventsrv"}, []string{set}, nil},
		{"a setting merely ending in schedtrace", []string{"eventsrv"}, []string{"GODEBUG=xschedtrace=1"}, []string{"GODEBUG=xschedtrace=1," + sysmonSetting}},
		{"client command", []string{"eventsrv", "pub", "a", "1"}, nil, nil},
		{"serve with arguments", []string{"eventsrv", "serve", "-h"}, nil, nil},
		{"help", []string{"eventsrv", "help"}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]string(nil), tc.environ...)
			got, ok := sysmonEnv(tc.args, in)
			assert.Equal(t, tc.want != nil, ok)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.environ, in, "the caller's slice is not changed")
		})
	}
}
