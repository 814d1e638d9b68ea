package history

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseIDValid(t *testing.T) {
	tests := []struct {
		in   string
		want ID
	}{
		{"0-0", ID{}},
		{"1-1", ID{Epoch: 1, Seq: 1}},
		{"0-7", ID{Epoch: 0, Seq: 7}},
		{"1795425601234-42", ID{Epoch: 1795425601234, Seq: 42}},
		{"10-100", ID{Epoch: 10, Seq: 100}},
		{"18446744073709551615-18446744073709551615", ID{Epoch: math.MaxUint64, Seq: math.MaxUint64}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseID(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.in, got.String(), "the wire form is canonical")
		})
	}
}

func TestParseIDInvalid(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"dash only", "-"},
		{"no seq", "1-"},
		{"no epoch", "-1"},
		{"no dash", "12"},
		{"leading zero epoch", "01-1"},
		{"leading zero seq", "1-01"},
		{"double zero", "00-0"},
		{"two dashes", "1--1"},
		{"three parts", "1-1-1"},
		{"leading space", " 1-1"},
		{"trailing space", "1-1 "},
		{"trailing newline", "1-1\n"},
		{"plus sign", "+1-1"},
		{"minus sign on seq", "1--0"},
		{"seq overflows", "1-18446744073709551616"},
		{"epoch overflows", "18446744073709551616-1"},
		{"20 digits overflow", "99999999999999999999-1"},
		{"21-digit part", "1-100000000000000000000"},
		{"21-digit zero-padded part", "1-000000000000000000001"},
		{"letter", "a-1"},
		{"hex", "0x1-1"},
		{"underscore", "1_1"},
		{"underscore in digits", "1_0-1"},
		{"Arabic-Indic digit", "\u0661-1"},
		{"fullwidth digit", "1-\uff11"},
		{"NUL", "1-1\x00"},
		{"invalid UTF-8", "1-\xff"},
		{"longer than any ID", strings.Repeat("1", 1000) + "-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseID(tc.in)
			require.ErrorIs(t, err, ErrInvalidID)
		})
	}
}

func TestIDAppendTo(t *testing.T) {
	id := ID{Epoch: 1795425601234, Seq: 42}
	buf := make([]byte, 0, 64)
	got := id.AppendTo(append(buf, `"id":"`...))
	require.Equal(t, `"id":"1795425601234-42`, string(got))
	require.Equal(t, 0.0, testing.AllocsPerRun(100, func() { _ = id.AppendTo(buf[:0]) }),
		"AppendTo into a buffer with room allocates nothing")
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{
		"0-0", "1-1", "1795425601234-42", "18446744073709551615-18446744073709551615",
		"", "-", "01-1", "1-18446744073709551616", "+1-1", "1-1-1", "\u0661-1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidID)
			require.Equal(t, ID{}, id)
			return
		}
		require.Equal(t, s, id.String(), "a valid ID round-trips exactly")
		again, err := ParseID(id.String())
		require.NoError(t, err)
		require.Equal(t, id, again)
	})
}
