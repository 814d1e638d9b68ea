package main

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"eventsrv/console"
	"eventsrv/internal/jsonhttp"
)

// boundPorts are the listen and broadcast servers' ports once they listen
// (LISTEN_PORT=0 picks one at start): the console's routes need them.
type boundPorts struct {
	listen, broadcast atomic.Int32
}

// consoleRoutes serves the web console on the listen server: /console
// redirects to /console/, which serves the embedded page, and
// /console/config.json tells the page where the broadcast server is. With
// CONSOLE=off every /console path is 404.
func consoleRoutes(cfg config, ports *boundPorts) http.Handler {
	files := http.StripPrefix("/console/", http.FileServerFS(console.Files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !cfg.Console:
			jsonhttp.Error(w, http.StatusNotFound, "NOT_FOUND", "the console is off (CONSOLE=off)")
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			w.Header().Set("Allow", "GET, HEAD")
			jsonhttp.Error(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "the console answers GET")
		case r.URL.Path == "/console":
			http.Redirect(w, r, "/console/", http.StatusMovedPermanently)
		case r.URL.Path == "/console/config.json":
			w.Header().Set("Cache-Control", "no-store")
			jsonhttp.Value(w, http.StatusOK, struct {
				BroadcastURL string `json:"broadcast_url"`
			}{consoleBroadcastURL(cfg, r, int(ports.broadcast.Load()))})
		default:
			// The page holds no secret, but it handles tokens: no framing,
			// no sniffing, no referrer, and scripts only from itself.
			h := w.Header()
			h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("Cache-Control", "no-cache")
			files.ServeHTTP(w, r)
		}
	})
}

// consoleBroadcastURL is where the console's WebSocket goes: the setting,
// or the host the browser reached the listen server at, on the broadcast
// port.
func consoleBroadcastURL(cfg config, r *http.Request, broadcastPort int) string {
	if cfg.ConsoleBroadcastURL != "" {
		return cfg.ConsoleBroadcastURL
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // an IPv6 literal
	}
	scheme := "ws"
	if cfg.HTTPSEnable {
		scheme = "wss"
	}
	return scheme + "://" + host + ":" + strconv.Itoa(broadcastPort) + "/"
}

// trustsConsole reports whether a broadcast request comes from this
// server's own console: its Origin is the listen server's scheme and port
// on the host the request was sent to. The console then works whatever
// CORS_ALLOWED_ORIGINS says.
func trustsConsole(cfg config, r *http.Request, listenPort int) bool {
	if !cfg.Console {
		return false
	}
	origin, err := url.Parse(r.Header.Get("Origin"))
	if err != nil {
		return false
	}
	scheme := "http"
	if cfg.HTTPSEnable {
		scheme = "https"
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	return origin.Scheme == scheme && origin.Hostname() == strings.Trim(host, "[]") && origin.Port() == strconv.Itoa(listenPort)
}
