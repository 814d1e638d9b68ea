// Package admin owns the operator's endpoints on the listen server:
// GET /admin/status, /admin/clients and /admin/queues, and POST
// /admin/clients/{id}/close,
// for tokens with the admin permission. Their answers hold no credential.
package admin

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"eventsrv/auth"
	"eventsrv/broadcast"
	"eventsrv/internal/jsonhttp"
	"eventsrv/queue"
)

// Authenticator checks the Authorization header's value.
type Authenticator interface {
	Authenticate(credentials, remote, via string) (auth.Permissions, error)
}

// Hub is what the endpoints read from the broadcast hub.
type Hub interface {
	Stats() broadcast.Stats
	Clients() []broadcast.ClientInfo
	CloseClient(id uint64) bool
}

// Info describes the running process.
type Info struct {
	Version string
	Started time.Time
	Log     *slog.Logger // where closes by an admin are logged
	// Queues, when set, reports the work queues for GET /admin/queues.
	Queues func() []queue.QueueStats
}

type handler struct {
	auth Authenticator
	hub  Hub
	info Info
}

// NewHandler returns the /admin/ routes.
func NewHandler(a Authenticator, hub Hub, info Info) http.Handler {
	h := &handler{auth: a, hub: hub, info: info}
	if h.info.Log == nil {
		h.info.Log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var serve func(http.ResponseWriter)
		method := http.MethodGet
		switch {
		case r.URL.Path == "/admin/status":
			serve = h.status
		case r.URL.Path == "/admin/clients":
			serve = h.clients
		case r.URL.Path == "/admin/queues":
			serve = h.queues
		case strings.HasPrefix(r.URL.Path, "/admin/clients/") && strings.HasSuffix(r.URL.Path, "/close"):
			id, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/admin/clients/"), "/close"), 10, 64)
			if err != nil {
				jsonhttp.Error(w, http.StatusNotFound, "NOT_FOUND", "no such client: the ID is the id field of GET /admin/clients")
				return
			}
			method = http.MethodPost
			serve = func(w http.ResponseWriter) { h.closeClient(w, r, id) }
		default:
			jsonhttp.Error(w, http.StatusNotFound, "NOT_FOUND", "no such admin endpoint: GET /admin/status, /admin/clients or /admin/queues, POST /admin/clients/{id}/close")
			return
		}
		if r.Method != method && (method != http.MethodGet || r.Method != http.MethodHead) {
			if method == http.MethodGet {
				w.Header().Set("Allow", "GET, HEAD")
				jsonhttp.Error(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "this admin endpoint answers GET")
			} else {
				w.Header().Set("Allow", method)
				jsonhttp.Error(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "close a client with POST")
			}
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

// closeClient closes one subscriber's connection.
func (h *handler) closeClient(w http.ResponseWriter, r *http.Request, id uint64) {
	if !h.hub.CloseClient(id) {
		jsonhttp.Error(w, http.StatusNotFound, "NOT_FOUND", "no open client has this ID: GET /admin/clients lists them")
		return
	}
	h.info.Log.Info("client closed by admin", "client", id, "admin_remote", r.RemoteAddr)
	jsonhttp.Write(w, http.StatusOK, []byte(`{"code":"OK"}`))
}

// queueJSON is a work queue's state in GET /admin/queues.
type queueJSON struct {
	Name          string  `json:"name"`
	Depth         int     `json:"depth"`
	Offering      int     `json:"offering"`
	Working       int     `json:"working"`
	Workers       int     `json:"workers"`
	Added         uint64  `json:"added"`
	Full          uint64  `json:"refused_full"`
	Offered       uint64  `json:"offered"`
	Reoffered     uint64  `json:"reoffered"`
	Assigned      uint64  `json:"assigned"`
	Taken         uint64  `json:"taken"`
	Rejected      uint64  `json:"rejected"`
	TimedOut      uint64  `json:"timed_out"`
	TaskTimedOut  uint64  `json:"task_timed_out"`
	Abandoned     uint64  `json:"abandoned"`
	Done          uint64  `json:"done"`
	OldestWaiting float64 `json:"oldest_waiting_seconds"`
}

// queues lists the work queues.
func (h *handler) queues(w http.ResponseWriter) {
	out := []queueJSON{}
	if h.info.Queues != nil {
		for _, q := range h.info.Queues() {
			out = append(out, queueJSON{q.Name, q.Depth, q.Offering, q.Working, q.Workers, q.Added, q.Full, q.Offered,
				q.Reoffered, q.Assigned, q.Taken, q.Rejected, q.TimedOut, q.TaskTimedOut, q.Abandoned, q.Done,
				q.OldestWaiting.Seconds()})
		}
	}
	jsonhttp.Value(w, http.StatusOK, struct {
		Queues []queueJSON `json:"queues"`
	}{out})
}

// clients lists every subscriber.
func (h *handler) clients(w http.ResponseWriter) {
	jsonhttp.Value(w, http.StatusOK, struct {
		Clients []broadcast.ClientInfo `json:"clients"`
	}{h.hub.Clients()})
}
