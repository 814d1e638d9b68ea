package cors

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const app = "https://app.example.com"

func TestParseEmptyIsNil(t *testing.T) {
	for _, list := range []string{"", " ", " \t "} {
		p, err := Parse(list)
		require.NoError(t, err, "%q", list)
		require.Nil(t, p, "%q: no policy, the service as before", list)
	}
}

func TestParseRefusesWhatIsNotAnOrigin(t *testing.T) {
	for _, list := range []string{
		"app.example.com",             // no scheme
		"//app.example.com",           // no scheme
		"ftp://x",                     // not http(s)
		"ws://app.example.com",        // a browser's Origin is never ws
		"https://",                    // no host
		"https:app.example.com",       // opaque, no host
		"https://app.example.com/",    // a trailing slash is a path; browsers send none
		"https://app.example.com/app", // a path
		"https://app.example.com?",    // an empty query
		"https://app.example.com?a=1", // a query
		"https://app.example.com#",    // an empty fragment
		"https://app.example.com#top", // a fragment
		"https://user@app.example.com",
		"https://user:pw@app.example.com",
		"https://app.example.com:",      // an empty port
		"https://app.example.com:0",     // no such port
		"https://app.example.com:65536", // no such port
		"https://app.example.com:http",  // a port by name
		"https://app%2Eexample.com",     // escaped: not what a browser sends
		"https://bücher.example",        // browsers send punycode
		"https://a\u0080.example",       // the first rune past ASCII
		"http://[::1",                   // malformed
		"http://a b.com",                // malformed
		"http://app.example.com\x7f",    // a control character
		"https://app.example.com,",      // an empty item
		"https://app.example.com,,http://localhost:3000",
		"*, ftp://x", // one bad item spoils the list, even with *
		"**",
	} {
		p, err := Parse(list)
		require.Error(t, err, "%q", list)
		require.Nil(t, p, "%q", list)
		assert.ErrorContains(t, err, "is not an origin like https://app.example.com", "%q", list)
	}
}

// TestParseAndAllowed checks which Origin headers a parsed list lets
// through. Browsers send an origin serialized: lower-case scheme and host,
// no default port, no trailing slash; a list written otherwise is read as
// the origin it names.
func TestParseAndAllowed(t *testing.T) {
	for _, tc := range []struct {
		list    string
		allowed []string
		refused []string
	}{
		{
			list:    app,
			allowed: []string{app, ""},
			refused: []string{"https://other.example.com", "http://app.example.com", "https://app.example.com:8443", "https://app.example.com/", "https://APP.example.com", "https://example.com", "https://evil.app.example.com", "null", "*"},
		},
		{
			list:    " https://app.example.com ,http://localhost:3000 ",
			allowed: []string{app, "http://localhost:3000"},
			refused: []string{"http://localhost", "http://localhost:3001", "https://localhost:3000", " " + app},
		},
		{
			list:    "*",
			allowed: []string{app, "http://localhost:3000", "null", "anything at all", ""},
		},
		{
			list:    "http://localhost:3000, *",
			allowed: []string{app, "null"},
		},
		{
			list:    "HTTPS://App.Example.COM",
			allowed: []string{app},
			refused: []string{"HTTPS://App.Example.COM"},
		},
		{
			list:    "https://app.example.com:443, http://localhost:80",
			allowed: []string{app, "http://localhost"},
			refused: []string{"https://app.example.com:443", "http://localhost:80"},
		},
		{
			list:    "http://app.example.com:443, https://app.example.com:80",
			allowed: []string{"http://app.example.com:443", "https://app.example.com:80"},
			refused: []string{app, "http://app.example.com"},
		},
		{
			list:    "https://app.example.com:1, https://app.example.com:65535",
			allowed: []string{"https://app.example.com:1", "https://app.example.com:65535"},
			refused: []string{app},
		},
		{
			list:    "https://app.example.com:08443",
			allowed: []string{"https://app.example.com:8443"},
			refused: []string{app},
		},
		{
			list:    "https://xn--bcher-kva.example",
			allowed: []string{"https://xn--bcher-kva.example"},
		},
		{
			list:    "http://[::1]:3000, http://[::1], http://127.0.0.1:8080",
			allowed: []string{"http://[::1]:3000", "http://[::1]", "http://127.0.0.1:8080"},
			refused: []string{"http://[::1]:3001", "http://127.0.0.1"},
		},
	} {
		t.Run(tc.list, func(t *testing.T) {
			p, err := Parse(tc.list)
			require.NoError(t, err)
			require.NotNil(t, p)
			for _, o := range tc.allowed {
				assert.True(t, p.Allowed(o), "%q", o)
			}
			for _, o := range tc.refused {
				assert.False(t, p.Allowed(o), "%q", o)
			}
		})
	}
}

