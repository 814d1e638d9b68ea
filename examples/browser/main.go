// Command browser serves a page that follows events with EventSource, the
// way a web application would: its backend (this program) holds the
// JWT_SECRET and gives the page a short-lived JWT that may only read the
// events it names; the page passes it as ?token= (EventSource cannot send
// headers), resumes by itself after a lost connection (Last-Event-ID),
// and asks for a new token when the old one has expired.
//
// The eventsrv server must accept JWTs signed with the same JWT_SECRET and
// allow the page's origin:
//
//	JWT_SECRET=$(eventsrv secret)
//	CORS_ALLOWED_ORIGINS=http://127.0.0.1:8000 JWT_SECRET=$JWT_SECRET eventsrv &
//	EVENTSRV_URL=http://localhost:8080 JWT_SECRET=$JWT_SECRET go run ./examples/browser
//	# open http://127.0.0.1:8000/, then: eventsrv pub order.created '{"id":1}'
//
// Settings: ADDR (default 127.0.0.1:8000), EVENTS (comma-separated,
// default order.created), TOKEN_TTL (default 15m), EVENTSRV_URL, and
// EVENTSRV_BROADCAST_URL when the broadcast server is not the listen
// server's port plus one.
package main

import (
	_ "embed"
	"fmt"
	"html/template"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"eventsrv/client"
)

//go:embed index.html
var page string

func main() {
	secret := os.Getenv("JWT_SECRET")
	if secret == "" {
		log.Fatal("JWT_SECRET is not set: the page's tokens are signed with the server's secret")
	}
	events := strings.Split(env("EVENTS", "order.created"), ",")
	ttl, err := time.ParseDuration(env("TOKEN_TTL", "15m"))
	if err != nil {
		log.Fatalf("TOKEN_TTL: %v", err)
	}
	var opts []client.Option
	if b := os.Getenv("EVENTSRV_BROADCAST_URL"); b != "" {
		opts = append(opts, client.WithBroadcastURL(b))
	}
	// The client package knows where the broadcast server is; EventSource
	// wants its http(s) form.
	c, err := client.New(env("EVENTSRV_URL", "http://localhost:8080"), opts...)
	if err != nil {
		log.Fatal(err)
	}
	stream, err := url.Parse(c.BroadcastURL())
	if err != nil {
		log.Fatal(err)
	}
	stream.Scheme = strings.Replace(stream.Scheme, "ws", "http", 1)
	stream.Path = strings.TrimSuffix(stream.Path, "/") + "/events"

	// streamURL is the page's EventSource URL, with a new token.
	streamURL := func() (string, error) {
		exp := time.Now().Add(ttl + time.Second - 1).Truncate(time.Second) // at least ttl
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": "browser-example", "subscribe": events, "exp": exp.Unix(),
		}).SignedString([]byte(secret))
		if err != nil {
			return "", err
		}
		q := url.Values{"event": events, "token": {tok}}
		u := *stream
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	tmpl := template.Must(template.New("page").Parse(page))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		u, err := streamURL()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if err := tmpl.Execute(w, map[string]any{"StreamURL": u, "Events": events}); err != nil {
			log.Print(err)
		}
	})
	// The page asks for a new URL (a new token) when its token expired.
	mux.HandleFunc("GET /stream-url", func(w http.ResponseWriter, r *http.Request) {
		u, err := streamURL()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, u)
	})
	ln, err := net.Listen("tcp", env("ADDR", "127.0.0.1:8000"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("serving http://%s/ (events %s from %s)\n", ln.Addr(), strings.Join(events, ", "), stream.Host)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.Serve(ln))
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
