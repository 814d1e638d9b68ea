package jsonvalid

import (
	"encoding/json"
	"strings"
	"testing"
)

var cases = []struct {
	in    string
	valid bool
}{
	{`0`, true}, {`-0`, true}, {`12`, true}, {`-1.5e+10`, true}, {`1E5`, true}, {`1.0e-0`, true},
	{`01`, false}, {`-`, false}, {`1.`, false}, {`.5`, false}, {`1e`, false}, {`1e+`, false}, {`+1`, false}, {`--1`, false}, {`0x1`, false},
	{`"a"`, true}, {`""`, true}, {`"\"\\\/\b\f\n\r\t"`, true}, {`"\u00e9\uD83D\uDE00"`, true}, {"\"\xff\xfe\"", true}, {`"é"`, true},
	{`"`, false}, {`"a`, false}, {`"\x"`, false}, {`"\u12"`, false}, {`"\u12G4"`, false}, {"\"a\nb\"", false}, {"\"\x1f\"", false}, {`"\`, false}, {`"\u`, false},
	{`true`, true}, {`false`, true}, {`null`, true}, {`tru`, false}, {`nul`, false}, {`True`, false}, {`truex`, false}, {`nullnull`, false},
	{`[]`, true}, {`[ ]`, true}, {`[1,2,[3,{}]]`, true}, {`[1,]`, false}, {`[,1]`, false}, {`[1 2]`, false}, {`[`, false}, {`]`, false}, {`[1}`, false}, {`[[]`, false},
	{`{}`, true}, {` { "a" : 1 , "b":[true,null] } `, true}, {`{"a":{"b":{}}}`, true},
	{`{"a"}`, false}, {`{"a":}`, false}, {`{"a":1,}`, false}, {`{a:1}`, false}, {`{1:1}`, false}, {`{"a":1 "b":2}`, false}, {`{"a" 1}`, false}, {`{`, false}, {`{"a":1]`, false}, {`{,}`, false},
	{``, false}, {` `, false}, {"\t\n\r 1 \r\n\t", true}, {"\v1", false}, {`1 2`, false}, {`{} {}`, false}, {`[]]`, false}, {"\x00", false},
}

// TestValid: the grammar's edges, each checked against encoding/json too.
func TestValid(t *testing.T) {
	for _, tc := range cases {
		if got := Valid([]byte(tc.in)); got != tc.valid {
			t.Errorf("Valid(%q) = %v, want %v", tc.in, got, tc.valid)
		}
		if std := json.Valid([]byte(tc.in)); std != tc.valid {
			t.Errorf("the case %q is wrong: encoding/json says %v", tc.in, std)
		}
	}
}

// TestDepth: encoding/json's nesting limit, in arrays and objects.
func TestDepth(t *testing.T) {
	for _, tc := range []struct {
		open, close string
	}{{"[", "]"}, {`{"a":`, "}"}} {
		for _, depth := range []int{MaxDepth - 1, MaxDepth, MaxDepth + 1} {
			in := []byte(strings.Repeat(tc.open, depth) + "1" + strings.Repeat(tc.close, depth))
			if got, want := Valid(in), json.Valid(in); got != want || want != (depth <= MaxDepth) {
				t.Errorf("%s nested %d deep: Valid %v, encoding/json %v", tc.open, depth, got, want)
			}
		}
	}
}

// FuzzValid: Valid agrees with encoding/json.Valid on every input.
func FuzzValid(f *testing.F) {
	for _, tc := range cases {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte(`{"event":"order.created","data":{"id":42,"items":[{"sku":"a-1","qty":2.5e0}],"note":"caf\u00e9"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

var sample = []byte(`{"id":12345,"name":"order.created","price":19.99,"tags":["a","b"],"ok":true,"note":null,"text":"some words \"quoted\" here"}`)

func BenchmarkValid(b *testing.B) {
	b.SetBytes(int64(len(sample)))
	for b.Loop() {
		if !Valid(sample) {
			b.Fatal("not valid")
		}
	}
}

func BenchmarkEncodingJSONValid(b *testing.B) {
	b.SetBytes(int64(len(sample)))
	for b.Loop() {
		if !json.Valid(sample) {
			b.Fatal("not valid")
		}
	}
}