func TestNilPolicyAllowsEveryOrigin(t *testing.T) {
	var p *Policy
	for _, o := range []string{"", app, "null", "ftp://x"} {
		assert.True(t, p.Allowed(o), "%q", o)
	}
}

// answer is what a wrapped handler did with one request.
type answer struct {
	nextCalled bool
	code       int
	header     http.Header
	body       string
}

// serve sends one request through p.Wrap around a handler that answers 200
// "next", and reports what came back.
func serve(t *testing.T, p *Policy, method string, header http.Header) answer {
	t.Helper()
	var a answer
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		a.nextCalled = true
		_, _ = w.Write([]byte("next"))
	})
	req := httptest.NewRequest(method, "/event", strings.NewReader(""))
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	p.Wrap(next, "POST").ServeHTTP(rec, req)
	a.code, a.header, a.body = rec.Code, rec.Header(), rec.Body.String()
	return a
}

func preflightHeader(origin string) http.Header {
	return http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization"}}
}

// requireNoPreflightHeaders checks that an answer carries none of the
// headers only a preflight's answer has.
func requireNoPreflightHeaders(t *testing.T, h http.Header) {
	t.Helper()
	for _, k := range []string{"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age"} {
		require.Empty(t, h.Values(k), k)
	}
}

func TestWrapPreflight(t *testing.T) {
	p, err := Parse(app)
	require.NoError(t, err)

	t.Run("allowed", func(t *testing.T) {
		a := serve(t, p, http.MethodOptions, preflightHeader(app))
		require.False(t, a.nextCalled, "the wrapper answers preflights itself")
		require.Equal(t, http.StatusNoContent, a.code)
		require.Empty(t, a.body)
		require.Equal(t, []string{app}, a.header.Values("Access-Control-Allow-Origin"))
		require.Equal(t, []string{"POST"}, a.header.Values("Access-Control-Allow-Methods"))
		require.Equal(t, []string{"Authorization, Content-Type, Last-Event-ID"}, a.header.Values("Access-Control-Allow-Headers"))
		require.Equal(t, []string{"600"}, a.header.Values("Access-Control-Max-Age"))
		require.Equal(t, []string{"Origin"}, a.header.Values("Vary"))
	})
	t.Run("refused", func(t *testing.T) {
		a := serve(t, p, http.MethodOptions, preflightHeader("https://evil.example.com"))
		require.False(t, a.nextCalled)
		require.Equal(t, http.StatusForbidden, a.code)
		require.JSONEq(t, `{"code":"FORBIDDEN_ORIGIN","message":"this origin is not in CORS_ALLOWED_ORIGINS: https://evil.example.com"}`, a.body)
		require.Empty(t, a.header.Values("Access-Control-Allow-Origin"))
		requireNoPreflightHeaders(t, a.header)
		require.Equal(t, []string{"Origin"}, a.header.Values("Vary"))
	})
	t.Run("any origin", func(t *testing.T) {
		p, err := Parse("*")
		require.NoError(t, err)
		a := serve(t, p, http.MethodOptions, preflightHeader("https://anywhere.example"))
		require.False(t, a.nextCalled)
		require.Equal(t, http.StatusNoContent, a.code)
		require.Equal(t, []string{"https://anywhere.example"}, a.header.Values("Access-Control-Allow-Origin"),
			"the origin itself, not *, so that the answer may carry credentials")
	})
}

