package admin

import (
	"errors"
	"net/http"
	"time"

	"eventsrv/auth"
	"eventsrv/internal/jsonhttp"
)

// NewWhoami returns GET /whoami: the caller's identity and rights, read
// from its Authorization header, for any valid credential (the console
// asks it right after login). It never echoes the credential.
func NewWhoami(a Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			jsonhttp.Error(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "/whoami answers GET")
			return
		}
		creds := r.Header.Get("Authorization")
		perms, err := a.Authenticate(creds, r.RemoteAddr, "admin")
		switch {
		case errors.Is(err, auth.ErrUnrecognizedScheme):
			jsonhttp.Error(w, http.StatusForbidden, "AUTH_UNRECOGNIZED_SCHEME", auth.Explain(err, creds, "the Authorization header"))
			return
		case err != nil:
			jsonhttp.Error(w, http.StatusForbidden, "UNAUTHENTICATED", "invalid token: "+auth.Explain(err, creds, "the Authorization header"))
			return
		}
		var expires *time.Time
		if !perms.Expires.IsZero() {
			e := perms.Expires.UTC()
			expires = &e
		}
		w.Header().Set("Cache-Control", "no-store")
		jsonhttp.Value(w, http.StatusOK, struct {
			Subject   string        `json:"sub"`
			Publish   auth.Patterns `json:"publish"`
			Subscribe auth.Patterns `json:"subscribe"`
			Enqueue   auth.Patterns `json:"enqueue"`
			Work      auth.Patterns `json:"work"`
			Admin     bool          `json:"admin"`
			Expires   *time.Time    `json:"expires"`
		}{perms.Subject, nonNil(perms.Publish), nonNil(perms.Subscribe), nonNil(perms.Enqueue), nonNil(perms.Work), perms.Admin, expires})
	})
}

// nonNil makes "no patterns" [] rather than null in JSON.
func nonNil(p auth.Patterns) auth.Patterns {
	if p == nil {
		return auth.Patterns{}
	}
	return p
}
