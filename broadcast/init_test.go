package broadcast

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseInitErrors(t *testing.T) {
	tests := []struct {
		name    string
		msg     string
		wantErr error
	}{
		{"empty", ``, ErrInvalidSyntax},
		{"not JSON", `events=a`, ErrInvalidSyntax},
		{"array", `[]`, ErrInvalidSyntax},
		{"string", `"x"`, ErrInvalidSyntax},
		{"null", `null`, ErrInvalidSyntax},
		{"number", `1`, ErrInvalidSyntax},
		{"truncated", `{"events":["a"]`, ErrInvalidSyntax},
		{"trailing garbage", `{"events":["a"]}x`, ErrInvalidSyntax},
		{"invalid UTF-8 in a string", "{\"events\":[\"\xff\"]}", ErrInvalidSyntax},
		{"invalid UTF-8 in an ignored key", "{\"events\":[],\"x\":\"\xc3\x28\"}", ErrInvalidSyntax},
		{"empty object", `{}`, ErrEventsMissing},
		{"events null", `{"events":null}`, ErrEventsMissing},
		{"events a string", `{"events":"a"}`, ErrEventsMissing},
		{"events a number", `{"events":1}`, ErrEventsMissing},
		{"events an object", `{"events":{}}`, ErrEventsMissing},
		{"event a number", `{"events":[1]}`, ErrEventsMissing},
		{"event null", `{"events":[null]}`, ErrEventsMissing},
		{"event an array", `{"events":[["a"]]}`, ErrEventsMissing},
		{"one bad among good", `{"events":["a",true,"b"]}`, ErrEventsMissing},
		{"keys are case-sensitive", `{"Events":["a"]}`, ErrEventsMissing},
		{"duplicate key, last invalid", `{"events":["a"],"events":null}`, ErrEventsMissing},
		{"authentication only", `{"authentication":"Basic x"}`, ErrEventsMissing},
		{"since a number", `{"events":["a"],"since":17}`, ErrInvalidSyntax},
		{"since an array", `{"events":["a"],"since":["1-1"]}`, ErrInvalidSyntax},
		{"since false", `{"events":["a"],"since":false}`, ErrInvalidSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := ParseInit([]byte(tt.msg))
			require.ErrorIs(t, err, tt.wantErr)
			other := ErrInvalidSyntax
			if tt.wantErr == ErrInvalidSyntax {
				other = ErrEventsMissing
			}
			assert.NotErrorIs(t, err, other)
			assert.Equal(t, Init{}, in)
		})
	}
}

func TestParseInit(t *testing.T) {
	tests := []struct {
		name     string
		msg      string
		wantAuth string
		want     []string
	}{
		{"full", `{"authentication":"Basic tok","events":["a","b"]}`, "Basic tok", []string{"a", "b"}},
		{"authentication absent", `{"events":["a"]}`, "", []string{"a"}},
		{"authentication a number", `{"authentication":1,"events":["a"]}`, "", []string{"a"}},
		{"authentication null", `{"authentication":null,"events":["a"]}`, "", []string{"a"}},
		{"authentication an array", `{"authentication":["Basic tok"],"events":["a"]}`, "", []string{"a"}},
		{"authentication an object", `{"authentication":{"Basic":"tok"},"events":["a"]}`, "", []string{"a"}},
		{"authentication escaped", `{"authentication":"Basic \u0074ok","events":[]}`, "Basic tok", []string{}},
		{"duplicates kept as sent", `{"events":["a","b","a","a"]}`, "", []string{"a", "b", "a", "a"}},
		{"empty array", `{"events":[]}`, "", []string{}},
		{"empty name kept", `{"events":[""]}`, "", []string{""}},
		{"unknown keys ignored", `{"type":"init","events":["a"],"x":{"y":[1,null]},"version":2}`, "", []string{"a"}},
		{"escapes decoded", `{"events":["caf\u00e9","a\"b","\n"]}`, "", []string{"café", `a"b`, "\n"}},
		{"UTF-8 names", `{"events":["日本","😀"]}`, "", []string{"日本", "😀"}},
		{"duplicate key keeps the last", `{"events":null,"events":["b"]}`, "", []string{"b"}},
		{"whitespace", " {\n \"events\" : [ \"a\" , \"b\" ] \n} ", "", []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := ParseInit([]byte(tt.msg))
			require.NoError(t, err)
			assert.Equal(t, tt.wantAuth, in.Authentication)
			require.NotNil(t, in.Events)
			assert.Equal(t, tt.want, in.Events)
			assert.Nil(t, in.Since)
		})
	}
}

