// Package admin owns the operator's endpoints on the listen server:
// GET /admin/status and GET /admin/clients, for tokens with the admin
// permission. Their answers hold no credential.
package admin

import (
	"errors"
	"net/http"
	"time"

	"eventsrv/auth"
	"eventsrv/broadcast"
	"eventsrv/internal/jsonhttp"
)

// Authenticator checks the Authorization header's value.
type Authenticator interface {
	Authenticate(credentials, remote, via string) (auth.Permissions, error)
}

// Hub is what the endpoints read from the broadcast hub.
type Hub interface {
	Stats() broadcast.Stats
	Clients() []broadcast.ClientInfo
}

// Info describes the running process.
type Info struct {
	Version string
	Started time.Time
}

type handler struct {
	auth Authenticator
	hub  Hub
	info Info
}

// NewHandler returns the /admin/ routes.
func NewHandler(a Authenticator, hub Hub, info Info) http.Handler {
	h := &handler{auth: a, hub: hub, info: info}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var serve func(http.ResponseWriter)
		switch r.URL.Path {
		case "/admin/status":
			serve = h.status
		case "/admin/clients":
			serve = h.clients
		default:
			jsonhttp.Error(w, http.StatusNotFound, "NOT_FOUND", "no such admin endpoint: GET /admin/status or /admin/clients")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			jsonhttp.Error(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "the admin endpoints answer GET")
			return
		}
		creds := r.Header.Get("Authorization")
		perms, err := h.auth.Authenticate(creds, r.RemoteAddr, "admin")
		switch {
		case errors.Is(err, auth.ErrUnrecognizedScheme):
			jsonhttp.Error(w, http.StatusForbidden, "AUTH_UNRECOGNIZED_SCHEME", auth.Explain(err, creds, "the Authorization header"))
		case err != nil:
			jsonhttp.Error(w, http.StatusForbidden, "UNAUTHENTICATED", auth.Explain(err, creds, "the Authorization header"))
		case !perms.Admin:
			jsonhttp.Error(w, http.StatusForbidden, "FORBIDDEN",
				"this token is not an admin: give it the admin field in the tokens file (\"<token> admin\")")
		default:
			w.Header().Set("Cache-Control", "no-store")
			serve(w)
		}
	})
}

// status is the process at a glance.
func (h *handler) status(w http.ResponseWriter) {
	jsonhttp.Value(w, http.StatusOK, struct {
		Version       string    `json:"version"`
		Started       time.Time `json:"started"`
		UptimeSeconds int64     `json:"uptime_seconds"`
		broadcast.Stats
	}{h.info.Version, h.info.Started.UTC(), int64(time.Since(h.info.Started).Seconds()), h.hub.Stats()})
}

// clients lists every subscriber.
func (h *handler) clients(w http.ResponseWriter) {
	jsonhttp.Value(w, http.StatusOK, struct {
		Clients []broadcast.ClientInfo `json:"clients"`
	}{h.hub.Clients()})
}
