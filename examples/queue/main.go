// Command queue serves an operator's page for an eventsrv work queue, the
// QueueTasks flow in a browser (#15): on load the page takes a task that
// is free right now (take-free), then waits for offers on an EventSource
// (GET /queue/{name}/wait); each offer shows Assign and Reject buttons and
// a countdown to OFFER_TIMEOUT, after which the server offers it to the
// next operator; a forced task (?mode=assign) arrives assigned; an
// assigned task has a Done button.
//
// This program is the page's backend: it holds JWT_SECRET and gives each
// page a short-lived JWT whose subject is the operator and which may only
// work on the one queue (the "work" claim). The page sends it as ?token=
// on the EventSource (which cannot send headers) and as a Bearer header on
// its POSTs, and asks for a new one at /token when it has expired. With
// EVENTSRV_TOKEN set, the page also has a form to add tasks, which this
// backend posts with its own token (that token never reaches the page).
//
// The eventsrv server must accept JWTs signed with the same JWT_SECRET and
// allow the page's origin:
//
//	JWT_SECRET=$(eventsrv secret)
//	CORS_ALLOWED_ORIGINS=http://127.0.0.1:8000 JWT_SECRET=$JWT_SECRET eventsrv &
//	EVENTSRV_URL=http://localhost:8080 EVENTSRV_TOKEN=<a token> JWT_SECRET=$JWT_SECRET go run ./examples/queue
//	# open http://127.0.0.1:8000/?operator=alice and http://127.0.0.1:8000/?operator=bob, then
//	curl -X POST -H "Authorization: Basic <a token>" -d '{"subject":"printer on fire"}' http://localhost:8080/queue/tickets
//
// Settings: ADDR (default 127.0.0.1:8000), QUEUE (default tickets),
// TOKEN_TTL (default 15m), OFFER_TIMEOUT (default 40s: the server's, for
// the countdown), EVENTSRV_URL, EVENTSRV_TOKEN (optional), and
// EVENTSRV_BROADCAST_URL when the broadcast server is not the listen
// server's port plus one.
package main

import (
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"eventsrv/client"
)

//go:embed index.html
var page string

// operatorName is what an operator may be called: it becomes the JWT's
// subject, so that each page is a worker of its own (the server's HTTP
// answers act for the token's subject).
var operatorName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func main() {
	secret := os.Getenv("JWT_SECRET")
	if secret == "" {
		log.Fatal("JWT_SECRET is not set: the page's tokens are signed with the server's secret")
	}
	queue := env("QUEUE", "tickets")
	ttl, err := time.ParseDuration(env("TOKEN_TTL", "15m"))
	if err != nil {
		log.Fatalf("TOKEN_TTL: %v", err)
	}
	offerTimeout, err := time.ParseDuration(env("OFFER_TIMEOUT", "40s"))
	if err != nil {
		log.Fatalf("OFFER_TIMEOUT: %v", err)
	}
	listenURL := env("EVENTSRV_URL", "http://localhost:8080")
	var opts []client.Option
	if b := os.Getenv("EVENTSRV_BROADCAST_URL"); b != "" {
		opts = append(opts, client.WithBroadcastURL(b))
	}
	// The client package knows where the broadcast server is; the page
	// wants its http(s) form.
	c, err := client.New(listenURL, opts...)
	if err != nil {
		log.Fatal(err)
	}
	broadcast, err := url.Parse(c.BroadcastURL())
	if err != nil {
		log.Fatal(err)
	}
	broadcast.Scheme = strings.Replace(broadcast.Scheme, "ws", "http", 1)
	broadcast.Path = strings.TrimSuffix(broadcast.Path, "/")
	backendToken := os.Getenv("EVENTSRV_TOKEN")

	// mint gives an operator a token that may only take tasks from the queue.
	mint := func(operator string) (string, error) {
		exp := time.Now().Add(ttl + time.Second - 1).Truncate(time.Second) // at least ttl
		return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": "operator:" + operator, "work": []string{queue}, "exp": exp.Unix(),
		}).SignedString([]byte(secret))
	}
	operatorOf := func(r *http.Request) (string, bool) {
		op := r.URL.Query().Get("operator")
		if op == "" {
			var b [3]byte
			_, _ = rand.Read(b[:])
			return "operator-" + hex.EncodeToString(b[:]), true
		}
		return op, operatorName.MatchString(op)
	}

	tmpl := template.Must(template.New("page").Parse(page))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		op, ok := operatorOf(r)
		if !ok {
			http.Error(w, "operator: 1 to 32 letters, digits, _ or -", http.StatusBadRequest)
			return
		}
		tok, err := mint(op)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		err = tmpl.Execute(w, map[string]any{"Config": map[string]any{
			"queue": queue, "operator": op, "server": broadcast.String(), "token": tok,
			"offerTimeoutMs": offerTimeout.Milliseconds(), "canAdd": backendToken != "",
		}})
		if err != nil {
			log.Print(err)
		}
	})
	// The page asks for a new token when its token has expired.
	mux.HandleFunc("GET /token", func(w http.ResponseWriter, r *http.Request) {
		op, ok := operatorOf(r)
		if !ok || r.URL.Query().Get("operator") == "" {
			http.Error(w, "operator: 1 to 32 letters, digits, _ or -", http.StatusBadRequest)
			return
		}
		tok, err := mint(op)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, tok)
	})
	// Adding a task goes through the backend, with its own token.
	mux.HandleFunc("POST /tasks", func(w http.ResponseWriter, r *http.Request) {
		if backendToken == "" {
			http.Error(w, "EVENTSRV_TOKEN is not set: this backend adds no tasks", http.StatusNotFound)
			return
		}
		q := url.Values{}
		if r.URL.Query().Get("mode") == "assign" {
			q.Set("mode", "assign")
		}
		if r.URL.Query().Get("complete") == "1" {
			q.Set("complete", "1")
		}
		u := strings.TrimSuffix(listenURL, "/") + "/queue/" + url.PathEscape(queue) + "?" + q.Encode()
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, u, http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header.Set("Authorization", "Basic "+backendToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body) // {"code":"OK","id":"…"}, or the server's refusal
	})

	ln, err := net.Listen("tcp", env("ADDR", "127.0.0.1:8000"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("serving http://%s/ (queue %s on %s)\n", ln.Addr(), queue, broadcast.Host)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.Serve(ln))
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
