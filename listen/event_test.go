package listen

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseEventInvalid(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"empty", ""},
		{"not JSON", "event=a"},
		{"array", `[]`},
		{"null", `null`},
		{"string", `"s"`},
		{"number", `1`},
		{"true", `true`},
		{"empty object", `{}`},
		{"event is a number", `{"event":1}`},
		{"event is null", `{"event":null}`},
		{"event is an array", `{"event":["a"]}`},
		{"event is an object", `{"event":{}}`},
		{"event is empty", `{"event":""}`},
		{"keys are case-sensitive", `{"EVENT":"a"}`},
		{"keys are case-sensitive, mixed", `{"Event":"a","data":1}`},
		{"truncated", `{"event":"a"`},
		{"truncated data", `{"event":"a","data":`},
		{"invalid UTF-8 in a string", "{\"event\":\"\xff\"}"},
		{"invalid UTF-8 in data", "{\"event\":\"a\",\"data\":\"\xc3\x28\"}"},
		{"invalid UTF-8 outside strings", "{\"event\":\"a\"}\xff"},
		{"trailing garbage", `{"event":"a"}x`},
		{"second value", `{"event":"a"} {"event":"b"}`},
		{"duplicate key, last invalid", `{"event":"a","event":1}`},
		{"invalid data", `{"event":"a","data":tru}`},
		{"byte order mark", "\ufeff{\"event\":\"a\"}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := ParseEvent([]byte(tt.body))
			require.ErrorIs(t, err, ErrInvalidBody)
			assert.Equal(t, Event{}, ev)
		})
	}
}

func TestParseEventValid(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantName string
		wantData string
	}{
		{"data absent", `{"event":"a"}`, "a", `null`},
		{"data null", `{"event":"a","data":null}`, "a", `null`},
		{"object data, inner whitespace kept", `{"event":"a","data":{"x" : 1}}`, "a", `{"x" : 1}`},
		{"outer whitespace dropped", "{ \"event\" : \"a\" ,\n\t\"data\" :  [1, 2]  \n}", "a", `[1, 2]`},
		{"string escapes kept", `{"event":"a","data":"\u00e9\n"}`, "a", `"\u00e9\n"`},
		{"exponent kept", `{"event":"a","data":1e3}`, "a", `1e3`},
		{"trailing zero kept", `{"event":"a","data":-0.50}`, "a", `-0.50`},
		{"big number kept", `{"event":"a","data":123456789012345678901234567890}`, "a", `123456789012345678901234567890`},
		{"false", `{"event":"a","data":false}`, "a", `false`},
		{"data first", `{"data":{"k":[]},"event":"a"}`, "a", `{"k":[]}`},
		{"duplicate key keeps the last", `{"event":"a","event":"b"}`, "b", `null`},
		{"duplicate data keeps the last", `{"event":"a","data":1,"data":2}`, "a", `2`},
		{"unknown keys ignored", `{"event":"a","x":1,"Data":3}`, "a", `null`},
		{"escaped name decoded", `{"event":"caf\u00e9 \"q\""}`, `café "q"`, `null`},
		{"escaped key matches", `{"\u0065vent":"a"}`, "a", `null`},
		{"UTF-8 name", `{"event":"日本😀"}`, "日本😀", `null`},
		{"UTF-8 data kept", `{"event":"a","data":"é😀"}`, "a", `"é😀"`},
		{"whitespace around the body", " \n{\"event\":\"a\"}\r\n ", "a", `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := ParseEvent([]byte(tt.body))
			require.NoError(t, err)
			assert.Equal(t, tt.wantName, ev.Name)
			assert.Equal(t, tt.wantData, string(ev.Data), "data must be byte-exact")
		})
	}
}

func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{
		`{"event":"a"}`,
		`{"event":"a","data":{"x" : 1}}`,
		`{"event":"a","data":"\u00e9\n"}`,
		`{"event":"a","event":"b","data":-0.50}`,
		`{"EVENT":"a"}`,
		`{"event":""}`,
		`{"event":"a"}x`,
		"{\"event\":\"\xff\"}",
		`{"event":"\ud800","data":[1e3,null,true]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseEvent(body)
		if err != nil {
			if ev.Name != "" || ev.Data != nil {
				t.Fatalf("error %v with a non-zero event %+v", err, ev)
			}
			return
		}
		if ev.Name == "" {
			t.Fatalf("accepted %q with an empty name", body)
		}
		if !json.Valid(ev.Data) {
			t.Fatalf("accepted %q with invalid data %q", body, ev.Data)
		}
		if !utf8.Valid(body) {
			t.Fatalf("accepted invalid UTF-8 %q", body)
		}
		if !bytes.Contains(body, ev.Data) && string(ev.Data) != "null" {
			t.Fatalf("data %q is not relayed from the body %q", ev.Data, body)
		}
	})
}

// benchBody is a typical event: a short name and about 100 bytes of data.
var benchBody = []byte(`{"event":"order.created","data":{"id":"3f8a1c2e-9b4d-4e7a-8c61-2d5f0a9b7e13","total":129.95,"currency":"EUR","items":3,"paid":true}}`)

func BenchmarkParseEvent(b *testing.B) {
	ev, err := ParseEvent(benchBody)
	require.NoError(b, err)
	require.Equal(b, "order.created", ev.Name)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBody)))
	for b.Loop() {
		if _, err := ParseEvent(benchBody); err != nil {
			b.Fatal(err)
		}
	}
}