// TestWrapNotAPreflight checks requests that the wrapper hands on: an
// OPTIONS without Access-Control-Request-Method is not a preflight, nor is
// a POST with one.
func TestWrapNotAPreflight(t *testing.T) {
	p, err := Parse(app)
	require.NoError(t, err)
	for _, tc := range []struct {
		name, method string
		header       http.Header
		allowOrigin  []string
	}{
		{"OPTIONS without Access-Control-Request-Method", http.MethodOptions, http.Header{"Origin": {app}}, []string{app}},
		{"OPTIONS with an empty Access-Control-Request-Method", http.MethodOptions, http.Header{"Origin": {app}, "Access-Control-Request-Method": {""}}, []string{app}},
		{"refused OPTIONS without Access-Control-Request-Method", http.MethodOptions, http.Header{"Origin": {"https://evil.example.com"}}, nil},
		{"OPTIONS without Origin", http.MethodOptions, http.Header{"Access-Control-Request-Method": {"POST"}}, nil},
		{"POST with Access-Control-Request-Method", http.MethodPost, preflightHeader(app), []string{app}},
		{"allowed POST", http.MethodPost, http.Header{"Origin": {app}}, []string{app}},
		{"refused POST", http.MethodPost, http.Header{"Origin": {"https://evil.example.com"}}, nil},
		{"POST without Origin", http.MethodPost, nil, nil},
		{"GET", http.MethodGet, http.Header{"Origin": {app}}, []string{app}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := serve(t, p, tc.method, tc.header)
			require.True(t, a.nextCalled, "the wrapped handler answers, and refuses an origin itself")
			require.Equal(t, http.StatusOK, a.code)
			require.Equal(t, "next", a.body)
			require.Equal(t, tc.allowOrigin, a.header.Values("Access-Control-Allow-Origin"), "readable by the page only when its origin is allowed")
			require.Equal(t, []string{"Origin"}, a.header.Values("Vary"), "caches keep answers to different origins apart")
			requireNoPreflightHeaders(t, a.header)
		})
	}
}

// TestWrapNilPolicy checks that without a list the handler is served as
// is: no CORS headers, not even for what looks like a preflight.
func TestWrapNilPolicy(t *testing.T) {
	for _, header := range []http.Header{preflightHeader(app), {"Origin": {app}}, nil} {
		a := serve(t, nil, http.MethodOptions, header)
		require.True(t, a.nextCalled)
		require.Equal(t, http.StatusOK, a.code)
		require.Empty(t, a.header.Values("Access-Control-Allow-Origin"))
		require.Empty(t, a.header.Values("Vary"))
		requireNoPreflightHeaders(t, a.header)
	}
}

// FuzzParse checks that Parse never panics, and that every origin it
// keeps is canonical (parsing it again gives itself) and allowed.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		app, "*", "", "ftp://x", "https://", "https://a.com/path", "HTTPS://A.com:443",
		"http://[::1]:3000", "http://[::1", "https://a.com:0", "https://u@a.com", "a, b,*",
		"http://localhost:3000,https://app.example.com", "https://a.com:", "https://xn--bcher-kva.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		p, err := Parse(list)
		if err != nil {
			require.Nil(t, p)
			return
		}
		if p == nil {
			require.Empty(t, strings.TrimSpace(list))
			return
		}
		for o := range p.origins {
			again, err := Parse(o)
			require.NoError(t, err, "%q from %q", o, list)
			require.Equal(t, map[string]bool{o: true}, again.origins, "%q from %q", o, list)
			require.True(t, p.Allowed(o))
		}
	})
}
