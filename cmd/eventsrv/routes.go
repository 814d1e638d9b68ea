package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gorilla/websocket"

	"eventsrv/internal/jsonhttp"
	"eventsrv/internal/logthrottle"
)

// Each server says what it is at GET /, and a request meant for the other
// server is answered with where that is: a POST to the broadcast port, a
// WebSocket or an SSE stream opened on the listen port.

// where names a server's port for people: "port 8080", or the setting
// when the port is chosen at start.
func where(port int, setting string) string {
	if port == 0 {
		return "the port in its \"serving\" log line (" + setting + "=0)"
	}
	return "port " + strconv.Itoa(port)
}

// docs says where the documentation is.
const docs = "Docs: README.md beside the source; eventsrv help lists every setting.\n"

// listenAbout is the listen server's GET / answer.
func listenAbout(cfg config) string {
	return "eventsrv listen server: backends publish events here.\n" +
		"  POST /event             {\"event\":\"<name>\",\"data\":<any JSON>}, with Authorization: Basic <token>\n" +
		"  POST /events            a batch: [{\"event\":\"<name>\",\"data\":<any JSON>}, ...], up to 1000\n" +
		"  GET  /admin/status      for tokens with the admin field; also /admin/clients\n" +
		"  POST /task              a job's progress, streamed line by line, as task.<id> events\n" +
		"  POST /queue/{name}      add a task to a work queue (one worker takes it)\n" +
		"  GET  /whoami            the token's identity and rights\n" +
		"  GET  /console/          the web console: watch and publish events in a browser\n" +
		"  GET  /healthz, /readyz\n" +
		"Subscribers connect to the broadcast server, " + where(cfg.BroadcastPort, "BROADCAST_PORT") +
		": a WebSocket, or Server-Sent Events at GET /events?event=<name>.\n" + docs
}

// broadcastAbout is the broadcast server's GET / answer.
func broadcastAbout(cfg config) string {
	return "eventsrv broadcast server: subscribers receive events here.\n" +
		"  WebSocket at any path   send {\"authentication\":\"Basic <token>\",\"events\":[\"<name>\"]}\n" +
		"  GET  /events?event=<name>   Server-Sent Events (Authorization header, or ?token=<JWT>)\n" +
		"  GET  /queue/{name}/wait     a work queue's offers as Server-Sent Events; POST /queue/{name}/take\n" +
		"  GET  /healthz, /readyz\n" +
		"Backends publish with POST /event on the listen server, " + where(cfg.ListenPort, "LISTEN_PORT") + ".\n" + docs
}

// broadcastElsewhere ends the broadcast server's answer to a plain request
// (see broadcast.Options.Elsewhere).
func broadcastElsewhere(cfg config) string {
	return "; publish with POST /event on the listen server, " + where(cfg.ListenPort, "LISTEN_PORT")
}

// about answers GET / with text for people, and passes anything else on.
func about(text string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" || r.Method != http.MethodGet || websocket.IsWebSocketUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(text)))
		_, _ = fmt.Fprint(w, text)
	})
}

// notSubscribers answers, on the listen server, what is meant for the
// broadcast server: a WebSocket upgrade at any path, and GET /events (POST
// /events is a batch to publish, listen's).
func notSubscribers(cfg config, next http.Handler) http.Handler {
	other := where(cfg.BroadcastPort, "BROADCAST_PORT")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case websocket.IsWebSocketUpgrade(r):
			jsonhttp.Error(w, http.StatusNotFound, "NOT_FOUND",
				"this is the listen server: WebSocket subscribers connect to the broadcast server, "+other)
		case r.URL.Path == "/events" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			// POST /events is a batch of events to publish (listen's).
			jsonhttp.Error(w, http.StatusNotFound, "NOT_FOUND",
				"this is the listen server: Server-Sent Events are served by the broadcast server, GET /events on "+other)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// corsHint serves a server that sends no CORS headers (CORS_ALLOWED_ORIGINS
// is unset), and logs, throttled, a request from a page of another origin
// that the browser will not let read the answer: an EventSource or a
// fetch that fails in the page with nothing in the server's log but
// "closed by peer" is the most puzzling first hour a user can have.
func corsHint(log *slog.Logger, quiet *logthrottle.Limiter, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" && !websocket.IsWebSocketUpgrade(r) && !sameOrigin(origin, r) {
			quiet.Log(log, slog.LevelWarn, "a page of another origin asked, but CORS_ALLOWED_ORIGINS is unset: the browser will not let it read the answer",
				"origin", origin, "path", r.URL.Path, "hint", "set CORS_ALLOWED_ORIGINS="+origin)
		}
		next.ServeHTTP(w, r)
	})
}

// sameOrigin reports whether origin is the request's own (scheme and
// host), which needs no CORS.
func sameOrigin(origin string, r *http.Request) bool {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return origin == scheme+"://"+r.Host
}
