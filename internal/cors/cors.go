// Package cors decides which browser origins may use the service: it
// answers CORS preflights and marks answers readable for allowed origins,
// and tells the WebSocket handler which Origins to accept.
package cors

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"eventsrv/internal/jsonhttp"
)

// Policy is a list of allowed origins. A nil *Policy allows every origin
// and adds no CORS headers: the service then behaves as the one it
// replaces (backends do not send Origin; browsers cannot read cross-origin
// answers).
type Policy struct {
	any     bool
	origins map[string]bool
}

// Parse reads a comma-separated list of origins ("https://app.example.com",
// "http://localhost:3000") or "*" for any; empty gives a nil Policy.
func Parse(list string) (*Policy, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	p := &Policy{origins: make(map[string]bool)}
	for _, item := range strings.Split(list, ",") {
		o := strings.TrimSpace(item)
		if o == "*" {
			p.any = true
			continue
		}
		origin, err := canonical(o)
		if err != nil {
			return nil, err
		}
		p.origins[origin] = true
	}
	return p, nil
}

// canonical returns o as browsers write an origin in the Origin header:
// scheme and host in lower case, and no port when it is the scheme's
// default, so that "HTTPS://App.example.com:443" in the list matches the
// "https://app.example.com" that browsers send. Anything an origin does not
// have (user, path, even a bare "/", "?" or "#") is refused rather than
// kept as an entry that no request could match, and so is a host not in
// ASCII, which browsers send in punycode ("xn--...").
func canonical(o string) (string, error) {
	notOrigin := fmt.Errorf("%q is not an origin like https://app.example.com", o)
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		!strings.EqualFold(o, u.Scheme+"://"+u.Host) || strings.HasSuffix(u.Host, ":") || strings.ContainsFunc(u.Host, func(r rune) bool { return r >= utf8.RuneSelf }) {
		return "", notOrigin
	}
	host := strings.ToLower(u.Host)
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", notOrigin
		}
		host = strings.TrimSuffix(host, ":"+port)
		if !(u.Scheme == "http" && n == 80 || u.Scheme == "https" && n == 443) { // browsers leave default ports out
			host += ":" + strconv.Itoa(n)
		}
	}
	return u.Scheme + "://" + host, nil
}

// Allowed reports whether a request with this Origin header may proceed.
// Requests without Origin (not from a browser) always may.
func (p *Policy) Allowed(origin string) bool {
	return p == nil || origin == "" || p.any || p.origins[origin]
}

// Wrap answers preflights (OPTIONS with Access-Control-Request-Method) for
// allowed origins and adds Access-Control-Allow-Origin to their answers.
// methods lists what the wrapped handler takes.
func (p *Policy) Wrap(next http.Handler, methods string) http.Handler {
	if p == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		w.Header().Add("Vary", "Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		allowed := p.Allowed(origin)
		if allowed {
			w.Header().Set("Access-Control-Allow-Origin", origin)
		}
		if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
			next.ServeHTTP(w, r)
			return
		}
		if !allowed {
			jsonhttp.Error(w, http.StatusForbidden, "FORBIDDEN_ORIGIN", "this origin is not in CORS_ALLOWED_ORIGINS: "+origin)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", methods)
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}