func TestParseInitSince(t *testing.T) {
	tests := []struct {
		name, msg string
		want      *string
	}{
		{"absent", `{"events":["a"]}`, nil},
		{"null", `{"events":["a"],"since":null}`, nil},
		{"an ID", `{"events":["a"],"since":"1795425601234-42"}`, ptr("1795425601234-42")},
		{"empty: a first connection", `{"events":["a"],"since":""}`, ptr("")},
		{"anything else is kept as sent", `{"events":["a"],"since":"caf\u00e9"}`, ptr("café")},
		{"on a subscribe", `{"type":"subscribe","events":["a"],"since":"1-1"}`, ptr("1-1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := ParseInit([]byte(tt.msg))
			require.NoError(t, err)
			assert.Equal(t, tt.want, in.Since)
		})
	}
}

func ptr(s string) *string { return &s }

// decodeInitGeneric decodes msg with encoding/json's generic decoder
// (numbers kept as text, so that none overflows), for comparison.
func decodeInitGeneric(msg []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	return m, nil
}

func FuzzParseInit(f *testing.F) {
	for _, s := range []string{
		`{"authentication":"Basic tok","events":["a","b"]}`,
		`{"events":[]}`,
		`{"events":["a","a"],"x":1e400}`,
		`{"events":[1]}`,
		`{"events":null}`,
		`[]`,
		"{\"events\":[\"\xff\"]}",
		`{"events":["\ud800"],"events":["b"],"authentication":7}`,
		`{"type":"subscribe","events":["a"],"since":"1795425601234-42"}`,
		`{"events":["a"],"since":7,"since":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		in, err := ParseInit(msg)
		if err != nil {
			if !errors.Is(err, ErrInvalidSyntax) && !errors.Is(err, ErrEventsMissing) {
				t.Fatalf("ParseInit(%q): unexpected error %v", msg, err)
			}
			if in.Authentication != "" || in.Events != nil {
				t.Fatalf("ParseInit(%q): error %v with a non-zero Init %+v", msg, err, in)
			}
			return
		}
		if !utf8.Valid(msg) {
			t.Fatalf("ParseInit accepted invalid UTF-8 %q", msg)
		}
		m, err := decodeInitGeneric(msg)
		if err != nil {
			t.Fatalf("ParseInit accepted %q, which is not one JSON object: %v", msg, err)
		}
		list, ok := m["events"].([]any)
		if !ok {
			t.Fatalf("ParseInit accepted %q, whose events is %T, not an array", msg, m["events"])
		}
		if len(list) != len(in.Events) {
			t.Fatalf("ParseInit(%q) = %d events, the array has %d", msg, len(in.Events), len(list))
		}
		for i, v := range list {
			s, ok := v.(string)
			if !ok {
				t.Fatalf("ParseInit accepted %q, whose events[%d] is %T", msg, i, v)
			}
			if s != in.Events[i] {
				t.Fatalf("ParseInit(%q): events[%d] = %q, want %q", msg, i, in.Events[i], s)
			}
		}
		wantAuth, _ := m["authentication"].(string)
		if in.Authentication != wantAuth {
			t.Fatalf("ParseInit(%q): authentication %q, want %q", msg, in.Authentication, wantAuth)
		}
		switch since := m["since"].(type) {
		case nil:
			if in.Since != nil {
				t.Fatalf("ParseInit(%q): since %q, want none", msg, *in.Since)
			}
		case string:
			if in.Since == nil || *in.Since != since {
				t.Fatalf("ParseInit(%q): since %v, want %q", msg, in.Since, since)
			}
		default:
			t.Fatalf("ParseInit accepted %q, whose since is %T", msg, since)
		}
	})
}
